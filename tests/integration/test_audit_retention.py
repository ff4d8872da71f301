"""The audit log (`scim_requests`) keeps `SCIMSYNC_AUDIT_RETENTION_DAYS` (30) days, and a row it has to drop
(Postgres away long enough that the buffer is full) is counted in /metrics and logged, never dropped silently."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from service.store import tenants

from .api_process import api_process
from .conftest import Stack
from .pgproxy import PgProxy


async def _eventually(check: Callable[[], Awaitable[bool]], within: float = 15) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"


def _metric(text: str, name: str) -> float:
    values = [line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")]
    assert values, f"{name} missing from /metrics"
    return float(values[0])


async def test_audit_rows_older_than_the_retention_are_pruned(database_url: str, stack: Stack, db: Any) -> None:
    tenant, _ = await tenants.create(db, "audited")
    now = datetime.now(UTC)
    ages = {"old": 40, "just-old": 8, "recent": 6, "today": 0}
    for name, days in ages.items():
        await db.execute(
            "INSERT INTO scim_requests (at, tenant_id, method, path, status, request_id, duration_ms)"
            " VALUES ($1, $2, 'GET', '/scim/v2/x/Users', 200, $3, 1.0)",
            now - timedelta(days=days, minutes=1),
            uuid.UUID(tenant.id),
            name,
        )

    async def kept() -> set[str]:
        rows = await db.fetch("SELECT request_id FROM scim_requests WHERE tenant_id = $1", uuid.UUID(tenant.id))
        return {r["request_id"] for r in rows}

    async with api_process(database_url, stack.kafka, SCIMSYNC_AUDIT_RETENTION_DAYS="7"):

        async def pruned() -> bool:
            return await kept() == {"recent", "today"}

        await _eventually(pruned)  # the API prunes at start, then every hour


async def test_dropped_audit_rows_are_counted_and_logged(database_url: str, stack: Stack, db: Any) -> None:
    parts = urlsplit(database_url)
    proxy = PgProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    through_proxy = urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"))
    tenant, token = await tenants.create(db, "dropped")
    try:
        async with (
            api_process(through_proxy, stack.kafka, SCIMSYNC_AUDIT_MAX_PENDING="5") as (url, log),
            httpx.AsyncClient(base_url=url) as client,
        ):
            before = _metric((await client.get("/metrics")).text, "scimsync_audit_dropped_rows_total")
            assert before == 0
            await proxy.cut("refuse")
            headers = {"Authorization": f"Bearer {token}"}
            for _ in range(12):  # 503s, each one audited: the buffer of 5 overflows
                assert (await client.get(f"/scim/v2/{tenant.id}/Users", headers=headers)).status_code == 503
            during = await client.get("/metrics")  # the in-process counters are there while Postgres is away
            assert during.status_code == 200
            dropped = _metric(during.text, "scimsync_audit_dropped_rows_total")
            waiting = _metric(during.text, "scimsync_audit_pending_rows")
            assert dropped >= 5 and dropped + waiting == 12  # every row either waits or is counted

            async def logged() -> bool:
                return b'"event":"audit.rows_dropped"' in log.read_bytes()

            await _eventually(logged)
            await proxy.restore()
    finally:
        await proxy.stop()


async def test_a_request_postgres_cannot_store_does_not_stop_the_audit_log(
    api_url: str, db: Any, scim: httpx.AsyncClient
) -> None:
    # A NUL in the URL path reaches the audit row; Postgres refuses NUL in text. Once, that failed every later
    # flush of the process: its audit log stopped for good.
    # A refused body is kept (redacted) with its row: one holding NUL or a lone surrogate could not be stored.
    assert (await scim.get("/Users/%00", headers={"X-Request-Id": "poison-1"})).status_code == 404
    nul = b'{"userName": "a\\u0000b"}'
    assert (await scim.post("/Users", content=nul, headers={"X-Request-Id": "poison-2"})).status_code == 400
    surrogate = b'{"userName": "\\ud800"}'
    assert (await scim.post("/Users", content=surrogate, headers={"X-Request-Id": "poison-3"})).status_code == 400
    assert (await scim.get("/Users", headers={"X-Request-Id": "after-poison-1"})).status_code == 200
    wanted = {"poison-1", "poison-2", "poison-3", "after-poison-1"}

    async def audited() -> bool:
        rows = await db.fetch("SELECT request_id FROM scim_requests WHERE request_id = ANY($1::text[])", list(wanted))
        return {r["request_id"] for r in rows} == wanted

    await _eventually(audited, 5)
    path = await db.fetchval("SELECT path FROM scim_requests WHERE request_id = 'poison-1'")
    assert path.endswith("/Users/%00")
