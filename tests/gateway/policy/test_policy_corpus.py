"""Recall and false-positive rate on a generated corpus of secrets and look-alikes.

Hundreds of realistic-format fake secrets of every type in Python, JS, YAML, .env, shell, JSON,
Java, Go, XML and properties contexts, and hundreds of look-alikes (hashes, UUIDs, environment
lookups, placeholders, variable references, annotations, docs fixtures, labels, public keys).
A secret counts as found when one finding covers its whole span.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest
from typer.testing import CliRunner

from cove.gateway.policy.cli import policy_app
from cove.gateway.policy.engine import DEFAULT_POLICY, apply_policy
from tests.gateway.policy.fakes import Corpus, LookAlike, Secret

SEED = int(os.environ.get("COVE_POLICY_CORPUS_SEED", "20250101"))


@pytest.fixture(scope="module")
def corpus() -> tuple[list[Secret], list[LookAlike]]:
    generated = Corpus(SEED)
    return generated.secrets(per_type=16), generated.look_alikes(per_kind=40)


def test_recall_and_false_positive_rate(
    corpus: tuple[list[Secret], list[LookAlike]], capsys: pytest.CaptureFixture[str]
) -> None:
    secrets, look_alikes = corpus
    assert len(secrets) >= 500
    assert len(look_alikes) >= 500

    missed: list[Secret] = []
    exact = typed = 0
    for secret in secrets:
        result = apply_policy(DEFAULT_POLICY, secret.text)
        covering = [f for f in result.findings if f.start <= secret.start and f.end >= secret.end]
        if not covering:
            missed.append(secret)
            continue
        exact += any(f.start == secret.start and f.end == secret.end for f in covering)
        typed += covering[0].type == secret.type
        assert secret.text[secret.start : secret.end] not in result.text

    flagged = [la for la in look_alikes if apply_policy(DEFAULT_POLICY, la.text).findings]

    recall = 1 - len(missed) / len(secrets)
    fp_rate = len(flagged) / len(look_alikes)
    with capsys.disabled():
        print(
            f"\npolicy corpus (seed {SEED}): {len(secrets)} secrets across "
            f"{len({s.type for s in secrets})} types, recall {recall:.2%} "
            f"(exact span {exact / len(secrets):.2%}, right type {typed / len(secrets):.2%}); "
            f"{len(look_alikes)} look-alikes, false positives {fp_rate:.2%} "
            f"{dict(Counter(la.kind for la in flagged))}"
        )
    assert recall >= 0.99, [(s.type, s.context, s.text[:120]) for s in missed[:10]]
    assert fp_rate <= 0.01, [(la.kind, la.text[:120]) for la in flagged[:10]]
    assert typed / len(secrets) >= 0.95


def test_corpus_through_the_cli_matches_the_engine(
    corpus: tuple[list[Secret], list[LookAlike]],
) -> None:
    secrets, look_alikes = corpus
    texts = [s.text for s in secrets[:150]] + [la.text for la in look_alikes[:150]]
    lines = "".join(json.dumps({"text": t}) + "\n" for t in texts)
    result = CliRunner().invoke(policy_app, ["scan", "--jsonl"], input=lines)
    assert result.exit_code == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert answers == [apply_policy(DEFAULT_POLICY, t).to_dict() for t in texts]
