"""Tabby's real IDE agent, `tabby-agent` (npm, pinned in tests/tabby/package.json).

tabby-agent 1.5.0 has two stdio front ends in `dist/cli.js` (the package's `bin`):
- `--lsp --stdio`: a Language Server (`initialize`, `textDocument/didOpen`/`didChange`,
  `textDocument/completion`); see tests/tabby/lsp.py. It posts no usage events.
- no arguments: the JSON-lines protocol the JetBrains and Vim plugins of that generation
  speak: `[id, {"func": name, "args": [...]}]` in, `[id, result]` out (`[0, event]` for
  agent events). It exposes the agent's API, including `postEvent`, which the plugins call with
  Tabby's `view` / `select` / `dismiss` events.

Both read the server endpoint and token from `$HOME/.tabby-client/agent/config.toml`.
On a fresh clone the first use runs `npm ci` here (the lock file is committed).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cove.platform.local.procs import stop_process_group

TABBY_DIR = Path(__file__).resolve().parent
PACKAGE = TABBY_DIR / "node_modules" / "tabby-agent"


def pinned_version() -> str:
    version: str = json.loads((TABBY_DIR / "package.json").read_text())["dependencies"][
        "tabby-agent"
    ]
    return version


def ensure_installed() -> Path:
    """The agent's entry script (its package.json `bin`), installed with `npm ci` if needed."""
    if not (PACKAGE / "package.json").exists():
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            pytest.fail("node and npm are needed to run tabby-agent (tests/tabby)")
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=TABBY_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci in {TABBY_DIR} failed:\n{result.stdout}\n{result.stderr}")
    manifest = json.loads((PACKAGE / "package.json").read_text())
    assert manifest["version"] == pinned_version(), manifest["version"]
    return (PACKAGE / manifest["bin"]["tabby-agent"]).resolve()


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_agent_home(home: Path, endpoint: str, token: str) -> Path:
    """A HOME whose `~/.tabby-client/agent/config.toml` points the agent at `endpoint`.

    Anonymous usage tracking (POSTs to app.tabbyml.com) is off; logs go to
    `~/.tabby-client/agent/logs/` at debug level so a failure shows what the agent did.
    """
    agent_dir = home / ".tabby-client" / "agent"
    agent_dir.mkdir(parents=True, exist_ok=True)
    config = agent_dir / "config.toml"
    config.write_text(
        "[server]\n"
        f"endpoint = {toml_string(endpoint)}\n"
        f"token = {toml_string(token)}\n"
        "\n[logs]\n"
        'level = "debug"\n'
        "\n[anonymousUsageTracking]\n"
        "disable = true\n"
    )
    return config


def agent_env(home: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(home)}


def agent_logs(home: Path, limit: int = 6000) -> str:
    logs = sorted((home / ".tabby-client" / "agent" / "logs").glob("*.log"))
    text = "".join(path.read_text(errors="replace") for path in logs)
    return text[-limit:]


class JsonLinesAgent:
    """tabby-agent's JSON-lines front end, driven as Tabby's JetBrains plugin (1.x) drives it."""

    def __init__(self, script: Path, *, env: dict[str, str], cwd: Path, stderr_log: Path) -> None:
        self.stderr_log = stderr_log
        self._stderr = stderr_log.open("wb")
        self.proc = subprocess.Popen(
            # The JetBrains plugin starts it the same way: node <options> <script>, no arguments.
            ["node", "--dns-result-order=ipv4first", str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self._stdin = self.proc.stdin
        self._cond = threading.Condition()
        self._next_id = 1
        self._results: dict[int, Any] = {}
        self._closed = False
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._read_loop, args=(self.proc.stdout,), daemon=True).start()

    def _read_loop(self, stream: Any) -> None:
        try:
            for raw in stream:
                try:
                    request_id, payload = json.loads(raw)
                except ValueError:
                    continue
                with self._cond:
                    if request_id == 0:
                        self.events.append(payload)
                    else:
                        self._results[request_id] = payload
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def call(self, func: str, *args: Any, timeout: float = 30) -> Any:
        with self._cond:
            request_id = self._next_id
            self._next_id += 1
        line = json.dumps([request_id, {"func": func, "args": list(args)}]) + "\n"
        self._stdin.write(line.encode())
        self._stdin.flush()
        deadline = time.monotonic() + timeout
        with self._cond:
            while request_id not in self._results:
                remaining = deadline - time.monotonic()
                if self._closed:
                    raise RuntimeError(f"{func}: the agent exited")
                if remaining <= 0:
                    raise TimeoutError(f"{func}: no answer in {timeout} s")
                self._cond.wait(remaining)
            return self._results.pop(request_id)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(Exception):
                    self.call("finalize", timeout=10)
                with contextlib.suppress(OSError):
                    self._stdin.close()
                stop_process_group(self.proc.pid, grace=5)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=5)
        finally:
            self._stderr.close()
