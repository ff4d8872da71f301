"""Per-tenant token buckets: one identity provider's burst must not starve the other tenants.

A bucket holds up to `burst` tokens and gains `rate` per second; a request takes one or is refused with the
time until the next token (the `Retry-After`). Buckets live in the process: with N API replicas behind a load
balancer a tenant gets about N times the limit (README "Rate limits"). Pure: the caller passes the clock.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    rate: float  # tokens per second; 0: unlimited
    burst: int


@dataclass
class _Bucket:
    limit: Limit
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, default: Limit, max_buckets: int = 100_000) -> None:
        self.default = default
        self._buckets: dict[str, _Bucket] = {}
        self._max_buckets = max_buckets

    def limit_for(self, rate: float | None, burst: int | None) -> Limit:
        """A tenant's own limit where it has one, else the default (per field)."""
        return Limit(self.default.rate if rate is None else rate, self.default.burst if burst is None else burst)

    def take(self, key: str, limit: Limit, now: float) -> float:
        """0.0 when the request may go ahead, else the seconds until it could."""
        if limit.rate <= 0:
            return 0.0
        bucket = self._buckets.get(key)
        if bucket is None or bucket.limit != limit:  # new tenant, or its limit changed: start full
            if len(self._buckets) >= self._max_buckets:  # tenants are authenticated, so this is a safety net
                self._buckets.clear()
            bucket = self._buckets[key] = _Bucket(limit, float(limit.burst), now)
        bucket.tokens = min(float(limit.burst), bucket.tokens + (now - bucket.updated) * limit.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / limit.rate
