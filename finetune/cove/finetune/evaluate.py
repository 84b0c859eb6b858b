"""Base model versus adapter on the held-out files, and the promotion gate.

Each held-out example's middle is masked; both models complete it greedily from the same
prompt and are scored on:
- exact match: the completion is the masked middle (ignoring surrounding whitespace);
- edit similarity: 1 - Levenshtein distance / length of the longer string;
- SDK-API recall: on examples whose middle calls the SDK, the share of those SDK symbols the
  completion calls too (by name followed by an opening parenthesis);
- syntax validity: the file completed with the completion has no more syntax errors than the
  file completed with the real middle (examples carry a window of their file, which may start
  or end inside a construct, so an error-free parse cannot be required of the window itself).

The gate promotes the adapter only if it beats the base by the configured margins.
Scoring is pure Python; generation comes from `cove.finetune.train` (the only torch user).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from cove.finetune import parsing
from cove.finetune.dataset import CARD_JSON, EVAL_FILE, read_examples
from cove.finetune.errors import InvalidDataset, TooLittleData

REPORT_JSON: Final = "eval_report.json"
REPORT_MARKDOWN: Final = "eval_report.md"
COMPLETIONS_FILE: Final = "eval_completions.jsonl"
METRICS: Final = ("exact_match", "edit_similarity", "sdk_api_recall", "syntax_validity")


@dataclass(frozen=True)
class PromotionGate:
    """How much better than the base model an adapter must be to be promoted."""

    min_sdk_recall_gain: float = 0.05
    min_edit_similarity_gain: float = 0.0
    # The adapter may lose at most this much syntax validity to the base model.
    max_syntax_validity_drop: float = 0.05

    def to_json(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class ExampleScore:
    exact_match: bool
    edit_similarity: float
    sdk_api_recall: float | None
    syntax_valid: bool | None


def levenshtein(first: str, second: str) -> int:
    if len(first) < len(second):
        first, second = second, first
    previous = list(range(len(second) + 1))
    for i, left in enumerate(first, start=1):
        current = [i]
        for j, right in enumerate(second, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (left != right))
            )
        previous = current
    return previous[-1]


def edit_similarity(completion: str, reference: str) -> float:
    completion, reference = completion.strip(), reference.strip()
    longest = max(len(completion), len(reference))
    if longest == 0:
        return 1.0
    return 1.0 - levenshtein(completion, reference) / longest


def symbol_name(qualified: str) -> str:
    return re.split(r"[./]", qualified)[-1]


def calls_symbol(completion: str, qualified: str) -> bool:
    name = re.escape(symbol_name(qualified))
    return re.search(rf"(?<![\w$]){name}\s*(?:<[^<>()]*>)?\s*\(", completion) is not None


def score_example(example: dict[str, Any], completion: str) -> ExampleScore:
    middle = example["middle"]
    symbols = [str(symbol) for symbol in example.get("sdk_symbols") or []]
    recall = (
        sum(calls_symbol(completion, symbol) for symbol in symbols) / len(symbols)
        if symbols
        else None
    )
    syntax: bool | None = None
    language = parsing.language_for(str(example.get("path", "")))
    if language is not None:
        reference = parsing.syntax_errors(example["prefix"] + middle + example["suffix"], language)
        candidate = parsing.syntax_errors(
            example["prefix"] + completion + example["suffix"], language
        )
        syntax = candidate <= reference
    return ExampleScore(
        exact_match=completion.strip() == middle.strip(),
        edit_similarity=edit_similarity(completion, middle),
        sdk_api_recall=recall,
        syntax_valid=syntax,
    )


def summarize(scores: Sequence[ExampleScore]) -> dict[str, float | None]:
    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    return {
        "exact_match": mean([float(score.exact_match) for score in scores]),
        "edit_similarity": mean([score.edit_similarity for score in scores]),
        "sdk_api_recall": mean(
            [score.sdk_api_recall for score in scores if score.sdk_api_recall is not None]
        ),
        "syntax_validity": mean(
            [float(score.syntax_valid) for score in scores if score.syntax_valid is not None]
        ),
    }


def gate_decision(
    base: dict[str, float | None], adapter: dict[str, float | None], gate: PromotionGate
) -> tuple[bool, list[str]]:
    """Whether the adapter passes, and why not if it does not."""
    reasons = []

    def gain(metric: str) -> float:
        return (adapter.get(metric) or 0.0) - (base.get(metric) or 0.0)

    if adapter.get("sdk_api_recall") is None:
        reasons.append("no held-out example calls the SDK, so SDK-API recall cannot be measured")
    elif gain("sdk_api_recall") < gate.min_sdk_recall_gain:
        reasons.append(
            f"SDK-API recall gain {gain('sdk_api_recall'):+.3f} is below the required "
            f"{gate.min_sdk_recall_gain:+.3f}"
        )
    if gain("edit_similarity") < gate.min_edit_similarity_gain:
        reasons.append(
            f"edit similarity gain {gain('edit_similarity'):+.3f} is below the required "
            f"{gate.min_edit_similarity_gain:+.3f}"
        )
    if -gain("syntax_validity") > gate.max_syntax_validity_drop:
        reasons.append(
            f"syntax validity drops by {-gain('syntax_validity'):.3f}, more than the allowed "
            f"{gate.max_syntax_validity_drop:.3f}"
        )
    return not reasons, reasons


def _select(examples: list[dict[str, Any]], limit: int, seed: int) -> list[dict[str, Any]]:
    if len(examples) <= limit:
        return examples

    def rank(item: tuple[int, dict[str, Any]]) -> str:
        index, example = item
        return hashlib.sha256(f"{seed}|eval|{example.get('path')}|{index}".encode()).hexdigest()

    chosen = sorted(enumerate(examples), key=rank)[:limit]
    return [example for _, example in sorted(chosen, key=lambda item: item[0])]


def evaluate_adapter(
    base_model: Path,
    adapter_dir: Path,
    dataset_dir: Path,
    out_dir: Path,
    *,
    gate: PromotionGate | None = None,
    max_examples: int = 200,
    max_new_tokens: int = 48,
    context_length: int | None = None,
    seed: int = 0,
    should_cancel: Callable[[], bool] | None = None,
    cpu_threads: int | None = None,
) -> dict[str, Any]:
    """Score base and adapter on the held-out split; write the report into `out_dir`."""
    from cove.finetune.train import ADAPTER_METADATA, generate_completions, is_adapter_dir

    gate = gate or PromotionGate()
    adapter_dir = Path(adapter_dir)
    dataset_dir = Path(dataset_dir)
    if not is_adapter_dir(adapter_dir):
        raise InvalidDataset(f"{adapter_dir} is not a complete adapter produced by training")
    eval_file = dataset_dir / EVAL_FILE
    if not eval_file.is_file():
        raise InvalidDataset(f"{dataset_dir} holds no {EVAL_FILE}; build the dataset first")
    examples = _select(read_examples(eval_file), max_examples, seed)
    if not examples:
        raise TooLittleData(f"{eval_file} has no held-out examples")
    adapter_info = json.loads((adapter_dir / ADAPTER_METADATA).read_text(encoding="utf-8"))
    if context_length is None:
        context_length = int(adapter_info.get("hyperparameters", {}).get("context_length", 2048))
    started = time.monotonic()
    completions = generate_completions(
        Path(base_model),
        adapter_dir,
        [(example["prefix"], example["suffix"]) for example in examples],
        context_length=context_length,
        max_new_tokens=max_new_tokens,
        should_cancel=should_cancel,
        cpu_threads=cpu_threads,
    )
    base_scores = [
        score_example(example, text)
        for example, text in zip(examples, completions.base, strict=True)
    ]
    adapter_scores = [
        score_example(example, text)
        for example, text in zip(examples, completions.adapter, strict=True)
    ]
    base = summarize(base_scores)
    adapter = summarize(adapter_scores)
    passed, reasons = gate_decision(base, adapter, gate)
    by_language: dict[str, dict[str, Any]] = {}
    for language in sorted({str(example.get("language")) for example in examples}):
        indexes = [i for i, example in enumerate(examples) if example.get("language") == language]
        by_language[language] = {
            "examples": len(indexes),
            "base": summarize([base_scores[i] for i in indexes]),
            "adapter": summarize([adapter_scores[i] for i in indexes]),
        }
    dataset_card = dataset_dir / CARD_JSON
    report: dict[str, Any] = {
        "base_model": adapter_info.get("base_model"),
        "adapter": str(adapter_dir),
        "dataset_hash": (
            json.loads(dataset_card.read_text(encoding="utf-8")).get("dataset_hash")
            if dataset_card.is_file()
            else None
        ),
        "examples": len(examples),
        "sdk_examples": sum(1 for example in examples if example.get("sdk_symbols")),
        "max_new_tokens": max_new_tokens,
        "context_length": context_length,
        "base": base,
        "adapter_scores": adapter,
        "delta": {
            metric: (
                round((adapter[metric] or 0.0) - (base[metric] or 0.0), 4)
                if adapter[metric] is not None and base[metric] is not None
                else None
            )
            for metric in METRICS
        },
        "by_language": by_language,
        "gate": {"passed": passed, "reasons": reasons, "policy": gate.to_json()},
        "seconds": round(time.monotonic() - started, 3),
    }
    _write_report(Path(out_dir), report, examples, completions.base, completions.adapter)
    return report


def _write_report(
    out_dir: Path,
    report: dict[str, Any],
    examples: Sequence[dict[str, Any]],
    base: Sequence[str],
    adapter: Sequence[str],
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps(
            {
                "path": example.get("path"),
                "middle": example["middle"],
                "sdk_symbols": example.get("sdk_symbols") or [],
                "base": base_text,
                "adapter": adapter_text,
            }
        )
        for example, base_text, adapter_text in zip(examples, base, adapter, strict=True)
    ]
    for name, content in (
        (COMPLETIONS_FILE, "".join(f"{line}\n" for line in lines)),
        (REPORT_JSON, json.dumps(report, indent=2) + "\n"),
        (REPORT_MARKDOWN, report_markdown(report)),
    ):
        temporary = out_dir / f".{name}.{uuid.uuid4().hex}"
        temporary.write_text(content, encoding="utf-8")
        temporary.replace(out_dir / name)


def _shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def report_markdown(report: dict[str, Any]) -> str:
    """The evaluation as a BU admin reads it."""
    base_model = report.get("base_model") or {}
    gate = report["gate"]
    verdict = "PASSED" if gate["passed"] else "FAILED"
    lines = [
        "# Adapter evaluation",
        "",
        f"- Base model: {base_model.get('name', '?')}",
        f"- Adapter: `{report['adapter']}`",
        f"- Dataset: `{report.get('dataset_hash')}`",
        f"- Held-out examples: {report['examples']} ({report['sdk_examples']} SDK call sites), "
        f"greedy, up to {report['max_new_tokens']} new tokens",
        "",
        "| metric | base | adapter | change |",
        "|---|---|---|---|",
    ]
    for metric in METRICS:
        delta = report["delta"][metric]
        lines.append(
            f"| {metric.replace('_', ' ')} | {_shown(report['base'][metric])} "
            f"| {_shown(report['adapter_scores'][metric])} "
            f"| {'n/a' if delta is None else f'{delta:+.3f}'} |"
        )
    lines += ["", f"## Promotion gate: {verdict}", ""]
    policy = gate["policy"]
    lines.append(
        f"Requires SDK-API recall {policy['min_sdk_recall_gain']:+.3f} and edit similarity "
        f"{policy['min_edit_similarity_gain']:+.3f} over the base, losing at most "
        f"{policy['max_syntax_validity_drop']:.3f} syntax validity."
    )
    lines += [f"- {reason}" for reason in gate["reasons"]]
    if len(report["by_language"]) > 1:
        lines += [
            "",
            "## By language",
            "",
            "| language | examples | base recall | adapter recall | base edit | adapter edit |",
            "|---|---|---|---|---|---|",
        ]
        for language, scores in report["by_language"].items():
            lines.append(
                f"| {language} | {scores['examples']} "
                f"| {_shown(scores['base']['sdk_api_recall'])} "
                f"| {_shown(scores['adapter']['sdk_api_recall'])} "
                f"| {_shown(scores['base']['edit_similarity'])} "
                f"| {_shown(scores['adapter']['edit_similarity'])} |"
            )
    return "\n".join(lines) + "\n"
