"""Request and token rate limits per user and per BU, kept in Redis.

The algorithm is the sliding-window counter of the `limits` library (two counters per key,
weighted), so every gateway replica shares one budget. All of a request's limits are checked
and counted by one Lua script, in one Redis round trip: per limit, one script call through the
library cost a round trip and most of a request's CPU time in the gateway. The script keeps the
library's keys and arithmetic, so the library still answers how long a refused caller must wait.
A request is counted against every limit or none: a refusal by one limit does not use up the
others. The script runs over one pipelined connection (`scriptline.py`): `begin` sends it and
returns at once, so the gateway scans the prompt while Redis counts, and `settle` then reads
the answer. If Redis is unreachable the gateway lets traffic through and says so in its log: a cache
outage must not stop every developer in the company (set `COVE_RATE_LIMIT_FAIL_CLOSED=true` to
refuse instead).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from cove.gateway.policies import Limits
from cove.gateway.scriptline import ScriptLine, ScriptUnavailable
from cove.platform.core.errors import RateLimited, UpstreamUnavailable

log = logging.getLogger(__name__)

_KEY_PREFIX = "cove"

# KEYS: the previous and the current window key of each limit, in pairs.
# ARGV: the limit, the window in seconds and the cost of each limit, in triples.
# Returns 0 when every limit allowed the request (and counted it), else the 1-based index of
# the first limit that refused (nothing counted). Per limit this is the `limits` library's
# acquire_sliding_window.lua, split into a check pass and a count pass.
_ACQUIRE_ALL = """
local n = #KEYS / 2
for i = 1, n do
    local previous_key = KEYS[2 * i - 1]
    local current_key = KEYS[2 * i]
    local limit = tonumber(ARGV[3 * i - 2])
    local expiry = tonumber(ARGV[3 * i - 1]) * 1000
    local amount = tonumber(ARGV[3 * i])
    if amount > limit then
        return i
    end
    local current_ttl = tonumber(redis.call('pttl', current_key))
    if current_ttl > 0 and current_ttl < expiry then
        redis.call('rename', current_key, previous_key)
        redis.call('set', current_key, 0, 'PX', current_ttl + expiry)
    end
    local previous_count = tonumber(redis.call('get', previous_key)) or 0
    local previous_ttl = tonumber(redis.call('pttl', previous_key)) or 0
    local current_count = tonumber(redis.call('get', current_key)) or 0
    if previous_ttl <= 0 then
        previous_ttl = 0
    end
    local weighted = math.floor(previous_count * previous_ttl / expiry) + current_count
    if weighted + amount > limit then
        return i
    end
end
for i = 1, n do
    local current_key = KEYS[2 * i]
    local expiry = tonumber(ARGV[3 * i - 1]) * 1000
    local amount = tonumber(ARGV[3 * i])
    if redis.call('exists', current_key) == 1 then
        redis.call('incrby', current_key, amount)
    else
        redis.call('set', current_key, amount, 'PX', expiry * 2)
    end
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Check:
    item: RateLimitItem
    keys: tuple[str, ...]
    cost: int
    code: str
    message: str


@dataclass(slots=True)
class PendingLimits:
    """A request's limit check, sent to Redis and not yet answered."""

    checks: list[Check]
    keys: list[str]
    args: list[int]
    reply: asyncio.Future[Any] | None = None
    error: Exception | None = None


class RateLimiter:
    def __init__(self, redis_url: str, *, fail_closed: bool = False) -> None:
        scheme = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
        # The library reads the windows of a refused request (Retry-After) and names the keys.
        self._storage = RedisStorage(scheme, implementation="redispy", key_prefix=_KEY_PREFIX)
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self._line = ScriptLine(redis_url, _ACQUIRE_ALL)
        self._fail_closed = fail_closed
        self.failures = 0

    async def close(self) -> None:
        await self._line.close()

    def checks(self, limits: Limits, tenant: str, user: str, tokens: int) -> list[Check]:
        found: list[Check] = []
        if limits.user_requests_per_minute:
            found.append(
                Check(
                    RateLimitItemPerMinute(limits.user_requests_per_minute),
                    ("req", tenant, user),
                    1,
                    "user_rate_limited",
                    f"More than {limits.user_requests_per_minute} requests per minute",
                )
            )
        if limits.bu_requests_per_minute:
            found.append(
                Check(
                    RateLimitItemPerMinute(limits.bu_requests_per_minute),
                    ("req", tenant),
                    1,
                    "bu_rate_limited",
                    f"Your business unit exceeded {limits.bu_requests_per_minute} "
                    "requests per minute",
                )
            )
        if limits.user_tokens_per_minute:
            found.append(
                Check(
                    RateLimitItemPerMinute(limits.user_tokens_per_minute),
                    ("tok", tenant, user),
                    tokens,
                    "user_token_rate_limited",
                    f"More than {limits.user_tokens_per_minute} tokens per minute",
                )
            )
        if limits.bu_tokens_per_day:
            found.append(
                Check(
                    RateLimitItemPerDay(limits.bu_tokens_per_day),
                    ("tokday", tenant),
                    tokens,
                    "bu_token_quota_exhausted",
                    f"Your business unit used its {limits.bu_tokens_per_day} tokens for today",
                )
            )
        return found

    def _window_keys(self, check: Check) -> tuple[str, str]:
        # The library's own key layout, so its window statistics read the same counters.
        key = check.item.key_for(*check.keys)
        previous = self._storage._previous_window_key(key)
        current = self._storage._current_window_key(key)
        return f"{_KEY_PREFIX}:{previous}", f"{_KEY_PREFIX}:{current}"

    async def begin(self, checks: list[Check]) -> PendingLimits:
        """Send the check of every limit to Redis; returns without waiting for the answer."""
        keys: list[str] = []
        args: list[int] = []
        for check in checks:
            keys.extend(self._window_keys(check))
            args.extend((check.item.amount, check.item.get_expiry(), check.cost))
        pending = PendingLimits(checks, keys, args)
        if checks:
            try:
                pending.reply = await self._line.send(keys, args)
            except ScriptUnavailable as exc:
                pending.error = exc
        return pending

    async def settle(self, pending: PendingLimits) -> None:
        """Wait for the answer of `begin`; raises `RateLimited` when a limit refused."""
        if not pending.checks:
            return
        refused = 0
        try:
            if pending.error is not None:
                raise pending.error
            assert pending.reply is not None
            refused = int(await self._line.result(pending.reply, pending.keys, pending.args))
        except ScriptUnavailable as exc:
            self.failures += 1
            if self._fail_closed:
                raise UpstreamUnavailable(
                    "Rate limits cannot be checked", code="rate_limiter_unavailable"
                ) from exc
            log.warning("rate limiter unavailable; letting the request through: %s", exc)
            return
        if not refused:
            return
        check = pending.checks[refused - 1]
        stats = await self._limiter.get_window_stats(check.item, *check.keys)
        retry = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(
            check.message,
            code=check.code,
            headers={"Retry-After": str(retry)},
            details={"retry_after": retry},
        )


def estimated_tokens(prompt_chars: int, max_tokens: int | None) -> int:
    # Roughly four characters per token for code; the generation budget counts in full.
    return prompt_chars // 4 + (max_tokens or 16)
