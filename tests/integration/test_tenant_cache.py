"""The API's tenant cache: a rotated token or a disabled tenant stops working at once, through every spelling of
the tenant id, after the API lost its LISTEN connection too; unknown tenant ids neither flush nor bloat it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from service.store import tenants
from service.store.pool import create_pool

from .api_process import api_process
from .conftest import Stack
from .pgproxy import PgProxy

NOTIFY_DEADLINE = 2.0


async def _eventually(check: Callable[[], Awaitable[bool]], deadline: float = NOTIFY_DEADLINE) -> float:
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < deadline, "condition not reached in time"
    return time.monotonic() - started


def _spellings(tenant_id: str) -> list[str]:
    key = uuid.UUID(tenant_id)
    return [str(key), str(key).upper(), key.hex, key.hex.upper(), "{" + str(key) + "}", f"urn:uuid:{key}"]


async def test_a_rotated_token_stops_working_at_once_through_every_spelling_of_the_tenant_id(
    api_url: str, db: Any
) -> None:
    tenant, old_token = await tenants.create(db, "spellings")
    old = {"Authorization": f"Bearer {old_token}"}
    async with httpx.AsyncClient(base_url=f"{api_url}/scim/v2") as client:
        for spelling in _spellings(tenant.id):  # every spelling is served, and cached
            assert (await client.get(f"/{spelling}/Users", headers=old)).status_code == 200, spelling
        new_token = await tenants.rotate_token(db, tenant.id.upper())

        async def canonical_refused() -> bool:
            return (await client.get(f"/{tenant.id}/Users", headers=old)).status_code == 401

        await _eventually(canonical_refused)
        for spelling in _spellings(tenant.id):  # no other spelling keeps the old token alive
            assert (await client.get(f"/{spelling}/Users", headers=old)).status_code == 401, spelling
            new = {"Authorization": f"Bearer {new_token}"}
            assert (await client.get(f"/{spelling}/Users", headers=new)).status_code == 200, spelling

        await tenants.set_enabled(db, tenant.id.replace("-", ""), False)
        new = {"Authorization": f"Bearer {new_token}"}

        async def disabled() -> bool:
            return (await client.get(f"/{tenant.id}/Users", headers=new)).status_code == 403

        await _eventually(disabled)
        for spelling in _spellings(tenant.id):
            assert (await client.get(f"/{spelling}/Users", headers=new)).status_code == 403, spelling


async def test_unknown_tenant_ids_neither_flush_nor_bloat_the_cache(database_url: str, db: Any) -> None:
    from service.store.tenants import TenantDirectory

    tenant, _ = await tenants.create(db, "cached")
    pool = await create_pool(database_url, 1, 2)
    directory = TenantDirectory(pool, capacity=50)
    await directory.start()
    try:

        async def listening() -> bool:
            await asyncio.sleep(0.01)  # yield to the listening task
            return directory.listening

        await _eventually(listening)
        assert (cached := await directory.get(tenant.id)) is not None and cached.enabled
        # Changed behind the cache's back (no NOTIFY): only a cache miss would see it.
        await db.execute("UPDATE tenants SET enabled = false WHERE id = $1", uuid.UUID(tenant.id))
        for _ in range(200):
            assert await directory.get(str(uuid.uuid4())) is None
        for garbage in ("not-a-uuid", "", "%00", "x" * 10_000):
            assert await directory.get(garbage) is None
        assert directory.size <= 50
        still = await directory.get(tenant.id.upper())
        assert still is not None and still.enabled, "the cache was flushed by unknown ids"
    finally:
        await directory.stop()
        await pool.close()


async def test_after_losing_its_listen_connection_the_api_listens_again_and_forgets_what_it_cached(
    database_url: str, stack: Stack, db: Any
) -> None:
    parts = urlsplit(database_url)
    proxy = PgProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    through_proxy = urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"))
    tenant, token = await tenants.create(db, "relisten")
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with (
            api_process(through_proxy, stack.kafka) as (url, log),
            httpx.AsyncClient(base_url=f"{url}/scim/v2/{tenant.id}", headers=headers) as scim,
        ):
            assert (await scim.get("/Users")).status_code == 200  # cached now
            await proxy.cut("refuse")  # every connection of the API drops, the LISTEN one too
            await proxy.restore()

            async def serving() -> bool:
                return (await scim.get("/Users")).status_code == 200

            await _eventually(serving, 10)
            await tenants.rotate_token(db, tenant.id)

            async def refused() -> bool:
                return (await scim.get("/Users")).status_code == 401

            # NOTIFY reaches the API again (or the cache was not trusted while it could not listen):
            # well within the 30 s a stale cache entry would live.
            assert await _eventually(refused, 5) < 5
            assert b"tenants.listening" in log.read_bytes()
    finally:
        await proxy.stop()
