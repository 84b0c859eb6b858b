"""Request and token rate limits per user and per BU, kept in Redis.

The algorithm is the sliding-window counter of the `limits` library (two counters per key,
weighted), so every gateway replica shares one budget. All of a request's limits are checked
concurrently to keep them to one Redis round trip of latency. If Redis is unreachable the
gateway lets traffic through and says so in its log: a cache outage must not stop every
developer in the company (set `COVE_RATE_LIMIT_FAIL_CLOSED=true` to refuse instead).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from cove.gateway.policies import Limits
from cove.platform.core.errors import RateLimited, UpstreamUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Check:
    item: RateLimitItem
    keys: tuple[str, ...]
    cost: int
    code: str
    message: str


class RateLimiter:
    def __init__(self, redis_url: str, *, fail_closed: bool = False) -> None:
        scheme = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
        self._storage = RedisStorage(scheme, implementation="redispy", key_prefix="cove")
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self._fail_closed = fail_closed
        self.failures = 0

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

    async def enforce(self, checks: list[Check]) -> None:
        if not checks:
            return
        try:
            results = await asyncio.gather(
                *(self._limiter.hit(c.item, *c.keys, cost=c.cost) for c in checks)
            )
        except Exception as exc:  # the storage raises its driver's errors
            self.failures += 1
            if self._fail_closed:
                raise UpstreamUnavailable(
                    "Rate limits cannot be checked", code="rate_limiter_unavailable"
                ) from exc
            log.warning("rate limiter unavailable; letting the request through")
            return
        for check, allowed in zip(checks, results, strict=True):
            if not allowed:
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
