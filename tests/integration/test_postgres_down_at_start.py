"""An API process started while Postgres is unreachable (a pod scheduled during a managed database's failover)
starts anyway: alive, not ready, SCIM calls answered 503 with Retry-After, and it serves once Postgres is back,
without a restart. The API reaches Postgres through a proxy (pgproxy.py) that refuses connections until the test
lets them through."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from service.store import tenants

from .api_process import api_process
from .conftest import Stack
from .pgproxy import PgProxy
from .test_postgres_outage import assert_unavailable

RECOVERY_SECONDS = 5.0


async def _until(client: httpx.AsyncClient, method: str, path: str, status: int, **kwargs: Any) -> httpx.Response:
    started = time.monotonic()
    while True:
        response = await client.request(method, path, **kwargs)
        if response.status_code == status:
            return response
        assert response.status_code == 503, response.text  # while Postgres comes back: 503, never a 500 or a 401
        assert time.monotonic() - started < RECOVERY_SECONDS, f"{method} {path} still {response.status_code}"


async def test_the_api_starts_while_postgres_is_down_and_serves_once_it_is_back(
    database_url: str, stack: Stack, db: Any
) -> None:
    tenant, token = await tenants.create(db, "down-at-start")
    parts = urlsplit(database_url)
    proxy = PgProxy(parts.hostname or "127.0.0.1", parts.port or 5432)  # not started: connections are refused
    through_proxy = urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"))
    try:
        async with (
            api_process(through_proxy, stack.kafka) as (url, _log),
            httpx.AsyncClient(base_url=url, timeout=10) as plain,
            httpx.AsyncClient(
                base_url=f"{url}/scim/v2/{tenant.id}", headers={"Authorization": f"Bearer {token}"}, timeout=10
            ) as scim,
        ):
            assert (await plain.get("/healthz")).status_code == 200
            ready = await plain.get("/readyz")
            assert ready.status_code == 503 and "postgres" in ready.json()["down"]
            for call in (
                scim.get("/Users"),
                scim.post("/Users", json={"userName": "early@example.com"}),
                scim.get("/Groups"),
            ):
                assert_unavailable(await call)

            await proxy.restore()
            created = await _until(scim, "POST", "/Users", 201, json={"userName": "late@example.com"})
            assert created.json()["userName"] == "late@example.com"
            await _until(plain, "GET", "/readyz", 200)
            listed = (await scim.get("/Users")).json()
            assert [u["userName"] for u in listed["Resources"]] == ["late@example.com"]
    finally:
        await proxy.stop()
