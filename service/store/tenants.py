"""Tenants in Postgres, and the API's read-through cache of them.

The cache is invalidated by NOTIFY on every change (rotate, enable, disable), so a rotated token stops
working at once (within milliseconds, in every API process), while a normal request costs no extra round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import asyncpg

from service import logs
from service.domain.tenants import Tenant
from service.store import tokens
from service.store.tokens import CHANNEL

log = logs.get(__name__)
_TTL_SECONDS = 30.0  # a safety net only: NOTIFY is what makes changes visible immediately


def _tenant(row: Any, live_tokens: tuple[Any, ...] = ()) -> Tenant:
    return Tenant(
        id=str(row["id"]),
        name=row["name"],
        enabled=row["enabled"],
        tokens=live_tokens,
        rate_limit_per_second=row["rate_limit_per_second"],
        rate_limit_burst=row["rate_limit_burst"],
    )


async def create(conn: Any, name: str) -> tuple[Tenant, str]:
    async with conn.transaction():
        row = await conn.fetchrow("INSERT INTO tenants (id, name) VALUES ($1, $2) RETURNING *", uuid.uuid4(), name)
        token, _ = await tokens.insert(conn, row["id"])
    return _tenant(row), token


def _key(tenant_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(tenant_id)
    except ValueError:
        return None


async def get(conn: Any, tenant_id: str) -> Tenant | None:
    key = _key(tenant_id)
    if key is None:
        return None
    row = await conn.fetchrow("SELECT * FROM tenants WHERE id = $1", key)
    return _tenant(row, await tokens.live(conn, key)) if row else None


async def find_by_name(conn: Any, name: str) -> Tenant | None:
    row = await conn.fetchrow("SELECT * FROM tenants WHERE name = $1 ORDER BY created_at LIMIT 1", name)
    return _tenant(row, await tokens.live(conn, row["id"])) if row else None


async def list_all(conn: Any) -> list[Tenant]:
    return [_tenant(r) for r in await conn.fetch("SELECT * FROM tenants ORDER BY created_at")]


async def rotate_token(conn: Any, tenant_id: str, grace_seconds: int = 0) -> str | None:
    """A new token; the previous ones stop at once, or after `grace_seconds` (zero-downtime rotation)."""
    if _key(tenant_id) is None:
        return None
    return await tokens.rotate(conn, tenant_id, grace_seconds)


async def set_enabled(conn: Any, tenant_id: str, enabled: bool) -> bool:
    key = _key(tenant_id)
    if key is None:
        return False
    async with conn.transaction():
        done = await conn.execute("UPDATE tenants SET enabled = $2 WHERE id = $1", key, enabled)
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(key))
    return bool(done == "UPDATE 1")


async def set_rate_limit(conn: Any, tenant_id: str, per_second: float | None, burst: int | None) -> bool:
    """A tenant's own rate limit (None: back to the default); API processes pick it up at once (NOTIFY)."""
    key = _key(tenant_id)
    if key is None:
        return False
    async with conn.transaction():
        done = await conn.execute(
            "UPDATE tenants SET rate_limit_per_second = $2, rate_limit_burst = $3 WHERE id = $1", key, per_second, burst
        )
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, tenant_id)
    return bool(done == "UPDATE 1")


class TenantDirectory:
    """Tenants by id for the API, cached, dropped from the cache when Postgres says they changed.

    The cache is keyed by the canonical id: `uuid.UUID` also reads upper case, no hyphens, braces and `urn:uuid:`,
    and every spelling must see a rotation at once. Only tenants that exist are cached: ids in the URL are
    attacker-chosen, and caching misses would let random ids crowd out (or flush) the real tenants.

    The cache is trusted only while the LISTEN connection is up. When it drops (Postgres restarted, the network
    cut it) every lookup reads through until it listens again, and then the cache is emptied: a change made
    while nobody listened must not live on for the TTL.
    """

    def __init__(self, pool: asyncpg.Pool, capacity: int = 10_000, check_interval: float = 5.0) -> None:
        self._pool = pool
        self._capacity = capacity
        self._check_interval = check_interval
        self._cache: dict[str, tuple[float, Tenant]] = {}
        self._listening = False
        self._generation = 0  # bumped by every change heard and every loss of LISTEN
        self._task: asyncio.Task[None] | None = None

    @property
    def size(self) -> int:
        return len(self._cache)

    @property
    def listening(self) -> bool:
        return self._listening

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen_forever(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of the listening connection: listen again, soon
                log.warning("tenants.listen_lost", error=type(exc).__name__, retry_in=backoff)
            self._stop_trusting()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _listen(self) -> None:
        """Hold one connection with LISTEN until it fails; a health check finds a half-open one."""
        conn = await self._pool.acquire()
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(CHANNEL, self._changed)
            self._stop_trusting()  # whatever changed before LISTEN took effect
            self._listening = True
            log.info("tenants.listening")
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self._check_interval)
                if not lost.is_set():
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), self._check_interval)
            raise ConnectionError("the LISTEN connection closed")
        finally:
            self._listening = False
            conn.terminate()  # possibly half-open, and still listening: never hand it back to the pool as it is
            await self._pool.release(conn)

    def _stop_trusting(self) -> None:
        self._listening = False
        self._generation += 1
        self._cache.clear()

    def _changed(self, _conn: Any, _pid: int, _channel: str, tenant_id: str) -> None:
        self._generation += 1  # a lookup in flight may have read the old row: it must not cache it
        key = _key(tenant_id)
        if key is not None:
            self._cache.pop(str(key), None)

    async def get(self, tenant_id: str) -> Tenant | None:
        key = _key(tenant_id)
        if key is None:
            return None
        canonical, now, generation = str(key), time.monotonic(), self._generation
        hit = self._cache.get(canonical)
        if hit is not None and self._listening and now - hit[0] < _TTL_SECONDS:
            return hit[1]
        async with self._pool.acquire() as conn:
            tenant = await get(conn, canonical)
        if tenant is None:
            self._cache.pop(canonical, None)
            return None
        if self._listening and generation == self._generation:
            self._cache.pop(canonical, None)  # re-inserted last: the oldest entry is evicted first
            if len(self._cache) >= self._capacity:
                del self._cache[next(iter(self._cache))]
            self._cache[canonical] = (now, tenant)
        return tenant
