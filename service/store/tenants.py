"""Tenants in Postgres, and the API's read-through cache of them.

The cache is invalidated by NOTIFY on every change (rotate, enable, disable), so a rotated token stops
working at once, while a normal request costs no extra round trip.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg

from service.domain.tenants import Tenant
from service.store import tokens
from service.store.tokens import CHANNEL

_TTL_SECONDS = 30.0  # a safety net only: NOTIFY is what makes changes visible immediately


def _tenant(row: Any, live_tokens: tuple[Any, ...] = ()) -> Tenant:
    return Tenant(id=str(row["id"]), name=row["name"], enabled=row["enabled"], tokens=live_tokens)


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
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, tenant_id)
    return bool(done == "UPDATE 1")


class TenantDirectory:
    """Tenants by id for the API, cached, dropped from the cache when Postgres says they changed."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._cache: dict[str, tuple[float, Tenant | None]] = {}
        self._listener: asyncpg.Connection | None = None

    async def start(self) -> None:
        self._listener = await self._pool.acquire()
        await self._listener.add_listener(CHANNEL, self._changed)

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.remove_listener(CHANNEL, self._changed)
            await self._pool.release(self._listener)
            self._listener = None

    def _changed(self, _conn: Any, _pid: int, _channel: str, tenant_id: str) -> None:
        self._cache.pop(tenant_id, None)

    async def get(self, tenant_id: str) -> Tenant | None:
        now = time.monotonic()
        hit = self._cache.get(tenant_id)
        if hit is not None and now - hit[0] < _TTL_SECONDS:
            return hit[1]
        async with self._pool.acquire() as conn:
            tenant = await get(conn, tenant_id)
        self._cache[tenant_id] = (now, tenant)
        if len(self._cache) > 10_000:  # bounded: ids from the URL are attacker-chosen
            self._cache.clear()
        return tenant
