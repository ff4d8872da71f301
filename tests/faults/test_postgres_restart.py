"""Postgres stopped for ~8 s under SCIM load: the API answers 503 with Retry-After (never 500), says not ready,
and recovers on its own; the relay and the consumers wait and catch up; nothing is lost."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.faults.conftest import Figures
from tests.faults.load import Load
from tests.faults.pipeline import Pipeline
from tests.faults.verdict import settle

DOWN_S = 8


async def readyz(url: str) -> tuple[int, dict[str, object]]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"{url}/readyz")
    return response.status_code, response.json()


async def test_postgres_restarted_under_load_answers_503_and_recovers(pipeline: Pipeline, figures: Figures) -> None:
    await pipeline.start()
    load = await Load(pipeline.api_url, await pipeline.tenants(3), rate=80, max_seconds=120).start()
    await load.wait_for_writes(150)

    away = time.monotonic()
    await pipeline.stack.down("postgres")
    stopped = time.monotonic()
    status, body = await readyz(pipeline.api_url)
    assert status == 503 and "postgres" in body["down"], body  # type: ignore[operator]
    await asyncio.sleep(max(0.0, DOWN_S - (time.monotonic() - stopped)))  # the outage itself
    up_took = await pipeline.stack.up("postgres")
    back = time.monotonic()

    deadline = back + 15
    while (await readyz(pipeline.api_url))[0] != 200:
        assert time.monotonic() < deadline, "the API is not ready 15 s after Postgres came back"
        await asyncio.sleep(0.1)
    ready_after = time.monotonic() - back
    during = [o for o in load.outcomes if stopped < o.sent < back - up_took]
    assert during, "no SCIM request was made while Postgres was down"
    # Requests stuck in flight across the restart may be the only ones answered before readiness: wait for fresh ones.
    first_ok = await load.wait_for_ok(since=back, count=20)
    verdict = await settle(pipeline, load, back, away=[(away, back)])
    assert all(p.alive for p in pipeline.processes), "every process survives the restart"
    assert pipeline.process("relay").count("relay.database_unavailable") >= 1
    figures(
        postgres_down_s=back - up_took - stopped,
        requests_while_down=len(during),
        api_ready_after_s=ready_after,
        first_write_ok_after_s=first_ok - back,
        **verdict,
    )
