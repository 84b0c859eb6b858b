"""Dropping a streamed suggestion that contains a credential, before any of it reaches the IDE.

A credential is only recognisable once it is complete, and a stream hands it over a few
characters at a time. So each choice's text is released up to its last whitespace only: the
trailing run of non-whitespace characters (where every token-shaped credential sits while it
grows), and everything from an unterminated `-----BEGIN ` (a private key block spans lines), is
held back until more text, the choice's `finish_reason` or the end of the stream arrives.
Before anything is released, the held text and the last `_CONTEXT` characters already
delivered (the `password = ` before a value) are scanned. When a credential shows up, that
choice ends there: the event carries an empty text and `finish_reason: "content_filter"`
(OpenAI's value for filtered output), later events of that choice are left out, and the drop is
reported (rule and type, never the text) for the audit log. An event whose text is held back
or dropped loses its `logprobs` (they name its tokens).

The first event always passes at once (with whatever text is releasable), so the time to the
first byte does not change; a word is delayed until the whitespace after it. A credential that
contains whitespace (a quoted password with spaces) can be partly released before it is
recognised; every rule the scanner knows for tokens, keys and URLs has none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from cove.gateway.policy.secrets import SecretMatch, contains_secret, scan_secrets

# How much already-delivered text is scanned again with the held text: enough for the
# assignment or header that names a secret before its value, and for an AWS access key id
# (its secret is looked for up to 200 characters after it).
_CONTEXT: Final = 256
# A run without whitespace longer than this is released (after the scan) rather than held.
_MAX_HOLD: Final = 16_384
_PEM_OPEN: Final = "-----BEGIN "
_WHITESPACE: Final = " \n\t\r\f\v"
# No detector accepts a value shorter than this (passwords need 6 characters): text whose
# whitespace-free runs are all shorter cannot complete a credential and is released unscanned.
_MIN_SECRET_RUN: Final = 6
FILTERED: Final = "content_filter"


@dataclass(slots=True)
class _Choice:
    delivered: str = ""
    held: str = ""
    dropped: bool = False
    finished: bool = False


def _release_point(held: str) -> int:
    """How much of `held` may go out, if the scan finds nothing."""
    if len(held) > _MAX_HOLD:
        return len(held)
    cut = max(held.rfind(ch) for ch in _WHITESPACE) + 1
    pem = held.rfind(_PEM_OPEN)
    if pem != -1 and "-----END " not in held[pem:]:
        cut = min(cut, pem)
    return cut


@dataclass(slots=True)
class SuggestionGuard:
    """Rewrites an OpenAI-style event stream (completions or chat) as it passes."""

    on_drop: Callable[[int, list[SecretMatch]], None]
    _choices: dict[int, _Choice] = field(default_factory=dict)
    _pending: bytes = b""
    _envelope: dict[str, Any] | None = None
    _chat: bool = False

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send for this upstream chunk (possibly none yet)."""
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        out: list[bytes] = []
        for line in lines:
            out.append(self._line(line))
            out.append(b"\n")
        return b"".join(out)

    def finish(self) -> bytes:
        """What is still held when the upstream body ended without `[DONE]`."""
        out = self._flush_all()
        if self._pending:
            out += self._line(self._pending)
            self._pending = b""
        return out

    def _line(self, line: bytes) -> bytes:
        if not line.startswith(b"data: "):
            return line
        payload = line[6:].strip()
        if payload == b"[DONE]":
            return self._flush_all() + line
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return line
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            return line
        if not body["choices"] and "usage" in body:
            # The usage-only event comes last: whatever is still held goes out before it.
            return self._flush_all() + line
        self._envelope = {k: body[k] for k in ("id", "object", "created", "model") if k in body}
        kept = []
        for choice in body["choices"]:
            if not isinstance(choice, dict) or self._filter(choice):
                kept.append(choice)
        if not kept and not body.get("usage"):
            return b""
        body["choices"] = kept
        return b"data: " + orjson.dumps(body)

    def _filter(self, choice: dict[str, Any]) -> bool:
        """Rewrite one choice's text in place; False when the choice must be left out."""
        index = choice.get("index", 0)
        if not isinstance(index, int):
            return True
        state = self._choices.setdefault(index, _Choice())
        if state.dropped:
            return False
        delta = choice.get("delta")
        if isinstance(delta, dict):
            self._chat = True
            text = delta.get("content")
        else:
            text = choice.get("text")
        if not isinstance(text, str):
            return True
        state.held += text
        final = choice.get("finish_reason") is not None
        cut = len(state.held) if final else _release_point(state.held)
        released = self._release(index, state, cut)
        if released != text and choice.get("logprobs") is not None:
            # Log probabilities name the event's tokens: they would give away what is held.
            choice["logprobs"] = None
        if released is None:
            self._set_text(choice, "")
            choice["finish_reason"] = FILTERED
            return True
        self._set_text(choice, released)
        state.finished = final
        return True

    def _release(self, index: int, state: _Choice, cut: int) -> str | None:
        """Release `held[:cut]` after scanning; None when the choice was dropped."""
        if cut == 0 and "\n" not in state.held:
            # A word still growing; a held key block is judged line by line.
            return ""
        if _PEM_OPEN in state.held or any(
            len(run) >= _MIN_SECRET_RUN for run in state.held[:cut].split()
        ):
            window = state.delivered[-_CONTEXT:] + state.held
            if contains_secret(window):
                self._drop(index, state, window)
                return None
        released, state.held = state.held[:cut], state.held[cut:]
        state.delivered = (state.delivered + released)[-_CONTEXT:]
        return released

    def _drop(self, index: int, state: _Choice, window: str) -> None:
        state.dropped = True
        state.held = ""
        self.on_drop(index, scan_secrets(window))

    def _set_text(self, choice: dict[str, Any], text: str) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            delta["content"] = text
        else:
            choice["text"] = text

    def _flush_all(self) -> bytes:
        out = b""
        for index, state in self._choices.items():
            if state.dropped or state.finished or not state.held:
                continue
            released = self._release(index, state, len(state.held))
            state.finished = True
            choice: dict[str, Any] = {"index": index, "finish_reason": None}
            if released is None:
                choice["finish_reason"] = FILTERED
                released = ""
            if self._chat:
                choice["delta"] = {"content": released}
            else:
                choice["text"] = released
            body = {**(self._envelope or {}), "choices": [choice]}
            out += b"data: " + orjson.dumps(body) + b"\n\n"
        return out
