"""Postgres away under a running API: every SCIM call is a 503 with Retry-After (never a 500, never a 401),
/readyz says not ready, and the API serves again on its own once Postgres is back.

The API under test is a process of its own, connected through a TCP proxy (pgproxy.py) that the test cuts and
restores: the shared Postgres never stops.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from service.store import tenants

from .api_process import api_process
from .conftest import Stack
from .pgproxy import PgProxy
from .test_scim_protocol import PATCH_OP, assert_scim_error

RECOVERY_SECONDS = 10.0
BULK = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
    "Operations": [{"method": "POST", "path": "/Users", "bulkId": "b", "data": {"userName": "bulk@example.com"}}],
}


@dataclass
class ProxiedApi:
    url: str
    proxy: PgProxy
    log: Any


@pytest.fixture
async def proxied_api(database_url: str, stack: Stack) -> AsyncIterator[ProxiedApi]:
    parts = urlsplit(database_url)
    proxy = PgProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    through_proxy = urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"))
    try:
        async with api_process(through_proxy, stack.kafka) as (url, log):
            yield ProxiedApi(url, proxy, log)
    finally:
        await proxy.stop()


def assert_unavailable(response: httpx.Response) -> None:
    assert_scim_error(response, 503)
    assert int(response.headers["retry-after"]) > 0
    assert response.headers.get("x-request-id")


async def _poll_until_ok(client: httpx.AsyncClient, path: str) -> float:
    started = time.monotonic()
    while True:
        response = await client.get(path)
        if response.status_code == 200:
            return time.monotonic() - started
        assert response.status_code == 503, response.text  # while recovering: still 503, never 500
        assert time.monotonic() - started < RECOVERY_SECONDS, "the API did not recover"


@pytest.mark.parametrize("mode", ["refuse", "starting_up"])
async def test_postgres_away_is_503_with_retry_after_and_the_api_recovers(
    proxied_api: ProxiedApi, db: Any, mode: str
) -> None:
    known, known_token = await tenants.create(db, "outage-known")
    cold, cold_token = await tenants.create(db, "outage-cold")  # never seen by the API before the outage
    base = f"{proxied_api.url}/scim/v2"
    async with (
        httpx.AsyncClient(base_url=f"{base}/{known.id}", headers={"Authorization": f"Bearer {known_token}"}) as scim,
        httpx.AsyncClient(base_url=f"{base}/{cold.id}", headers={"Authorization": f"Bearer {cold_token}"}) as cold_scim,
        httpx.AsyncClient(base_url=proxied_api.url) as plain,
    ):
        user = (await scim.post("/Users", json={"userName": "stays@example.com"})).json()
        group = (await scim.post("/Groups", json={"displayName": "stays"})).json()
        assert (await plain.get("/readyz")).status_code == 200

        await proxied_api.proxy.cut(mode)
        patch = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}
        calls = [
            scim.get("/Users"),
            scim.get("/Users", params={"filter": 'userName eq "stays@example.com"'}),
            scim.post("/Users", json={"userName": "new@example.com"}),
            scim.get(f"/Users/{user['id']}"),
            scim.put(f"/Users/{user['id']}", json={"userName": "stays@example.com", "active": False}),
            scim.patch(f"/Users/{user['id']}", json=patch),
            scim.delete(f"/Users/{user['id']}"),
            scim.post("/Users/.search", json={"filter": "userName pr"}),
            scim.get("/Groups"),
            scim.patch(f"/Groups/{group['id']}", json=patch),
            scim.put(f"/Groups/{group['id']}", json={"displayName": "renamed"}),
            scim.delete(f"/Groups/{group['id']}"),
            scim.post("/Groups/.search", json={"filter": "displayName pr"}),
            scim.post("/.search", json={"filter": "displayName pr"}),
            scim.post("/Bulk", json=BULK),
            cold_scim.get("/Users"),  # the tenant lookup itself needs the database: 503, not 401
            cold_scim.post("/Users", json={"userName": "new@example.com"}),
        ]
        for call in calls:
            assert_unavailable(await call)
        ready = await plain.get("/readyz")
        assert ready.status_code == 503 and "postgres" in ready.json()["down"]

        await proxied_api.proxy.restore()
        recovered = await _poll_until_ok(scim, "/Users")
        await _poll_until_ok(cold_scim, "/Users")
        await _poll_until_ok(plain, "/readyz")
        assert recovered < RECOVERY_SECONDS
        print(f"postgres back ({mode}): the API served again after {recovered:.3f} s")  # the figure, with -s
        # Nothing was written while Postgres was away, and everything works again.
        listed = (await scim.get("/Users")).json()
        assert [(u["id"], u["active"], u["meta"]["version"]) for u in listed["Resources"]] == [
            (user["id"], True, 'W/"1"')
        ]
        assert (await scim.get(f"/Groups/{group['id']}")).status_code == 200
        assert (await cold_scim.post("/Users", json={"userName": "new@example.com"})).status_code == 201
    assert await db.fetchval("SELECT count(*) FROM users WHERE tenant_id = $1", uuid.UUID(known.id)) == 1


async def test_a_transaction_cut_midway_is_503_and_leaves_nothing_half_written(
    proxied_api: ProxiedApi, db: Any
) -> None:
    tenant, token = await tenants.create(db, "outage-midway")
    await db.execute(
        """CREATE OR REPLACE FUNCTION test_slow() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN PERFORM pg_sleep(3); RETURN NEW; END $$"""
    )
    await db.execute(
        "CREATE TRIGGER test_slow BEFORE UPDATE ON users FOR EACH ROW"
        " WHEN (NEW.resource ->> 'title' = 'slow') EXECUTE FUNCTION test_slow()"
    )
    base = f"{proxied_api.url}/scim/v2/{tenant.id}"
    try:
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}) as scim:
            user = (await scim.post("/Users", json={"userName": "midway@example.com"})).json()
            # A deactivation: a transaction of several statements (row, event, the deprovisioning brake's count).
            # Other writes are one statement each, atomic by themselves.
            operations = [
                {"op": "replace", "path": "title", "value": "slow"},
                {"op": "replace", "value": {"active": False}},
            ]
            patch = {"schemas": [PATCH_OP], "Operations": operations}
            pending = asyncio.create_task(scim.patch(f"/Users/{user['id']}", json=patch))
            started = time.monotonic()
            while not await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'"
            ):
                assert time.monotonic() - started < 5, "the PATCH never reached its UPDATE"
                await asyncio.sleep(0.01)
            await proxied_api.proxy.cut("refuse")  # Postgres vanishes in the middle of the transaction
            assert_unavailable(await pending)
            await proxied_api.proxy.restore()
            await _poll_until_ok(scim, f"/Users/{user['id']}")
            after = (await scim.get(f"/Users/{user['id']}")).json()
            assert after["meta"]["version"] == 'W/"1"' and "title" not in after and after["active"] is True
    finally:
        await db.execute("DROP TRIGGER IF EXISTS test_slow ON users")
    events = await db.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1", uuid.UUID(tenant.id))
    assert events == 1  # the create only
