"""The tiny model builder: a real tokenizer and real weights, loaded back by transformers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from cove.finetune.tinymodel import (
    BUILDER_VERSION,
    FIM_TOKENS,
    build_tiny_model,
    default_tokenizer_sources,
    is_current_tiny_model,
    is_model_dir,
    read_model_metadata,
)

STDLIB = Path(sysconfig.get_paths()["stdlib"])
# A few stdlib files keep the tokenizer training to a fraction of a second.
SOURCES = [STDLIB / name for name in ("ast.py", "string.py", "textwrap.py", "json/decoder.py")]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "cove-tiny", sources=SOURCES)


def _tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def test_the_build_is_a_complete_model_directory(model_dir: Path) -> None:
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "generation_config.json",
        "cove_model.json",
    ):
        assert (model_dir / name).is_file(), name
    assert is_model_dir(model_dir) is None
    assert read_model_metadata(model_dir) == {
        "name": "cove-tiny",
        "family": "llama",
        "fim_tokens": {
            "prefix": "<fim_prefix>",
            "suffix": "<fim_suffix>",
            "middle": "<fim_middle>",
        },
        "context_length": 1024,
        "builder_version": BUILDER_VERSION,
        "seed": 0,
    }
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["max_position_embeddings"] == 1024
    assert (config["hidden_size"], config["num_hidden_layers"]) == (128, 2)
    # The builder leaves nothing behind beside the finished directory.
    assert [p.name for p in model_dir.parent.iterdir()] == [model_dir.name]


def test_fim_and_end_of_text_tokens_each_encode_as_one_token(model_dir: Path) -> None:
    tokenizer = _tokenizer(model_dir)
    ids = {}
    for token in (*FIM_TOKENS.values(), "<|endoftext|>"):
        encoded = tokenizer.encode(token, add_special_tokens=False)
        assert len(encoded) == 1, (token, encoded)
        ids[token] = encoded[0]
    assert len(set(ids.values())) == 4
    assert tokenizer.eos_token_id == ids["<|endoftext|>"]

    prompt = "<fim_prefix>def add(a, b):\n    return <fim_suffix>\n<fim_middle>"
    encoded = tokenizer.encode(prompt, add_special_tokens=False)
    assert [i for i in encoded if i in ids.values()] == [
        ids["<fim_prefix>"],
        ids["<fim_suffix>"],
        ids["<fim_middle>"],
    ]
    assert tokenizer.decode(encoded) == prompt


def test_chat_template_renders_roles_and_the_assistant_prompt(model_dir: Path) -> None:
    rendered = _tokenizer(model_dir).apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert rendered == "<|system|>\nBe brief.\n<|user|>\nhi\n<|assistant|>\n"


def test_same_seed_and_sources_give_identical_files(model_dir: Path, tmp_path: Path) -> None:
    again = build_tiny_model(tmp_path / "again", sources=SOURCES)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (model_dir / name).read_bytes(), name

    other_seed = build_tiny_model(tmp_path / "seed1", seed=1, sources=SOURCES)
    assert (other_seed / "model.safetensors").read_bytes() != (
        model_dir / "model.safetensors"
    ).read_bytes()
    assert read_model_metadata(other_seed)["seed"] == 1


def test_the_model_loads_and_generates_text_rather_than_fim_markers(model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = _tokenizer(model_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir))
    assert model.dtype == torch.float32
    prompt = "<fim_prefix>def add(a, b):\n    return <fim_suffix>\n<fim_middle>"
    inputs = tokenizer(prompt, return_tensors="pt")
    prompt_length = inputs["input_ids"].shape[1]
    with torch.no_grad():
        output = model.generate(
            **inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0
        )
    new_tokens = output[0, prompt_length:].tolist()
    assert len(new_tokens) == 6
    # vLLM strips special tokens from completions: FIM markers would read as empty text.
    markers = set(tokenizer.convert_tokens_to_ids(list(FIM_TOKENS.values())))
    assert not markers.intersection(new_tokens)
    assert tokenizer.decode(new_tokens, skip_special_tokens=True) != ""


def test_is_model_dir_explains_what_is_missing(model_dir: Path, tmp_path: Path) -> None:
    assert "does not exist" in str(is_model_dir(tmp_path / "nowhere"))

    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert "not a directory" in str(is_model_dir(a_file))

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no config.json" in str(is_model_dir(empty))

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"x")
    assert "LoRA adapter" in str(is_model_dir(adapter))

    no_weights = tmp_path / "no-weights"
    shutil.copytree(model_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    assert "no weights" in str(is_model_dir(no_weights))

    truncated = tmp_path / "truncated"
    shutil.copytree(model_dir, truncated)
    (truncated / "model.safetensors").write_bytes(b"")
    assert "empty weight files" in str(is_model_dir(truncated))

    no_tokenizer = tmp_path / "no-tokenizer"
    shutil.copytree(model_dir, no_tokenizer)
    (no_tokenizer / "tokenizer.json").unlink()
    assert "no tokenizer" in str(is_model_dir(no_tokenizer))

    bad_config = tmp_path / "bad-config"
    shutil.copytree(model_dir, bad_config)
    (bad_config / "config.json").write_text("{not json")
    assert "not a JSON object" in str(is_model_dir(bad_config))

    sharded = tmp_path / "sharded"
    shutil.copytree(model_dir, sharded)
    (sharded / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}})
    )
    assert "model-00001-of-00002.safetensors" in str(is_model_dir(sharded))


def test_foreign_model_metadata_is_derived_from_its_files(model_dir: Path, tmp_path: Path) -> None:
    starcoder_like = tmp_path / "starcoder-like"
    shutil.copytree(model_dir, starcoder_like)
    (starcoder_like / "cove_model.json").unlink()
    assert read_model_metadata(starcoder_like) == {
        "name": "starcoder-like",
        "family": "llama",
        "fim_tokens": dict(FIM_TOKENS),
        "context_length": 1024,
    }

    qwen_like = tmp_path / "qwen-like"
    qwen_like.mkdir()
    (qwen_like / "config.json").write_text(
        json.dumps({"model_type": "qwen2", "max_position_embeddings": 32768})
    )
    added = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"]
    (qwen_like / "tokenizer.json").write_text(
        json.dumps({"added_tokens": [{"id": i, "content": t} for i, t in enumerate(added)]})
    )
    assert read_model_metadata(qwen_like) == {
        "name": "qwen-like",
        "family": "qwen2",
        "fim_tokens": {
            "prefix": "<|fim_prefix|>",
            "suffix": "<|fim_suffix|>",
            "middle": "<|fim_middle|>",
        },
        "context_length": 32768,
    }

    chat_only = tmp_path / "chat-only"
    chat_only.mkdir()
    (chat_only / "config.json").write_text(json.dumps({"model_type": "mistral"}))
    (chat_only / "tokenizer.json").write_text(
        json.dumps({"added_tokens": [{"id": 0, "content": "<s>"}]})
    )
    metadata = read_model_metadata(chat_only)
    assert metadata["fim_tokens"] is None
    assert metadata["context_length"] is None


def test_a_failed_build_leaves_nothing_and_a_foreign_directory_is_not_replaced(
    tmp_path: Path,
) -> None:
    with pytest.raises(FileNotFoundError):
        build_tiny_model(tmp_path / "model", sources=[tmp_path / "missing.py"])
    assert list(tmp_path.iterdir()) == []

    foreign = tmp_path / "someones-model"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing to replace"):
        build_tiny_model(foreign, sources=SOURCES)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["someones-model"]


def test_rebuilding_replaces_a_previous_build(tmp_path: Path) -> None:
    target = tmp_path / "cove-tiny"
    build_tiny_model(target, seed=0, sources=SOURCES)
    assert is_current_tiny_model(target, seed=0)
    assert not is_current_tiny_model(target, seed=1)

    build_tiny_model(target, seed=1, sources=SOURCES)
    assert read_model_metadata(target)["seed"] == 1
    assert is_current_tiny_model(target, seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cove-tiny"]

    metadata = json.loads((target / "cove_model.json").read_text())
    metadata["builder_version"] = BUILDER_VERSION - 1
    (target / "cove_model.json").write_text(json.dumps(metadata))
    assert not is_current_tiny_model(target, seed=1)


def test_default_sources_are_a_bounded_sorted_stdlib_selection() -> None:
    sources = default_tokenizer_sources()
    assert sources == default_tokenizer_sources()
    assert 0 < len(sources) <= 300
    assert sum(p.stat().st_size for p in sources) <= 4 * 1024 * 1024
    relative = [p.relative_to(STDLIB).as_posix() for p in sources]
    assert relative == sorted(relative)
    assert not any(part in {"test", "site-packages"} for r in relative for part in r.split("/"))


def test_importing_the_builder_does_not_import_torch() -> None:
    code = (
        "import sys, cove.finetune.tinymodel as m; "
        "heavy = {'torch', 'transformers', 'tokenizers'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_too_small_a_vocabulary_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        build_tiny_model(tmp_path / "m", sources=SOURCES, vocab_size=100)
    assert list(tmp_path.iterdir()) == []
