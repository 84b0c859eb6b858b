"""A small Language Server Protocol client: JSON-RPC 2.0 with Content-Length framing over a
subprocess's stdin/stdout, the way an IDE talks to a language server such as tabby-agent.

Requests the server sends to the client (`workspace/configuration`,
`client/registerCapability`, ...) are answered like a plain IDE would; unknown ones get
MethodNotFound. Notifications are kept so a test can look at them (e.g. `window/showMessage`).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from cove.platform.local.procs import stop_process_group

METHOD_NOT_FOUND = -32601

Handler = Callable[[Any], Any]


class LspError(Exception):
    """A JSON-RPC error response."""

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        self.code = error.get("code")
        self.data = error.get("data")
        super().__init__(f"{method}: {error.get('message')} (code {self.code})")


class LspClient:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Path,
        stderr_log: Path,
        workspace_folders: list[dict[str, str]] | None = None,
    ) -> None:
        self.stderr_log = stderr_log
        self._stderr = stderr_log.open("wb")
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self._stdin: BinaryIO = self.proc.stdin
        self._write_lock = threading.Lock()
        self._cond = threading.Condition()
        self._next_id = 1
        self._responses: dict[int, dict[str, Any]] = {}
        self._closed = False
        self.notifications: list[dict[str, Any]] = []
        self.server_requests: list[dict[str, Any]] = []
        folders = workspace_folders or []
        self.handlers: dict[str, Handler] = {
            "workspace/configuration": lambda params: [None for _ in params.get("items", [])],
            "workspace/workspaceFolders": lambda _params: folders,
            "client/registerCapability": lambda _params: None,
            "client/unregisterCapability": lambda _params: None,
            "window/workDoneProgress/create": lambda _params: None,
            "window/showMessageRequest": lambda _params: None,
        }
        self._reader = threading.Thread(
            target=self._read_loop, args=(self.proc.stdout,), daemon=True
        )
        self._reader.start()

    # ---- wire ----------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}, ensure_ascii=False).encode()
        frame = f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        with self._write_lock:
            self._stdin.write(frame)
            self._stdin.flush()

    def _read_loop(self, stream: BinaryIO) -> None:
        try:
            while True:
                length = None
                while True:
                    line = stream.readline()
                    if not line:
                        return
                    line = line.strip()
                    if not line:
                        break
                    name, _, value = line.decode("ascii").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length is None:
                    continue
                body = stream.read(length)
                if len(body) < length:
                    return
                self._dispatch(json.loads(body))
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def _dispatch(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method is None:  # a response to one of our requests
            with self._cond:
                self._responses[message["id"]] = message
                self._cond.notify_all()
            return
        if "id" in message:  # a request from the server
            with self._cond:
                self.server_requests.append(message)
            handler = self.handlers.get(method)
            if handler is None:
                self._send(
                    {
                        "id": message["id"],
                        "error": {"code": METHOD_NOT_FOUND, "message": f"Unhandled: {method}"},
                    }
                )
            else:
                self._send({"id": message["id"], "result": handler(message.get("params"))})
            return
        with self._cond:
            self.notifications.append(message)
            self._cond.notify_all()

    # ---- API -----------------------------------------------------------------------------

    def request(self, method: str, params: Any = None, *, timeout: float = 30) -> Any:
        with self._cond:
            request_id = self._next_id
            self._next_id += 1
        message: dict[str, Any] = {"id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self._send(message)
        deadline = time.monotonic() + timeout
        with self._cond:
            while request_id not in self._responses:
                remaining = deadline - time.monotonic()
                if self._closed:
                    raise RuntimeError(f"{method}: the server exited\n{self.stderr_tail()}")
                if remaining <= 0:
                    raise TimeoutError(f"{method}: no answer in {timeout} s\n{self.stderr_tail()}")
                self._cond.wait(remaining)
            response = self._responses.pop(request_id)
        if "error" in response:
            raise LspError(method, response["error"])
        return response.get("result")

    def notify(self, method: str, params: Any = None) -> None:
        message: dict[str, Any] = {"method": method}
        if params is not None:
            message["params"] = params
        self._send(message)

    def notifications_of(self, method: str) -> list[dict[str, Any]]:
        with self._cond:
            return [n.get("params") for n in self.notifications if n["method"] == method]

    def stderr_tail(self, limit: int = 4000) -> str:
        self._stderr.flush()
        try:
            return self.stderr_log.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def close(self, timeout: float = 10) -> int | None:
        """`shutdown` then `exit`, as an IDE does; kills the server if it does not leave."""
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(Exception):
                    self.request("shutdown", timeout=timeout)
                with contextlib.suppress(Exception):
                    self.notify("exit")
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    stop_process_group(self.proc.pid, grace=2)
                    self.proc.wait(timeout=timeout)
        finally:
            with contextlib.suppress(OSError):
                self._stdin.close()
            self._stderr.close()
        return self.proc.returncode
