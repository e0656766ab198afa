"""Rate limiting as token buckets behind a small interface.

A rule allows `burst` actions at once and refills the whole bucket over
`period_s` seconds (so "5 per 15 minutes" is burst 5, period 900). The
in-process limiter serves the single-process default; a Redis-backed one can
replace it for several workers without the callers knowing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from homeserver.config import RateLimitRule


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter(Protocol):
    async def peek(self, key: str, rule: RateLimitRule) -> int:
        """0 if an action is allowed now, else milliseconds until it is. Consumes nothing."""

    async def take(self, key: str, rule: RateLimitRule, cost: float = 1.0) -> int:
        """Consume `cost` if allowed and return 0; otherwise consume nothing and return the wait in ms."""

    async def record(self, key: str, rule: RateLimitRule, cost: float = 1.0) -> None:
        """Consume `cost` even if that empties the bucket (used to count failures)."""


class LocalRateLimiter:
    """Token buckets in a dict; old, full buckets are dropped now and then."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._clock = clock
        self._ops = 0

    def _refilled(self, key: str, rule: RateLimitRule) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=float(rule.burst), updated=now)
            self._buckets[key] = bucket
        else:
            rate = rule.burst / rule.period_s
            bucket.tokens = min(float(rule.burst), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        self._ops += 1
        if self._ops % 10_000 == 0:
            self._sweep(now)
        return bucket

    def _sweep(self, now: float) -> None:
        # A bucket untouched for a day is full for every rule we use; forget it.
        stale = [k for k, b in self._buckets.items() if now - b.updated > 86400]
        for k in stale:
            del self._buckets[k]

    @staticmethod
    def _wait_ms(bucket: _Bucket, rule: RateLimitRule, cost: float) -> int:
        missing = cost - bucket.tokens
        if missing <= 0:
            return 0
        rate = rule.burst / rule.period_s
        return max(1, math.ceil(missing / rate * 1000))

    async def peek(self, key: str, rule: RateLimitRule) -> int:
        return self._wait_ms(self._refilled(key, rule), rule, 1.0)

    async def take(self, key: str, rule: RateLimitRule, cost: float = 1.0) -> int:
        bucket = self._refilled(key, rule)
        wait = self._wait_ms(bucket, rule, cost)
        if wait == 0:
            bucket.tokens -= cost
        return wait

    async def record(self, key: str, rule: RateLimitRule, cost: float = 1.0) -> None:
        bucket = self._refilled(key, rule)
        bucket.tokens = max(bucket.tokens - cost, 0.0)


class NoRateLimiter:
    """Used when rate_limits.enabled is false."""

    async def peek(self, key: str, rule: RateLimitRule) -> int:
        return 0

    async def take(self, key: str, rule: RateLimitRule, cost: float = 1.0) -> int:
        return 0

    async def record(self, key: str, rule: RateLimitRule, cost: float = 1.0) -> None:
        return None
