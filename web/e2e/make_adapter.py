"""Writes a small PEFT-format LoRA adapter (q_proj/v_proj, rank 8) for a local base model.

The console's end-to-end test registers it as a second model version of the demo business
unit, so a canary can be released, compared, promoted and rolled back against a real vLLM.
Usage: make_adapter.py BASE_MODEL_DIR OUT_DIR
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

RANK = 8


def main(base: Path, out: Path) -> None:
    config = json.loads((base / "config.json").read_text())
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads", heads))
    head_dim = int(config.get("head_dim") or hidden // heads)
    outputs = {"q_proj": heads * head_dim, "v_proj": kv_heads * head_dim}
    generator = torch.Generator().manual_seed(0)

    def small(rows: int, cols: int) -> torch.Tensor:
        return torch.randn(rows, cols, generator=generator) * 0.01

    tensors = {}
    for layer in range(int(config["num_hidden_layers"])):
        for module, width in outputs.items():
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = small(RANK, hidden)
            tensors[f"{prefix}.lora_B.weight"] = small(width, RANK)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": "LORA",
                "task_type": "CAUSAL_LM",
                "base_model_name_or_path": str(base),
                "r": RANK,
                "lora_alpha": 16,
                "lora_dropout": 0.0,
                "bias": "none",
                "fan_in_fan_out": False,
                "target_modules": sorted(outputs),
                "modules_to_save": None,
                "inference_mode": True,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
