"""Fine-tuning jobs: the control plane's side of `cove.finetune` (API, orchestration, runner)."""
