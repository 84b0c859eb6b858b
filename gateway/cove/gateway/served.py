"""What a completion offered, read off the upstream response for the `completion.served`
event: its id, the text (for lines and chars offered) and timings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(slots=True)
class Offer:
    completion_id: str | None = None
    texts: dict[int, list[str]] = field(default_factory=dict)
    first_byte_at: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cancelled: bool = False

    def add_choice(self, choice: dict[str, Any]) -> None:
        index = choice.get("index", 0)
        text = choice.get("text")
        if text is None:
            delta = choice.get("delta") or choice.get("message") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(text, str) and isinstance(index, int):
            self.texts.setdefault(index, []).append(text)

    def add_body(self, body: dict[str, Any]) -> None:
        if self.completion_id is None and isinstance(body.get("id"), str):
            self.completion_id = body["id"]
        for choice in body.get("choices") or ():
            if isinstance(choice, dict):
                self.add_choice(choice)
        usage = body.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = usage.get("prompt_tokens", self.prompt_tokens)
            self.completion_tokens = usage.get("completion_tokens", self.completion_tokens)

    def text(self, index: int = 0) -> str:
        return "".join(self.texts.get(index, ()))

    def lines_and_chars(self) -> tuple[int, int]:
        lines = chars = 0
        for parts in self.texts.values():
            text = "".join(parts)
            chars += len(text)
            lines += text.count("\n") + 1 if text.strip() else 0
        return lines, chars


class SseTap:
    """Reads an OpenAI-style event stream as it passes, without holding it back."""

    def __init__(self, started: float, on_done: Callable[[Offer], None]) -> None:
        self.offer = Offer()
        self._started = started
        self._pending = b""
        self._on_done = on_done
        self._done = False
        # The client may hang up as soon as it reads `[DONE]`, before the upstream body ends:
        # a stream that reached `[DONE]` was delivered whole, not cancelled.
        self._saw_done = False

    def feed(self, chunk: bytes) -> None:
        if self.offer.first_byte_at is None:
            self.offer.first_byte_at = time.perf_counter()
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            if line.startswith(b"data: [DONE]"):
                self._saw_done = True
                continue
            if not line.startswith(b"data: "):
                continue
            try:
                body = orjson.loads(line[6:])
            except orjson.JSONDecodeError:
                continue
            if isinstance(body, dict):
                self.offer.add_body(body)

    def finish(self, *, cancelled: bool) -> None:
        if self._done:
            return
        self._done = True
        self.offer.cancelled = cancelled and not self._saw_done
        self._on_done(self.offer)


def offer_from_body(raw: bytes) -> Offer:
    offer = Offer()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return offer
    if isinstance(body, dict):
        offer.add_body(body)
    return offer
