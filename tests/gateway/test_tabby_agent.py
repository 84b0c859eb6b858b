"""Tabby's real IDE agent against the gateway: the `tabby-agent` that Tabby's VS Code, JetBrains
and Vim plugins embed, run from npm (tests/tabby), completing code from the real vLLM through
the gateway's Tabby API, and its usage events landing in Postgres as Cove events.

tabby-agent 1.5.0's LSP server answers `textDocument/completion` (it has no
`textDocument/inlineCompletion` and no LSP request that posts events); the events go through the
agent's `postEvent`, which IDE plugins of that generation call over its JSON-lines protocol
(tests/tabby/agent.py).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from cove.gateway.app import create_app
from cove.gateway.settings import GatewaySettings
from cove.platform.core.db import Database
from tests.conftest import ServerThread
from tests.gateway.conftest import add_deployment
from tests.tabby.agent import (
    JsonLinesAgent,
    agent_env,
    agent_logs,
    ensure_installed,
    pinned_version,
    write_agent_home,
)
from tests.tabby.lsp import METHOD_NOT_FOUND, LspClient, LspError

pytestmark = pytest.mark.vllm

# The cursor stands after `result = `; the file goes on with a newline.
BEFORE = '''def fibonacci(n):
    """Return the n-th Fibonacci number."""
    if n < 2:
        return n
    result = '''
AFTER = "\n"
# What the developer types, one keystroke after another, when no suggestion shows up: random
# tokens from the tiny model are sometimes blank or get dropped by the agent's post-processing.
KEYSTROKES = "fib(n - 1) + fib(n - 2)"


class RecordingUpstream:
    """A pass-through in front of vLLM that keeps every completion it relays."""

    def __init__(self, target: str) -> None:
        self.exchanges: list[tuple[dict[str, Any], dict[str, Any]]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def _relay(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                reply = httpx.request(
                    method,
                    target + self.path,
                    content=body,
                    headers={"content-type": self.headers.get("content-type", "application/json")},
                    timeout=60,
                )
                if method == "POST" and self.path == "/v1/completions" and reply.is_success:
                    upstream.exchanges.append((json.loads(body or b"{}"), reply.json()))
                self.send_response(reply.status_code)
                self.send_header("content-type", reply.headers.get("content-type", "text/plain"))
                self.send_header("content-length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            def do_POST(self) -> None:
                self._relay("POST")

            def do_GET(self) -> None:
                self._relay("GET")

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RecordingUpstream:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reply_for(self, completion_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """vLLM's (request, reply) for the completion with this id."""
        for request, reply in self.exchanges:
            if reply.get("id") == completion_id:
                return request, reply
        raise AssertionError(f"vLLM never answered {completion_id}: {self.exchanges}")


async def _rows(db: Database, where: str, params: tuple[Any, ...] = ()) -> list[Any]:
    async with db.platform() as conn:
        cur = await conn.execute(
            "SELECT event_type, tenant_id, completion_id, model_version, feature, language,"
            f" data, user_id, ide FROM usage_events WHERE {where} ORDER BY received_at",
            params,
        )
        return await cur.fetchall()


async def _wait_for_ids(
    db: Database, where: str, ids: set[str], count: int, timeout: float = 10
) -> list[Any]:
    """The rows matching `where` once `count` of them carry one of `ids`."""
    deadline = time.monotonic() + timeout
    rows: list[Any] = []
    while time.monotonic() < deadline:
        rows = await _rows(db, where)
        if sum(row[2] in ids for row in rows) >= count:
            break
        time.sleep(0.1)
    return rows


@pytest.fixture(scope="module")
def agent_script() -> Path:
    return ensure_installed()


@pytest.fixture
def fast_settings(gateway_settings: GatewaySettings, tmp_path: Path) -> GatewaySettings:
    return gateway_settings.model_copy(
        update={"event_flush_seconds": 0.1, "event_spool_dir": tmp_path / "spool"}
    )


@pytest.fixture
def upstream(vllm_url: str) -> Iterator[RecordingUpstream]:
    with RecordingUpstream(vllm_url) as recording:
        yield recording


def _end(text: str) -> dict[str, int]:
    lines = text.split("\n")
    return {"line": len(lines) - 1, "character": len(lines[-1])}


def lsp_completion(client: LspClient, uri: str, before: str) -> tuple[dict[str, Any], str]:
    """Ask for a completion at the cursor, typing on while none shows up, as an editor does."""
    version = 1
    listing: dict[str, Any] = {}
    for key in ["", *KEYSTROKES]:
        if key:
            version += 1
            cursor = _end(before)
            client.notify(
                "textDocument/didChange",
                {
                    "textDocument": {"uri": uri, "version": version},
                    "contentChanges": [{"range": {"start": cursor, "end": cursor}, "text": key}],
                },
            )
            before += key
        listing = client.request(
            "textDocument/completion",
            {
                "textDocument": {"uri": uri},
                "position": _end(before),
                "context": {"triggerKind": 1},
            },
        )
        if listing["items"]:
            break
    return listing, before


def jsonl_completion(agent: JsonLinesAgent, path: Path, before: str) -> dict[str, Any]:
    """`provideCompletions` as the JetBrains plugin calls it, typing on while none shows up."""
    completion: dict[str, Any] = {}
    for key in ["", *KEYSTROKES]:
        before += key
        completion = agent.call(
            "provideCompletions",
            {
                "filepath": str(path),
                "language": "python",
                "text": before + AFTER,
                "position": len(before),
                "manually": True,
                "workspace": str(path.parent),
            },
            {"signal": True},
        )
        if completion and completion["choices"]:
            return completion
    raise AssertionError(f"no suggestion after typing {KEYSTROKES!r}: {completion}")


def view_id(completion: dict[str, Any], shown_at: int) -> str:
    """The id Tabby's JetBrains plugin gives one display of a suggestion."""
    return f"view-{completion['id'].replace('cmpl-', '')}-at-{shown_at}"


async def test_tabby_agent_completes_from_vllm_and_its_events_become_cove_events(
    db: Database,
    world: dict[str, Any],
    upstream: RecordingUpstream,
    fast_settings: GatewaySettings,
    agent_script: Path,
    tmp_path: Path,
) -> None:
    bu = world["a"]["bu"].id
    await add_deployment(db, bu, upstream.url)
    home = tmp_path / "home"
    project = tmp_path / "project"
    project.mkdir()
    source = project / "fib.py"
    source.write_text(BEFORE + AFTER)
    with ServerThread(create_app(fast_settings)) as gateway:
        write_agent_home(home, gateway.url, world["a"]["dev_key"])

        # ---- 1. The LSP server, as an editor with an LSP client runs it. ------------------
        client = LspClient(
            ["node", str(agent_script), "--lsp", "--stdio"],
            env=agent_env(home),
            cwd=project,
            stderr_log=tmp_path / "lsp.stderr",
        )
        try:
            init = client.request(
                "initialize",
                {
                    "processId": None,
                    "clientInfo": {"name": "cove-test-ide", "version": "1.0"},
                    "rootUri": project.as_uri(),
                    "workspaceFolders": [{"uri": project.as_uri(), "name": "project"}],
                    "capabilities": {
                        "workspace": {"configuration": True, "workspaceFolders": True},
                        "textDocument": {
                            "synchronization": {"didSave": False},
                            "completion": {"completionItem": {"snippetSupport": False}},
                            "inlineCompletion": {"dynamicRegistration": False},
                        },
                    },
                },
            )
            assert init["serverInfo"] == {"name": "tabby-agent", "version": pinned_version()}
            # 1.5.0 offers completions as LSP completion items only: an editor that supports
            # inline completion falls back to `textDocument/completion`.
            assert "completionProvider" in init["capabilities"]
            assert "inlineCompletionProvider" not in init["capabilities"]
            client.notify("initialized", {})
            client.notify(
                "textDocument/didOpen",
                {
                    "textDocument": {
                        "uri": source.as_uri(),
                        "languageId": "python",
                        "version": 1,
                        "text": BEFORE + AFTER,
                    }
                },
            )
            with pytest.raises(LspError) as no_inline:
                client.request(
                    "textDocument/inlineCompletion",
                    {
                        "textDocument": {"uri": source.as_uri()},
                        "position": _end(BEFORE),
                        "context": {"triggerKind": 1},
                    },
                )
            assert no_inline.value.code == METHOD_NOT_FOUND
            listing, typed = lsp_completion(client, source.as_uri(), BEFORE)
            warnings = client.notifications_of("window/showMessage")
        finally:
            client.close()
        assert not warnings, f"{warnings}\n{agent_logs(home)}"
        assert listing["items"], f"no suggestion over LSP: {listing}\n{agent_logs(home)}"
        item = listing["items"][0]
        lsp_id = item["data"]["completionId"]
        prompt, reply = upstream.reply_for(lsp_id)
        # The suggestion is vLLM's text: tabby-agent trims it and may cut it after a line. The
        # item's edit also re-inserts the word already typed before the cursor.
        last_line = typed.rsplit("\n", 1)[-1]
        word = re.search(r"\w+$", last_line)
        typed_word = word.group(0) if word else ""
        assert item["textEdit"]["newText"].startswith(typed_word)
        offered = item["textEdit"]["newText"][len(typed_word) :].strip()
        generated = reply["choices"][0]["text"].strip()
        assert offered
        assert generated.startswith(offered)
        assert offered.startswith(generated.split("\n", 1)[0].strip())
        assert item["data"]["choiceIndex"] == 0
        # The document reached vLLM in the model's fill-in-the-middle layout.
        assert prompt["prompt"].startswith("<fim_prefix>def fibonacci(n):")
        assert prompt["prompt"].endswith(f"{last_line}<fim_suffix>{AFTER}<fim_middle>")

        # ---- 2. Telemetry, as Tabby's JetBrains plugin posts it through the agent. ----------
        agent = JsonLinesAgent(
            agent_script, env=agent_env(home), cwd=project, stderr_log=tmp_path / "jsonl.stderr"
        )
        try:
            assert agent.call(
                "initialize",
                {"clientProperties": {"session": {"client": "cove-test-ide"}, "user": {}}},
            )
            assert agent.call("getStatus") == "ready", agent_logs(home)
            health = agent.call("getServerHealthState")
            assert health["model"] == "cove-tiny"
            accepted = jsonl_completion(agent, source, BEFORE)
            dismissed = jsonl_completion(agent, source, BEFORE + "fib(n - 1)\n    other = ")
            shown_at = int(time.time() * 1000)
            for completion in (accepted, dismissed):
                assert agent.call(
                    "postEvent",
                    {
                        "type": "view",
                        "completion_id": completion["id"],
                        "choice_index": completion["choices"][0]["index"],
                        "view_id": view_id(completion, shown_at),
                    },
                    {"signal": True},
                ), agent_logs(home)
            # The developer accepts the next line of the suggestion, then the rest of it.
            for select_kind, elapsed in (("line", 420), (None, 900)):
                select = {
                    "type": "select",
                    "completion_id": accepted["id"],
                    "choice_index": accepted["choices"][0]["index"],
                    "view_id": view_id(accepted, shown_at),
                    "elapsed": elapsed,
                }
                if select_kind:
                    select["select_kind"] = select_kind
                assert agent.call("postEvent", select, {"signal": True}), agent_logs(home)
            assert agent.call(
                "postEvent",
                {
                    "type": "dismiss",
                    "completion_id": dismissed["id"],
                    "choice_index": dismissed["choices"][0]["index"],
                    "view_id": view_id(dismissed, shown_at),
                    "elapsed": 1300,
                },
                {"signal": True},
            ), agent_logs(home)
        finally:
            agent.close()
        # Anonymous usage tracking is off: nothing went to app.tabbyml.com (nor failed to).
        assert "AnonymousUsage" not in agent_logs(home, limit=10**7)

        ids = {lsp_id, accepted["id"], dismissed["id"]}
        served = await _wait_for_ids(db, "event_type = 'completion.served'", ids, 3)
        feedback = await _wait_for_ids(db, "event_type <> 'completion.served'", ids, 5)

    by_id = {row[2]: row for row in served}
    for completion_id in (lsp_id, accepted["id"], dismissed["id"]):
        row = by_id[completion_id]
        assert row[1] == bu
        assert row[3] == "cove-tiny"
        assert row[4] == "completion"
        assert row[5] == "python"
        assert row[7] == str(world["a"]["dev_user"])
    assert {row[2] for row in served} <= {reply["id"] for _, reply in upstream.exchanges}

    events = sorted((row[0], row[2], row[6].get("kind")) for row in feedback)
    assert events == sorted(
        [
            ("completion.shown", accepted["id"], None),
            ("completion.shown", dismissed["id"], None),
            ("completion.accepted", accepted["id"], "line"),
            ("completion.accepted", accepted["id"], "full"),
            ("completion.rejected", dismissed["id"], None),
        ]
    )
    data = {(row[0], row[6].get("kind")): row[6] for row in feedback}
    assert data["completion.accepted", "line"] == {
        "choice_index": 0,
        "kind": "line",
        "elapsed_ms": 420,
    }
    assert data["completion.accepted", "full"]["elapsed_ms"] == 900
    assert data["completion.rejected", None] == {"choice_index": 0, "elapsed_ms": 1300}
    assert all(row[1] == bu and row[7] == str(world["a"]["dev_user"]) for row in feedback)
