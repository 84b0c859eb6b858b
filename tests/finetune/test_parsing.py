"""tree-sitter parsing: public APIs and call sites in each supported language, syntax errors,
and MinHash near-duplicate detection."""

from __future__ import annotations

import random

import pytest

from cove.finetune import parsing
from cove.finetune.dedup import NearDuplicateIndex, signature, similarity
from cove.finetune.sources import display_location, is_git_url, is_test_path


def _api(text: str, language: parsing.LanguageName, path: str) -> tuple[set[str], list[str]]:
    symbols, markers = parsing.public_api(parsing.parse(text, language), path)
    return {f"{s.kind}:{s.qualified}" for s in symbols}, markers


def test_python_public_api_skips_private_names() -> None:
    text = (
        "class LedgerClient:\n"
        "    def reconcile_batch(self, batch):\n        return batch\n"
        "    def _sign(self):\n        pass\n"
        "@cached\ndef post_entry(account, amount='€'):\n    return account\n"
        "def _helper():\n    pass\n"
    )
    symbols, markers = _api(text, "python", "src/ledgerlink/client.py")
    assert symbols == {
        "module:ledgerlink.client",
        "class:ledgerlink.client.LedgerClient",
        "method:ledgerlink.client.LedgerClient.reconcile_batch",
        "function:ledgerlink.client.post_entry",
    }
    assert markers == ["ledgerlink"]
    assert _api(text, "python", "ledgerlink/_internal.py") == (set(), [])


def test_java_public_api() -> None:
    text = (
        "package com.acme.ledger;\n"
        "public class LedgerClient {\n"
        "  public Entry postEntry(int amount) { return null; }\n"
        "  private void sign() {}\n"
        "  public interface Listener { void onPosted(Entry e); }\n"
        "}\n"
        "class Hidden { public void no() {} }\n"
    )
    symbols, markers = _api(text, "java", "src/main/java/com/acme/ledger/LedgerClient.java")
    assert symbols == {
        "class:com.acme.ledger.LedgerClient",
        "method:com.acme.ledger.LedgerClient.postEntry",
        "class:com.acme.ledger.LedgerClient.Listener",
        "method:com.acme.ledger.LedgerClient.Listener.onPosted",
    }
    assert markers == ["com.acme.ledger"]


def test_typescript_exports_are_the_public_api() -> None:
    text = (
        "export function postEntry(a: number): void {}\n"
        "export class Client { reconcile(b: string) { return b } #secret() {} "
        "private sign() {} }\n"
        "export const fetchBalance = async (id: string) => id;\n"
        "function internal() {}\n"
    )
    symbols, markers = _api(text, "typescript", "src/ledger/index.ts")
    assert symbols == {
        "function:ledger.postEntry",
        "class:ledger.Client",
        "method:ledger.Client.reconcile",
        "function:ledger.fetchBalance",
    }
    assert markers == ["ledger"]


def test_go_exported_names_are_the_public_api() -> None:
    text = (
        "package ledgerlink\n"
        "func PostEntry(a int) error { return nil }\n"
        "func (c *Client) Reconcile(b int) {}\n"
        "func (c *Client) sign() {}\n"
        "type Client struct{}\n"
        "func helper() {}\n"
    )
    symbols, markers = _api(text, "go", "ledger.go")
    assert symbols == {
        "function:ledgerlink.PostEntry",
        "method:ledgerlink.Client.Reconcile",
        "class:ledgerlink.Client",
    }
    assert markers == ["ledgerlink"]


@pytest.mark.parametrize(
    ("language", "text", "expected"),
    [
        ("python", "x = ledgerlink.post_entry(a, 1)\nc = Client()\n", ["post_entry", "Client"]),
        ("java", "var c = new LedgerClient(); c.postEntry(1);", ["LedgerClient", "postEntry"]),
        ("javascript", "const c = new pay.Client(); c.charge(1);", ["Client", "charge"]),
        ("tsx", "const x = <div>{client.render(1)}</div>;", ["render"]),
        ("go", "package m\nfunc f() { ledgerlink.PostEntry(1) }", ["PostEntry"]),
    ],
)
def test_call_sites_in_every_language(
    language: parsing.LanguageName, text: str, expected: list[str]
) -> None:
    source = parsing.parse(text, language)
    calls = parsing.call_sites(source)
    assert [call.name for call in calls] == expected
    for call in calls:
        assert text[call.name_start :].startswith(call.name)
        assert text[call.start : call.end].endswith(")")


def test_call_site_offsets_are_characters_not_bytes() -> None:
    text = "note = 'héllo wörld'\nentry = ledgerlink.post_entry('€', 2)\n"
    [call] = [
        c for c in parsing.call_sites(parsing.parse(text, "python")) if c.name == "post_entry"
    ]
    assert text[call.start : call.end] == "ledgerlink.post_entry('€', 2)"
    assert call.callee == "ledgerlink.post_entry"


def test_syntax_errors_are_counted() -> None:
    assert parsing.syntax_errors("def f(x):\n    return x\n", "python") == 0
    assert parsing.syntax_errors("def f(x:\n    return x\n", "python") >= 1
    assert parsing.syntax_errors("class A { void f() { } }", "java") == 0
    assert parsing.syntax_errors("class A { void f( { } }", "java") >= 1


def test_languages_by_extension() -> None:
    assert parsing.language_for("a/b.py") == "python"
    assert parsing.language_for("a/B.java") == "java"
    assert parsing.language_for("x.mjs") == "javascript"
    assert parsing.language_for("x.tsx") == "tsx"
    assert parsing.language_for("main.go") == "go"
    assert parsing.language_for("README.md") is None


def test_test_paths_and_git_urls() -> None:
    assert is_test_path("tests/test_client.py")
    assert is_test_path("pkg/client_test.go")
    assert is_test_path("src/app.spec.ts")
    assert not is_test_path("src/ledgerlink/client.py")
    assert is_git_url("https://git.internal/acme/sdk.git")
    assert is_git_url("git@host:acme/sdk")
    assert not is_git_url("/srv/repos/sdk")
    assert display_location("https://u:p@host/x.git") == "https://***@host/x.git"


def _code(seed: int, lines: int = 200) -> str:
    rng = random.Random(seed)
    return "\n".join(
        f"value_{rng.randint(0, 10**6)} = compute(alpha_{rng.randint(0, 999)}, {rng.random()})"
        for _ in range(lines)
    )


def test_minhash_tells_near_copies_from_different_files() -> None:
    original = _code(1)
    edited = original.replace("compute", "compute", 1) + "\n# a trailing comment\n"
    lines = original.split("\n")
    lines[10] = "changed = 1"
    touched = "\n".join(lines)
    other = _code(2)
    assert similarity(signature(original), signature(edited)) > 0.95
    assert similarity(signature(original), signature(touched)) > 0.85
    assert similarity(signature(original), signature(other)) < 0.2
    assert signature(original) == signature(original)
    index = NearDuplicateIndex(threshold=0.85)
    assert index.add("a.py", signature(original)) is None
    assert index.add("b.py", signature(other)) is None
    assert index.add("c.py", signature(touched)) == "a.py"
