"""A circuit breaker per model instance: after repeated connection failures the gateway stops
sending to the instance for a cool-down and uses the deployment's fallback instead."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(slots=True)
class _State:
    failures: int = 0
    open_until: float = 0.0


class CircuitBreakers:
    def __init__(self, *, threshold: int = 3, cooldown: float = 10.0) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._states: dict[str, _State] = {}

    def is_open(self, endpoint: str) -> bool:
        state = self._states.get(endpoint)
        # After the cool-down one request is let through (half-open); its outcome decides.
        return state is not None and state.open_until > time.monotonic()

    def failure(self, endpoint: str) -> None:
        state = self._states.setdefault(endpoint, _State())
        state.failures += 1
        if state.failures >= self._threshold:
            state.open_until = time.monotonic() + self._cooldown

    def success(self, endpoint: str) -> None:
        if endpoint in self._states:
            del self._states[endpoint]
