"""LoRA training on the tiny model: adapter, metrics, checkpoints and resume, and every way a
run can stop without leaving an adapter behind."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import pytest

from cove.finetune.dataset import DatasetConfig, build_dataset
from cove.finetune.errors import (
    InvalidHyperparameters,
    JobCancelled,
    NoFimTokens,
    TooLittleData,
    TrainingDiverged,
)
from cove.finetune.sources import RepoSpec
from cove.finetune.train import (
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    METRICS_FILE,
    PRESETS,
    STATE_FILE,
    Hyperparameters,
    StepMetrics,
    is_adapter_dir,
    preset,
)
from cove.finetune.train import train_adapter as _train_adapter
from tests.finetune.synthetic import write_consumers, write_sdk

# One thread: on a shared 2-core machine OpenMP threads mostly wait for each other.
train_adapter = functools.partial(_train_adapter, cpu_threads=1)

QUICK = Hyperparameters(
    rank=4,
    alpha=8,
    dropout=0.1,
    learning_rate=5e-3,
    max_steps=6,
    batch_size=4,
    context_length=128,
    max_middle_tokens=48,
    checkpoint_every=3,
    seed=5,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train-data")
    write_sdk(root / "ledgerlink")
    write_consumers(root / "payments", files=20, seed=5)
    result = build_dataset(
        [RepoSpec(str(root / "ledgerlink"), "sdk"), RepoSpec(str(root / "payments"))],
        root / "dataset",
        DatasetConfig(
            min_train_examples=20, min_eval_examples=2, max_prefix_chars=400, max_suffix_chars=120
        ),
    )
    return result.out_dir


def _state(out: Path) -> dict[str, object]:
    state = json.loads((out / STATE_FILE).read_text())
    assert isinstance(state, dict)
    return state


def test_training_publishes_an_adapter_with_metrics_and_state(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    seen: list[StepMetrics] = []
    result = train_adapter(tiny_model, dataset, tmp_path / "run", QUICK, on_step=seen.append)
    adapter = tmp_path / "run" / ADAPTER_DIR
    assert result.state == "succeeded"
    assert result.adapter_dir == adapter
    assert is_adapter_dir(adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 4
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    assert config["peft_type"] == "LORA"
    lineage = json.loads((adapter / "cove_adapter.json").read_text())
    assert lineage["base_model"]["fim_tokens"]["prefix"] == "<fim_prefix>"
    assert lineage["dataset_hash"].startswith("sha256:")
    lines = [
        json.loads(line) for line in (tmp_path / "run" / METRICS_FILE).read_text().splitlines()
    ]
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert all(line["loss"] > 0 and line["tokens_per_second"] > 0 for line in lines)
    assert lines[0]["learning_rate"] > 0
    assert [metrics.step for metrics in seen] == [1, 2, 3, 4, 5, 6]
    state = _state(tmp_path / "run")
    assert state["state"] == "succeeded"
    assert state["steps"] == 6
    assert state["reason"] is None
    assert not list((tmp_path / "run").glob(".adapter*"))


def _weights(adapter: Path) -> dict[str, list[float]]:
    from safetensors.torch import load_file

    return {name: tensor.flatten().tolist() for name, tensor in load_file(adapter).items()}


def test_a_cancelled_run_leaves_no_adapter_and_resumes_to_the_same_result(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    straight = train_adapter(tiny_model, dataset, tmp_path / "straight", QUICK)
    assert straight.adapter_dir is not None

    steps: list[int] = []
    out = tmp_path / "interrupted"
    with pytest.raises(JobCancelled) as caught:
        train_adapter(
            tiny_model,
            dataset,
            out,
            QUICK,
            on_step=lambda metrics: steps.append(metrics.step),
            should_cancel=lambda: len(steps) >= 4,
        )
    assert caught.value.details["step"] == 4
    assert not (out / ADAPTER_DIR).exists()
    state = _state(out)
    assert state["state"] == "cancelled"
    assert state["reason"] == {"code": "cancelled", "message": caught.value.message}
    assert (out / CHECKPOINTS_DIR / "step-00000004").is_dir()

    resumed = train_adapter(tiny_model, dataset, out, QUICK)
    assert resumed.state == "succeeded"
    assert resumed.resumed_from == 4
    assert resumed.adapter_dir is not None
    assert _weights(resumed.adapter_dir / "adapter_model.safetensors") == _weights(
        straight.adapter_dir / "adapter_model.safetensors"
    )
    lines = [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6]


def test_an_absurd_learning_rate_diverges_and_leaves_no_adapter(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    wild = Hyperparameters(**{**QUICK.__dict__, "learning_rate": 1e4, "max_steps": 40})
    with pytest.raises(TrainingDiverged) as caught:
        train_adapter(tiny_model, dataset, tmp_path / "wild", wild)
    assert "lower the learning rate" in caught.value.message
    assert not (tmp_path / "wild" / ADAPTER_DIR).exists()
    state = _state(tmp_path / "wild")
    assert state["state"] == "failed"
    assert state["reason"]["code"] == "diverged"  # type: ignore[index]


def test_a_crash_mid_training_is_recorded_and_leaves_no_adapter(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    def explode(metrics: StepMetrics) -> None:
        if metrics.step == 2:
            raise RuntimeError("node lost")

    with pytest.raises(RuntimeError, match="node lost"):
        train_adapter(tiny_model, dataset, tmp_path / "crash", QUICK, on_step=explode)
    assert not (tmp_path / "crash" / ADAPTER_DIR).exists()
    state = _state(tmp_path / "crash")
    assert state["state"] == "failed"
    assert state["reason"] == {"code": "crashed", "message": "RuntimeError: node lost"}


def test_a_base_model_without_fim_tokens_cannot_be_trained(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    no_fim = tmp_path / "plain-model"
    shutil.copytree(tiny_model, no_fim)
    (no_fim / "cove_model.json").unlink()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        text = (no_fim / name).read_text()
        (no_fim / name).write_text(text.replace("<fim_", "<xfim_"))
    with pytest.raises(NoFimTokens, match="no fill-in-the-middle tokens"):
        train_adapter(no_fim, dataset, tmp_path / "run", QUICK)


def test_too_little_data_and_bad_hyperparameters_are_refused(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    with pytest.raises(TooLittleData):
        train_adapter(tiny_model, dataset, tmp_path / "few", QUICK, min_examples=10**6)
    assert _state(tmp_path / "few")["state"] == "failed"
    with pytest.raises(InvalidHyperparameters, match="cannot place LoRA"):
        train_adapter(
            tiny_model,
            dataset,
            tmp_path / "bad",
            Hyperparameters(**{**QUICK.__dict__, "target_modules": ("no_such_proj",)}),
        )
    with pytest.raises(InvalidHyperparameters, match="rank"):
        Hyperparameters(rank=0).validate()


def test_presets() -> None:
    assert PRESETS["small"].rank == 8
    assert PRESETS["small"].target_modules == ("q_proj", "v_proj")
    assert PRESETS["large"].context_length > PRESETS["medium"].context_length
    custom = preset("medium", rank=4, learning_rate=None, target_modules=["q_proj"])
    assert custom.rank == 4
    assert custom.learning_rate == PRESETS["medium"].learning_rate
    assert custom.target_modules == ("q_proj",)
    with pytest.raises(InvalidHyperparameters, match="unknown preset"):
        preset("huge")
