"""The tiny Llama model with fill-in-the-middle tokens that the local stack and the tests serve.

It is built on the machine from local files only (no hub, no network): a byte-level BPE
tokenizer trained on Python sources and randomly initialised weights under a fixed seed. The
same module tells a usable model directory from a broken one, with only the standard library,
so the local stack can reject a bad `COVE_MODEL` before it starts vLLM.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sysconfig
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

# Bump whenever a build with the same seed and sources would produce different files.
BUILDER_VERSION: Final = 2
TINY_MODEL_NAME: Final = "cove-tiny"
METADATA_FILE: Final = "cove_model.json"
CONTEXT_LENGTH: Final = 1024
END_OF_TEXT: Final = "<|endoftext|>"
FIM_TOKENS: Final[dict[str, str]] = {
    "prefix": "<fim_prefix>",
    "suffix": "<fim_suffix>",
    "middle": "<fim_middle>",
}
# vLLM's /v1/chat/completions refuses a tokenizer without a chat template.
CHAT_TEMPLATE: Final = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + (message['content'] or '') + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

_SPECIAL_TOKENS: Final = (
    END_OF_TEXT,
    FIM_TOKENS["prefix"],
    FIM_TOKENS["suffix"],
    FIM_TOKENS["middle"],
)
# Every byte must stay reachable, or byte-level BPE could not encode arbitrary code.
_MIN_VOCAB_SIZE: Final = 256 + len(_SPECIAL_TOKENS)
_DEFAULT_SOURCE_FILE_LIMIT: Final = 300
_DEFAULT_SOURCE_BYTE_LIMIT: Final = 4 * 1024 * 1024
# Test suites carry deliberately odd encodings; site-packages differs between machines.
_SKIPPED_STDLIB_DIRS: Final = frozenset({"test", "tests", "site-packages"})

# (prefix, suffix, middle) as different model families spell them. DeepSeek Coder's
# begin/hole/end play the prefix/suffix/middle roles of the same PSM layout.
_FIM_SPELLINGS: Final = (
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    (
        "<\uff5cfim\u2581begin\uff5c>",
        "<\uff5cfim\u2581hole\uff5c>",
        "<\uff5cfim\u2581end\uff5c>",
    ),
)
_TOKENIZER_FILE_SETS: Final = (
    ("tokenizer.json",),
    ("tokenizer.model",),
    ("vocab.json", "merges.txt"),
    ("tekken.json",),
)
_WEIGHT_INDEXES: Final = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_CONTEXT_LENGTH_KEYS: Final = ("max_position_embeddings", "n_positions", "max_sequence_length")


def default_tokenizer_sources() -> list[Path]:
    """The standard library's Python files the tokenizer learns from when none are given.

    Sorted by path and bounded in count and bytes, so a given machine always picks the same
    files and the build stays quick.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    candidates = sorted(
        (
            path
            for path in stdlib.rglob("*.py")
            if not _SKIPPED_STDLIB_DIRS.intersection(path.relative_to(stdlib).parts)
        ),
        key=lambda path: path.relative_to(stdlib).as_posix(),
    )
    chosen: list[Path] = []
    total = 0
    for path in candidates:
        if len(chosen) == _DEFAULT_SOURCE_FILE_LIMIT:
            break
        size = path.stat().st_size
        if total + size > _DEFAULT_SOURCE_BYTE_LIMIT:
            continue
        chosen.append(path)
        total += size
    if not chosen:
        raise FileNotFoundError(f"no Python sources found under {stdlib}")
    return chosen


def build_tiny_model(
    out_dir: Path,
    *,
    seed: int = 0,
    sources: list[Path] | None = None,
    vocab_size: int = 2048,
) -> Path:
    """Write a complete Hugging Face model directory for the tiny model to `out_dir`.

    The same seed and sources give byte-identical weights. The directory appears only once it
    is complete; a previous build at `out_dir` is replaced, anything else there is refused.
    """
    if vocab_size < _MIN_VOCAB_SIZE:
        raise ValueError(f"vocab_size must be at least {_MIN_VOCAB_SIZE}, not {vocab_size}")
    training_files = default_tokenizer_sources() if sources is None else list(sources)
    if not training_files:
        raise ValueError("sources must name at least one file to train the tokenizer on")
    out_dir = Path(out_dir)
    _refuse_foreign_target(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        # mkdtemp makes the directory private; vLLM may run as another user.
        staging.chmod(0o755)
        tokenizer = _train_tokenizer(training_files, vocab_size)
        _save_tokenizer(tokenizer, staging)
        special_ids = {token: _single_token_id(tokenizer, token) for token in _SPECIAL_TOKENS}
        _save_model(
            staging,
            vocab_size=len(tokenizer),
            end_of_text_id=special_ids[END_OF_TEXT],
            marker_ids=[special_ids[marker] for marker in FIM_TOKENS.values()],
            seed=seed,
        )
        metadata = {
            "name": TINY_MODEL_NAME,
            "family": "llama",
            "fim_tokens": dict(FIM_TOKENS),
            "context_length": CONTEXT_LENGTH,
            "builder_version": BUILDER_VERSION,
            "seed": seed,
        }
        _write_json(staging / METADATA_FILE, metadata)
        for written in staging.iterdir():
            # transformers writes the weights owner-only; vLLM may run as another user.
            written.chmod(0o644)
        _publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def is_model_dir(path: Path) -> str | None:
    """None when `path` looks servable (config, weights, tokenizer), else the reason it is not."""
    path = Path(path)
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_dir():
        return f"{path} is a file, not a directory"
    try:
        return _model_dir_problem(path)
    except OSError as exc:
        return f"{path} cannot be read: {exc}"


def is_current_tiny_model(path: Path, *, seed: int = 0) -> bool:
    """True when `path` holds a usable build of this builder's version for `seed`.

    A cached build from an older builder still passes `is_model_dir`; this tells a caller
    that caches the tiny model when to build it again.
    """
    path = Path(path)
    if is_model_dir(path) is not None:
        return False
    metadata = _read_json_object(path / METADATA_FILE)
    return (
        metadata is not None
        and metadata.get("name") == TINY_MODEL_NAME
        and metadata.get("builder_version") == BUILDER_VERSION
        and metadata.get("seed") == seed
    )


def read_model_metadata(path: Path) -> dict[str, Any]:
    """What Cove needs to know about the model in `path`.

    Always has `name`, `family`, `fim_tokens` (a prefix/suffix/middle mapping or None) and
    `context_length` (None when unknown). A directory this module built returns its
    `cove_model.json` as written; any other is described from its config and tokenizer files.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a model directory")
    metadata_file = path / METADATA_FILE
    if metadata_file.is_file():
        metadata = _read_json(metadata_file)
        if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
            raise ValueError(f"{metadata_file} is not a Cove model description")
        return metadata
    config = _read_json_object(path / "config.json") or {}
    family = config.get("model_type")
    return {
        "name": path.resolve().name,
        "family": family if isinstance(family, str) else None,
        "fim_tokens": _detect_fim_tokens(path),
        "context_length": _context_length(config),
    }


def _train_tokenizer(sources: Sequence[Path], vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    # Decoding here rather than letting tokenizers read the files keeps a stray non-UTF-8
    # byte from aborting the build, and the replacement is the same on every run.
    texts = [source.read_bytes().decode("utf-8", errors="replace") for source in sources]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    # transformers leaves several constructors and helpers unannotated (mypy: untyped call).
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call,unused-ignore]
        tokenizer_object=backend,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        additional_special_tokens=list(_SPECIAL_TOKENS[1:]),
        model_max_length=CONTEXT_LENGTH,
        clean_up_tokenization_spaces=False,
        chat_template=CHAT_TEMPLATE,
    )


def _save_tokenizer(tokenizer: Any, directory: Path) -> None:
    tokenizer.save_pretrained(str(directory))
    # transformers 5 names its own backend class, moves the FIM tokens to a list-valued
    # `extra_special_tokens` that transformers 4 cannot read, and stops writing
    # special_tokens_map.json; these spellings load in both.
    config_file = directory / "tokenizer_config.json"
    config = _read_json_object(config_file) or {}
    config.pop("extra_special_tokens", None)
    config.update(
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": END_OF_TEXT,
            "eos_token": END_OF_TEXT,
            "pad_token": END_OF_TEXT,
            "additional_special_tokens": list(_SPECIAL_TOKENS[1:]),
            "model_max_length": CONTEXT_LENGTH,
            "chat_template": CHAT_TEMPLATE,
        }
    )
    _write_json(config_file, config)
    _write_json(
        directory / "special_tokens_map.json",
        {
            "bos_token": END_OF_TEXT,
            "eos_token": END_OF_TEXT,
            "pad_token": END_OF_TEXT,
            "additional_special_tokens": list(_SPECIAL_TOKENS[1:]),
        },
    )


def _single_token_id(tokenizer: Any, token: str) -> int:
    ids = tokenizer.encode(token, add_special_tokens=False)
    if len(ids) != 1:
        raise RuntimeError(f"{token!r} encodes as {len(ids)} tokens instead of one")
    return int(ids[0])


def _save_model(
    directory: Path,
    *,
    vocab_size: int,
    end_of_text_id: int,
    marker_ids: Sequence[int],
    seed: int,
) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=CONTEXT_LENGTH,
        bos_token_id=end_of_text_id,
        eos_token_id=end_of_text_id,
        pad_token_id=end_of_text_id,
        # A random model with tied embeddings mostly echoes its last input token, so a FIM
        # prompt (ending in <fim_middle>) would yield only special tokens, i.e. empty text.
        tie_word_embeddings=False,
    )
    # A private RNG stream: the weights depend on the seed alone, and the caller's global
    # torch RNG is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # float32 even when the caller changed torch's default dtype: the build must not vary.
        model = LlamaForCausalLM(config).float()  # type: ignore[no-untyped-call,unused-ignore]
    with torch.no_grad():
        # A zero output row scores below about half the vocabulary, so greedy decoding of the
        # untrained model never picks a FIM marker, which vLLM would strip to empty text.
        for marker_id in marker_ids:
            model.lm_head.weight[marker_id].zero_()
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call,unused-ignore]
        bos_token_id=end_of_text_id,
        eos_token_id=end_of_text_id,
        pad_token_id=end_of_text_id,
    )
    with _quiet_progress_bars():
        model.save_pretrained(str(directory), safe_serialization=True)


@contextlib.contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    from transformers.utils import logging as transformers_logging

    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call,unused-ignore]
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call,unused-ignore]


def _refuse_foreign_target(out_dir: Path) -> None:
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise FileExistsError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not _is_tiny_model_build(out_dir):
        raise FileExistsError(
            f"{out_dir} is not empty and holds no {TINY_MODEL_NAME} build; refusing to replace it"
        )


def _is_tiny_model_build(path: Path) -> bool:
    metadata = _read_json_object(path / METADATA_FILE)
    return metadata is not None and metadata.get("name") == TINY_MODEL_NAME


def _publish(staging: Path, out_dir: Path) -> None:
    _refuse_foreign_target(out_dir)
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    if not any(out_dir.iterdir()):
        out_dir.rmdir()
        staging.rename(out_dir)
        return
    # Swap by renames so readers see the old build or the new one, never a mixture.
    retired = out_dir.with_name(f".{out_dir.name}.retired-{uuid.uuid4().hex}")
    out_dir.rename(retired)
    try:
        staging.rename(out_dir)
    except BaseException:
        retired.rename(out_dir)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _model_dir_problem(path: Path) -> str | None:
    config_file = path / "config.json"
    if not config_file.is_file():
        if (path / "adapter_config.json").is_file():
            return f"{path} holds a LoRA adapter, not a base model (no config.json)"
        return f"{path} has no config.json"
    config = _read_json_object(config_file)
    if config is None:
        return f"{config_file} is not a JSON object"
    if not config.get("architectures") and not config.get("model_type"):
        return f"{config_file} names neither 'architectures' nor 'model_type'"
    weights_problem = _weights_problem(path)
    if weights_problem is not None:
        return weights_problem
    if not any(
        all((path / name).is_file() for name in file_set) for file_set in _TOKENIZER_FILE_SETS
    ):
        return (
            f"{path} has no tokenizer (expected tokenizer.json, tokenizer.model, "
            "or vocab.json with merges.txt)"
        )
    return None


def _weights_problem(path: Path) -> str | None:
    for index_name in _WEIGHT_INDEXES:
        index_file = path / index_name
        if not index_file.is_file():
            continue
        index = _read_json_object(index_file)
        weight_map = index.get("weight_map") if index is not None else None
        if not isinstance(weight_map, dict) or not weight_map:
            return f"{index_file} has no weight_map"
        missing = sorted({str(shard) for shard in weight_map.values()} - _files_in(path))
        if missing:
            return f"{path} lacks weight shards listed in {index_name}: {', '.join(missing[:3])}"
        return None
    weights = [
        entry
        for entry in path.iterdir()
        if entry.is_file()
        and entry.suffix in {".safetensors", ".bin", ".pt"}
        and not entry.name.startswith(("adapter_model", "training_args"))
    ]
    if not weights:
        return f"{path} has no weights (no *.safetensors, *.bin or *.pt file)"
    empty = [entry.name for entry in weights if entry.stat().st_size == 0]
    if empty:
        return f"{path} has empty weight files (an interrupted copy?): {', '.join(sorted(empty))}"
    return None


def _files_in(path: Path) -> set[str]:
    return {entry.name for entry in path.iterdir() if entry.is_file()}


def _detect_fim_tokens(path: Path) -> dict[str, str] | None:
    added = _added_tokens(path)
    for prefix, suffix, middle in _FIM_SPELLINGS:
        if {prefix, suffix, middle} <= added:
            return {"prefix": prefix, "suffix": suffix, "middle": middle}
    return None


def _added_tokens(path: Path) -> set[str]:
    # Only added tokens are matched whole; the same text in the BPE vocabulary would be split
    # by the pre-tokenizer and could not act as a FIM marker.
    tokens: set[str] = set()
    tokenizer = _read_json_object(path / "tokenizer.json") or {}
    tokens.update(_token_texts(tokenizer.get("added_tokens")))
    tokenizer_config = _read_json_object(path / "tokenizer_config.json") or {}
    decoder = tokenizer_config.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        tokens.update(_token_texts(list(decoder.values())))
    for key in ("additional_special_tokens", "extra_special_tokens"):
        tokens.update(_token_texts(tokenizer_config.get(key)))
    special_map = _read_json_object(path / "special_tokens_map.json") or {}
    tokens.update(_token_texts(special_map.get("additional_special_tokens")))
    return tokens


def _token_texts(entries: object) -> set[str]:
    if isinstance(entries, dict):
        entries = list(entries.values())
    if not isinstance(entries, list):
        return set()
    texts: set[str] = set()
    for entry in entries:
        if isinstance(entry, str):
            texts.add(entry)
        elif isinstance(entry, dict) and isinstance(entry.get("content"), str):
            texts.add(entry["content"])
    return texts


def _context_length(config: dict[str, Any]) -> int | None:
    for key in _CONTEXT_LENGTH_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _read_json_object(path: Path) -> dict[str, Any] | None:
    try:
        value = _read_json(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _write_json(path: Path, value: object) -> None:
    with path.open("w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
