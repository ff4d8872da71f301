"""The per-tenant token bucket: bursts up to `burst`, then `rate` per second, Retry-After = time to a token."""

from __future__ import annotations

import pytest

from service.domain.ratelimit import Limit, RateLimiter


def test_a_burst_passes_then_requests_wait_for_the_refill() -> None:
    limiter = RateLimiter(Limit(rate=10, burst=5))
    limit = limiter.limit_for(None, None)
    assert [limiter.take("a", limit, now=0.0) for _ in range(5)] == [0.0] * 5
    assert limiter.take("a", limit, now=0.0) == pytest.approx(0.1)  # one token every 0.1 s
    assert limiter.take("a", limit, now=0.1) == 0.0
    assert limiter.take("a", limit, now=0.1) > 0


def test_tenants_have_their_own_buckets() -> None:
    limiter = RateLimiter(Limit(rate=1, burst=1))
    limit = limiter.limit_for(None, None)
    assert limiter.take("a", limit, 0.0) == 0.0
    assert limiter.take("a", limit, 0.0) > 0
    assert limiter.take("b", limit, 0.0) == 0.0


def test_a_tenant_override_replaces_the_default_field_by_field_and_zero_means_unlimited() -> None:
    limiter = RateLimiter(Limit(rate=100, burst=500))
    assert limiter.limit_for(5, None) == Limit(5, 500)
    assert limiter.limit_for(None, 20) == Limit(100, 20)
    unlimited = limiter.limit_for(0, None)
    assert all(limiter.take("a", unlimited, 0.0) == 0.0 for _ in range(10_000))


def test_a_changed_limit_takes_effect_at_once() -> None:
    limiter = RateLimiter(Limit(rate=1, burst=1))
    assert limiter.take("a", Limit(1, 1), 0.0) == 0.0
    assert limiter.take("a", Limit(1, 1), 0.0) > 0
    assert limiter.take("a", Limit(1, 3), 0.0) == 0.0  # raised: a fresh, full bucket


def test_the_bucket_never_holds_more_than_the_burst() -> None:
    limiter = RateLimiter(Limit(rate=1000, burst=3))
    limit = limiter.limit_for(None, None)
    limiter.take("a", limit, 0.0)
    passed = sum(limiter.take("a", limit, 3600.0) == 0.0 for _ in range(10))
    assert passed == 3
