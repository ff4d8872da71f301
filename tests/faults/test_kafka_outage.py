"""Kafka stopped for 20 s under SCIM load: writes keep succeeding, events wait in Postgres, nothing is lost."""

from __future__ import annotations

import asyncio
import time

from service.store import outbox
from tests.faults.conftest import Figures
from tests.faults.load import Load
from tests.faults.pipeline import Pipeline
from tests.faults.verdict import settle

OUTAGE_S = 20


async def test_kafka_stopped_20s_under_load_delays_events_but_loses_none(pipeline: Pipeline, figures: Figures) -> None:
    await pipeline.start()
    relay = pipeline.process("relay")
    load = await Load(pipeline.api_url, await pipeline.tenants(3), rate=80, max_seconds=120).start()
    await load.wait_for_writes(150)

    await pipeline.stack.down("kafka")
    down = time.monotonic()
    writes_before = load.writes
    await relay.wait_for("relay.kafka_unavailable", within=OUTAGE_S)
    await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down)))  # the outage itself: it lasts 20 s
    conn = await pipeline.connect()
    try:
        lag = await outbox.lag(conn)
    finally:
        await conn.close()
    during = [o for o in load.outcomes if o.sent >= down]
    writes_during = load.writes - writes_before
    # Not every write makes an event (a join of a member, a deactivation of a leaver change nothing).
    assert lag.unpublished >= writes_during // 3 and lag.oldest_age_seconds >= OUTAGE_S - 5, lag
    slowest = max(o.answered - o.sent for o in during)
    # The API never waits for Kafka: a write that did would take the whole outage. (5 s: a busy 2-core machine.)
    assert slowest < 5.0, f"a SCIM write took {slowest:.1f} s while Kafka was down"

    up_took = await pipeline.stack.up("kafka")
    back = time.monotonic()
    verdict = await settle(pipeline, load, back, within=90)
    assert all(p.alive for p in pipeline.processes), "every process survives the outage"
    figures(
        kafka_down_s=back - up_took - down,
        kafka_start_s=up_took,
        writes_during_outage=writes_during,
        unpublished_at_end_of_outage=lag.unpublished,
        slowest_write_during_outage_s=slowest,
        **verdict,
    )
