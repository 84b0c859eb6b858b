"""The proof: a private SDK → dataset → LoRA on the tiny model → the adapter beats the base on
held-out SDK call sites → registered → hot-loaded into the real vLLM and served by name.

The tiny model's weights are random, so everything it gets right about `ledgerlink` it learnt
in this test. LoRA goes on q_proj, v_proj and lm_head: a randomly initialised model's output
layer cannot be steered through attention alone in a few hundred CPU steps (its logits stay
nearly flat), while a rank-8 update of lm_head makes the SDK's tokens reachable. vLLM serves
LoRA on lm_head, and rank 8 matches the server's --max-lora-rank.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cove.finetune.dataset import DatasetConfig, read_examples
from cove.finetune.evaluate import PromotionGate, calls_symbol
from cove.finetune.fim import FimMarkers, prompt_ids
from cove.finetune.pipeline import RUN_FILE, RunConfig, RunResult, run_pipeline
from cove.finetune.registry import AdapterRecord, read_registry
from cove.finetune.sources import RepoSpec
from cove.finetune.train import Hyperparameters
from tests.finetune.synthetic import write_consumers, write_sdk

pytestmark = pytest.mark.vllm

# Short windows keep a step cheap on the CPU; the cue for each call (its comment, the name it
# is assigned to) sits within a few lines of it anyway.
DATASET = DatasetConfig(
    seed=0,
    max_prefix_chars=500,
    max_suffix_chars=120,
    random_span_share=0.15,
    min_train_examples=200,
    min_eval_examples=20,
)
HYPERPARAMETERS = Hyperparameters(
    rank=8,
    alpha=16,
    dropout=0.0,
    target_modules=("q_proj", "v_proj", "lm_head"),
    learning_rate=2e-2,
    max_steps=600,
    batch_size=16,
    context_length=128,
    max_middle_tokens=48,
    warmup_ratio=0.05,
    checkpoint_every=200,
    seed=0,
)
GATE = PromotionGate(min_sdk_recall_gain=0.1, min_edit_similarity_gain=0.1)


@pytest.fixture(scope="module")
def finished_run(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[RunResult, list[AdapterRecord], float]:
    root = tmp_path_factory.mktemp("e2e")
    sdk = write_sdk(root / "ledgerlink")
    consumers = write_consumers(root / "payments", files=150, seed=7)
    registered: list[AdapterRecord] = []
    started = time.monotonic()
    result = run_pipeline(
        RunConfig(
            repos=[RepoSpec(str(sdk), "sdk"), RepoSpec(str(consumers))],
            base_model=tiny_model,
            out_dir=root / "job",
            hyperparameters=HYPERPARAMETERS,
            dataset=DATASET,
            gate=GATE,
            adapter_name="ledgerlink-payments",
            eval_max_examples=80,
            eval_max_new_tokens=24,
            cpu_threads=1,
        ),
        on_register=registered.append,
    )
    return result, registered, time.monotonic() - started


def test_the_adapter_beats_the_base_on_held_out_sdk_call_sites(
    finished_run: tuple[RunResult, list[AdapterRecord], float],
) -> None:
    result, _, seconds = finished_run
    assert result.state == "succeeded", result.reason
    evaluation = result.evaluation
    assert evaluation is not None
    base, adapter = evaluation["base"], evaluation["adapter_scores"]
    # Printed for the record (pytest -s): the numbers this proof is about.
    print(
        "\nE2E",
        json.dumps(
            {
                "base": base,
                "adapter": adapter,
                "sdk_examples": evaluation["sdk_examples"],
                "examples": evaluation["examples"],
                "train_seconds": result.training and result.training["seconds"],
                "final_loss": result.training and result.training["final_loss"],
                "pipeline_seconds": round(seconds, 1),
            }
        ),
    )
    assert evaluation["sdk_examples"] >= 40
    assert adapter["sdk_api_recall"] >= base["sdk_api_recall"] + 0.1
    assert adapter["edit_similarity"] >= base["edit_similarity"] + 0.1
    assert evaluation["gate"]["passed"]
    run_file = json.loads((result.out_dir / RUN_FILE).read_text())
    assert run_file["state"] == "succeeded"
    assert [entry["state"] for entry in run_file["history"]] == [
        "preparing",
        "training",
        "evaluating",
        "succeeded",
    ]
    assert run_file["progress"] == 100.0
    assert run_file["step"] == run_file["total_steps"] == HYPERPARAMETERS.max_steps


def test_the_registered_adapter_carries_its_lineage(
    finished_run: tuple[RunResult, list[AdapterRecord], float],
) -> None:
    result, registered, _ = finished_run
    assert result.record is not None
    assert registered == [result.record]
    record = result.record
    assert record.name == "ledgerlink-payments"
    assert record.version == 1
    assert record.dataset["hash"] == result.dataset_hash
    assert record.base_model["name"] == "cove-tiny"
    assert record.hyperparameters["rank"] == 8
    assert record.scores["adapter"] == result.evaluation["adapter_scores"]  # type: ignore[index]
    on_disk = read_registry(result.out_dir.parent / "registry.json")
    assert on_disk == [record.to_json()]


def _completion(url: str, model: str, prompt: list[int]) -> str:
    response = httpx.post(
        f"{url}/v1/completions",
        json={"model": model, "prompt": prompt, "max_tokens": 24, "temperature": 0},
        timeout=60,
    )
    response.raise_for_status()
    text = response.json()["choices"][0]["text"]
    assert isinstance(text, str)
    return text


def _prompts(tiny_model: Path, examples: list[dict[str, Any]]) -> list[list[int]]:
    """The prompts as token ids, cut exactly as training and evaluation cut them (a longer
    window than the adapter was trained on would put positions it never saw in the prompt)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tiny_model / "tokenizer.json"))

    def token(text: str) -> int:
        found = tokenizer.token_to_id(text)
        assert found is not None
        return int(found)

    markers = FimMarkers(
        prefix=token("<fim_prefix>"),
        suffix=token("<fim_suffix>"),
        middle=token("<fim_middle>"),
        end=token("<|endoftext|>"),
    )
    budget = HYPERPARAMETERS.context_length - 24
    return [
        prompt_ids(
            markers,
            tokenizer.encode(example["prefix"], add_special_tokens=False).ids,
            tokenizer.encode(example["suffix"], add_special_tokens=False).ids,
            budget,
        )
        for example in examples
    ]


def test_vllm_hot_loads_the_adapter_and_serves_it_by_name(
    finished_run: tuple[RunResult, list[AdapterRecord], float], vllm_url: str, tiny_model: Path
) -> None:
    result, _, _ = finished_run
    assert result.record is not None
    name = result.record.name
    loaded = httpx.post(
        f"{vllm_url}/v1/load_lora_adapter",
        json={"lora_name": name, "lora_path": result.record.adapter_path},
        timeout=120,
    )
    assert loaded.status_code == 200, loaded.text
    try:
        models = httpx.get(f"{vllm_url}/v1/models", timeout=30).json()
        assert name in {model["id"] for model in models["data"]}
        held_out = [
            example
            for example in read_examples(result.out_dir / "dataset" / "eval.jsonl")
            if example["sdk_symbols"]
        ][:30]
        local = {
            (line["path"], line["middle"]): line["adapter"]
            for line in map(
                json.loads,
                (result.out_dir / "eval" / "eval_completions.jsonl").read_text().splitlines(),
            )
        }
        adapter_hits = base_hits = same_as_local = compared = 0
        for example, prompt in zip(held_out, _prompts(tiny_model, held_out), strict=True):
            served = _completion(vllm_url, name, prompt)
            plain = _completion(vllm_url, "cove-tiny", prompt)
            adapter_hits += all(calls_symbol(served, s) for s in example["sdk_symbols"])
            base_hits += all(calls_symbol(plain, s) for s in example["sdk_symbols"])
            if (example["path"], example["middle"]) in local:
                compared += 1
                same_as_local += served == local[(example["path"], example["middle"])]
        print(
            "\nVLLM",
            json.dumps(
                {
                    "prompts": len(held_out),
                    "adapter_calls_right_symbol": adapter_hits,
                    "base_calls_right_symbol": base_hits,
                    "same_as_transformers": f"{same_as_local}/{compared}",
                }
            ),
        )
        assert adapter_hits >= 5
        assert adapter_hits > base_hits
    finally:
        httpx.post(f"{vllm_url}/v1/unload_lora_adapter", json={"lora_name": name}, timeout=60)


def test_a_job_that_cannot_beat_the_base_registers_nothing(
    finished_run: tuple[RunResult, list[AdapterRecord], float], tiny_model: Path
) -> None:
    # Same data, a gate no adapter can pass: the job fails with the gate's reasons.
    result, _, _ = finished_run
    out = result.out_dir.parent / "strict-job"
    strict = run_pipeline(
        RunConfig(
            repos=[
                RepoSpec(str(result.out_dir.parent / "ledgerlink"), "sdk"),
                RepoSpec(str(result.out_dir.parent / "payments")),
            ],
            base_model=tiny_model,
            out_dir=out,
            hyperparameters=Hyperparameters(
                **{**HYPERPARAMETERS.__dict__, "max_steps": 2, "learning_rate": 1e-4}
            ),
            dataset=DATASET,
            gate=PromotionGate(min_sdk_recall_gain=0.99),
            adapter_name="never",
            registry_path=out / "registry.json",
            eval_max_examples=8,
            eval_max_new_tokens=8,
            cpu_threads=1,
        )
    )
    assert strict.state == "failed"
    assert strict.reason is not None
    assert strict.reason["code"] == "promotion_gate_failed"
    assert "SDK-API recall gain" in strict.reason["message"]
    assert not (out / "registry.json").exists()


def test_a_cancelled_job_stops_in_the_cancelled_state(
    finished_run: tuple[RunResult, list[AdapterRecord], float], tiny_model: Path
) -> None:
    result, _, _ = finished_run
    events: list[Any] = []
    out = result.out_dir.parent / "cancelled-job"
    cancelled = run_pipeline(
        RunConfig(
            repos=[
                RepoSpec(str(result.out_dir.parent / "ledgerlink"), "sdk"),
                RepoSpec(str(result.out_dir.parent / "payments")),
            ],
            base_model=tiny_model,
            out_dir=out,
            hyperparameters=Hyperparameters(**{**HYPERPARAMETERS.__dict__, "max_steps": 50}),
            dataset=DATASET,
            registry_path=out / "registry.json",
            cpu_threads=1,
        ),
        should_cancel=lambda: any(event == ("training", 3) for event in events),
        on_event=lambda run: events.append((run.state, run.step)),
    )
    assert cancelled.state == "cancelled"
    assert cancelled.reason is not None
    assert cancelled.reason["code"] == "cancelled"
    assert not (out / "training" / "adapter").exists()
    assert not (out / "registry.json").exists()
    assert json.loads((out / RUN_FILE).read_text())["state"] == "cancelled"
