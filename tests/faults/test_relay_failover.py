"""The active relay's network freezes (its host vanished): a standby on its own connection takes over within 15 s.

The leader reaches Postgres through a proxy the test freezes: no bytes, no FIN, no RST, as when a host loses
power or a network partitions. Postgres keeps the leader's session (and its advisory lock) until something
notices the silence; that must take seconds, not the kernel's two hours.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.faults.conftest import Figures
from tests.faults.load import Load
from tests.faults.pipeline import Pipeline
from tests.faults.proxy import Proxy
from tests.faults.verdict import settle

TAKEOVER_S = 15


async def test_frozen_leader_is_replaced_by_the_standby_within_15s(pipeline: Pipeline, figures: Figures) -> None:
    await pipeline.start_api()
    pipeline.consumer("booking")
    pipeline.consumer("workspace")
    proxy = await Proxy(pipeline.stack.pg_port).start()
    try:
        leader = pipeline.relay("relay-leader", pipeline.stack.database_url(pipeline.name, port=proxy.port))
        await leader.wait_for("relay.active")
        standby = pipeline.relay("relay-standby")
        await standby.wait_for("relay.standby")
        tenants = await pipeline.tenants(2)
        load = await Load(pipeline.api_url, tenants, rate=60, max_seconds=120).start()
        await load.wait_for_writes(100)

        proxy.freeze()
        frozen = time.monotonic()
        probe = await create_user(tenants[0], "written.after.freeze@example.com")
        conn = await pipeline.connect()
        try:
            while not await conn.fetchval("SELECT published_at IS NOT NULL FROM events WHERE subject = $1", probe):
                waited = time.monotonic() - frozen
                assert waited < TAKEOVER_S, (
                    f"nothing published {waited:.0f} s after the leader froze; standby: {standby.events()[-3:]}"
                )
                await asyncio.sleep(0.05)
        finally:
            await conn.close()
        published = time.monotonic() - frozen
        assert "relay.active" in standby.events()
        figures(write_after_freeze_published_after_s=published)

        proxy.cut()  # the old leader's links finally die: it must come back as a standby, not a second leader
        await leader.wait_for("relay.database_unavailable", within=30)
        verdict = await settle(pipeline, load, time.monotonic())
        assert leader.events()[-1] in ("relay.standby", "relay.database_unavailable"), leader.events()[-3:]
        figures(**verdict)
    finally:
        await proxy.close()


async def create_user(tenant: object, user_name: str) -> str:
    headers = {"Authorization": f"Bearer {tenant.token}", "Content-Type": "application/scim+json"}  # type: ignore[attr-defined]
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{tenant.base_url}/Users", json={"userName": user_name}, headers=headers)  # type: ignore[attr-defined]
    assert response.status_code == 201, response.text
    return str(response.json()["id"])
