"""Scoring, the promotion gate, and the adapter registry's refusals and lineage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cove.finetune.errors import FinetuneError, PromotionRejected
from cove.finetune.evaluate import (
    PromotionGate,
    calls_symbol,
    edit_similarity,
    gate_decision,
    levenshtein,
    report_markdown,
    score_example,
    summarize,
)
from cove.finetune.registry import AdapterRecord, read_registry, register_adapter


def test_edit_similarity_and_levenshtein() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert edit_similarity("abc", "abc") == 1.0
    assert edit_similarity("", "") == 1.0
    assert edit_similarity("  post_entry(a)\n", "post_entry(a)") == 1.0
    assert edit_similarity("xyz", "abc") == 0.0


def test_sdk_recall_needs_a_call_of_the_symbol() -> None:
    assert calls_symbol("entry = ledgerlink.post_entry(a, b)", "ledgerlink.post_entry")
    assert calls_symbol("client.reconcile_batch (batch)", "x.LedgerClient.reconcile_batch")
    assert calls_symbol("new LedgerClient<T>(url)", "com.acme.LedgerClient")
    assert not calls_symbol("# post_entry is called later", "ledgerlink.post_entry")
    assert not calls_symbol("repost_entry(a)", "ledgerlink.post_entry")
    assert calls_symbol("acme.PostEntry(ctx, 1)", "acme/ledger.PostEntry")


def _example(middle: str, symbols: list[str]) -> dict[str, Any]:
    return {
        "path": "payments/flows.py",
        "prefix": "def settle(account, amount):\n    entry = ",
        "middle": middle,
        "suffix": "\n    return entry\n",
        "sdk_symbols": symbols,
    }


def test_scores_of_one_example() -> None:
    example = _example("ledgerlink.post_entry(account, amount)", ["ledgerlink.post_entry"])
    right = score_example(example, "ledgerlink.post_entry(account, amount)")
    assert right.exact_match
    assert right.sdk_api_recall == 1.0
    assert right.syntax_valid
    wrong = score_example(example, "ledgerlink.void_entry(account")
    assert not wrong.exact_match
    assert wrong.sdk_api_recall == 0.0
    assert wrong.syntax_valid is False
    assert 0 < wrong.edit_similarity < 1
    plain = score_example(_example("1 + 2", []), "1 + 2")
    assert plain.sdk_api_recall is None
    summary = summarize([right, wrong, plain])
    assert summary["exact_match"] == pytest.approx(2 / 3, abs=1e-3)
    assert summary["sdk_api_recall"] == 0.5
    assert summary["syntax_validity"] == pytest.approx(2 / 3, abs=1e-3)


def test_the_gate_requires_the_configured_margins() -> None:
    base = {
        "exact_match": 0.0,
        "edit_similarity": 0.2,
        "sdk_api_recall": 0.1,
        "syntax_validity": 0.5,
    }
    better = {**base, "edit_similarity": 0.5, "sdk_api_recall": 0.4}
    assert gate_decision(base, better, PromotionGate()) == (True, [])
    passed, reasons = gate_decision(base, better, PromotionGate(min_sdk_recall_gain=0.5))
    assert not passed
    assert "SDK-API recall gain +0.300 is below the required +0.500" in reasons[0]
    worse_syntax = {**better, "syntax_validity": 0.3}
    passed, reasons = gate_decision(base, worse_syntax, PromotionGate())
    assert not passed
    assert "syntax validity drops" in reasons[0]


def _adapter(tmp_path: Path) -> Path:
    adapter = tmp_path / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    return adapter


def _evaluation(passed: bool) -> dict[str, Any]:
    scores = {"exact_match": 0.1, "edit_similarity": 0.4, "sdk_api_recall": 0.3}
    return {
        "base": {**scores, "sdk_api_recall": 0.0},
        "adapter_scores": scores,
        "delta": {"sdk_api_recall": 0.3},
        "examples": 10,
        "sdk_examples": 8,
        "gate": {"passed": passed, "reasons": [] if passed else ["recall too low"]},
    }


def _register(tmp_path: Path, adapter: Path, **kwargs: Any) -> AdapterRecord:
    return register_adapter(
        tmp_path / "registry.json",
        name=kwargs.pop("name", "ledgerlink"),
        adapter_dir=adapter,
        base_model={"name": "cove-tiny"},
        dataset={"hash": "sha256:abc"},
        hyperparameters={"rank": 8},
        evaluation=kwargs.pop("evaluation", _evaluation(True)),
        **kwargs,
    )


def test_registration_records_lineage_and_versions(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path)
    seen: list[AdapterRecord] = []
    first = _register(tmp_path, adapter, on_register=seen.append)
    second = _register(tmp_path, adapter)
    assert (first.version, second.version) == (1, 2)
    assert seen == [first]
    entries = read_registry(tmp_path / "registry.json")
    assert [entry["version"] for entry in entries] == [1, 2]
    assert entries[0]["dataset"] == {"hash": "sha256:abc"}
    assert entries[0]["base_model"] == {"name": "cove-tiny"}
    assert entries[0]["scores"]["adapter"]["sdk_api_recall"] == 0.3
    assert entries[0]["adapter_sha256"].startswith("sha256:")


def test_registration_refuses_partial_or_unproven_adapters(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path)
    (adapter / "adapter_model.safetensors").unlink()
    with pytest.raises(FinetuneError, match="not a complete adapter"):
        _register(tmp_path, adapter)
    adapter = _adapter(tmp_path / "second")
    with pytest.raises(PromotionRejected, match="recall too low"):
        _register(tmp_path, adapter, evaluation=_evaluation(False))
    assert not (tmp_path / "registry.json").exists()


def test_a_failing_catalog_write_registers_nothing(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path)

    def refuse(record: AdapterRecord) -> None:
        raise RuntimeError("catalog unavailable")

    with pytest.raises(RuntimeError, match="catalog unavailable"):
        _register(tmp_path, adapter, on_register=refuse)
    assert read_registry(tmp_path / "registry.json") == []


def test_the_report_reads_as_a_table() -> None:
    report = {
        "base_model": {"name": "cove-tiny"},
        "adapter": "/x/adapter",
        "dataset_hash": "sha256:1",
        "examples": 3,
        "sdk_examples": 2,
        "max_new_tokens": 24,
        "base": {
            "exact_match": 0.0,
            "edit_similarity": 0.1,
            "sdk_api_recall": 0.0,
            "syntax_validity": None,
        },
        "adapter_scores": {
            "exact_match": 0.5,
            "edit_similarity": 0.6,
            "sdk_api_recall": 0.5,
            "syntax_validity": None,
        },
        "delta": {
            "exact_match": 0.5,
            "edit_similarity": 0.5,
            "sdk_api_recall": 0.5,
            "syntax_validity": None,
        },
        "by_language": {},
        "gate": {"passed": True, "reasons": [], "policy": PromotionGate().to_json()},
    }
    markdown = report_markdown(report)
    assert "| sdk api recall | 0.000 | 0.500 | +0.500 |" in markdown
    assert "| syntax validity | n/a | n/a | n/a |" in markdown
    assert "Promotion gate: PASSED" in markdown
