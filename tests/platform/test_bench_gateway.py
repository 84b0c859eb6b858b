"""`cove bench gateway` in a tiny configuration: the whole machinery (own Postgres and Redis,
responder, gateway, load generator) runs end to end and reports sane numbers. No timing is
asserted: this machine's speed is not the subject of a test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from cove.gateway.policy.engine import DEFAULT_POLICY, apply_policy
from cove.platform.bench.load import LoadSamples, Percentiles, percentile
from cove.platform.bench.prompt import PROMPT, with_secret

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]

HEADLINE = (
    "rps",
    "p50_added_ms",
    "p95_added_ms",
    "p99_added_ms",
    "ttfb_p50_added_ms",
    "litellm_p50_added_ms",
    "litellm_p99_added_ms",
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVE_")}
    return subprocess.run(
        [sys.executable, "-m", "cove.platform.bench.cli", "gateway", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=240,
        check=False,
    )


def test_a_tiny_run_reports_every_figure_without_errors() -> None:
    result = _run(
        "--no-vllm",
        "--no-litellm",
        "--rate",
        "20",
        "--low-rate",
        "0",
        "--duration",
        "2",
        "--rounds",
        "1",
        "--warmup",
        "0.3",
        "--concurrency",
        "2",
        "--upstream-latency-ms",
        "5",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    summary: dict[str, Any] = orjson.loads(lines[-1])
    for name in HEADLINE:
        assert name in summary, name
    assert summary["rps"] == 20
    # LiteLLM was skipped: its figures are present but empty.
    assert summary["litellm_p50_added_ms"] is None
    for name in ("p50_added_ms", "p95_added_ms", "p99_added_ms", "ttfb_p50_added_ms"):
        assert isinstance(summary[name], float), name
    for key, value in summary.items():
        if key.endswith(("_errors", "_rps")) or key in ("usage_events", "redis_limit_keys"):
            assert value >= 0, key
        if key.endswith("_errors"):
            assert value == 0, (key, summary)
    for prefix in ("", "rate_stream_", "conc_", "conc_stream_"):
        assert summary[f"{prefix}direct_rps"] > 0
        assert summary[f"{prefix}cove_rps"] > 0
        assert summary[f"{prefix}cove_p50_ms"] >= 5.0  # never faster than the upstream's delay
    # The full policy really ran: limits were counted in Redis, usage events reached Postgres.
    assert summary["redis_limit_keys"] > 0
    assert summary["usage_events"] >= summary["cove_requests_ok"] > 0
    assert summary["responder_paths"]["/v1/completions"] > 0
    # The table comes before the JSON line.
    assert any(line.startswith("cove ") for line in lines[:-1])


def test_the_prompt_is_six_kilobytes_of_code_without_a_secret() -> None:
    assert 6000 <= len(PROMPT.encode()) <= 6600
    assert apply_policy(DEFAULT_POLICY, PROMPT).findings == ()
    planted = apply_policy(DEFAULT_POLICY, with_secret())
    assert [f.type for f in planted.findings] == ["aws_access_key_id"]
    assert "<redacted:aws_access_key_id>" in planted.text


def test_percentiles_and_merging() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([7.0], 99) == 7.0
    stats = Percentiles.of([i / 1000 for i in range(1, 101)])
    assert stats is not None
    assert stats.p50 == pytest.approx(50.5)
    assert stats.max == 100.0
    a = LoadSamples(sent=2, ok=1, error_kinds={"http_500": 1}, latency=[0.1], window=1.0)
    b = LoadSamples(sent=1, ok=0, timeouts=1, latency=[10.0], window=1.0)
    a.add(b)
    assert (a.sent, a.ok, a.errors, a.window) == (3, 1, 2, 2.0)
    assert LoadSamples.from_json(a.to_json()) == a
