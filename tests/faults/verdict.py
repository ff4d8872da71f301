"""The end of every fault test: stop the load, wait for the pipeline to catch up, and run every check on it."""

from __future__ import annotations

import time
from typing import Any

from tests.faults.checks import check_answers, check_log_on_kafka, converge, event_log, read_all
from tests.faults.load import Load
from tests.faults.pipeline import Pipeline


async def settle(
    pipeline: Pipeline,
    load: Load | None,
    recovered_from: float,
    within: float = 90,
    away: list[tuple[float, float]] | None = None,
    held: set[int] | None = None,
    ignore: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Every check, once the fault is over (`recovered_from`: when it ended, time.monotonic()). → figures.

    `away`: when Postgres was down (503s allowed then); `held`: sequences allowed to stay unpublished (parked);
    `ignore`: user or group ids whose projection may differ (their event is parked).
    """
    figures: dict[str, Any] = {}
    if load is not None:
        await load.stop()
        figures.update(check_answers(load.outcomes, away or []))
        figures["writes"] = load.writes
    published_s, converged_s = await converge(pipeline.connect, recovered_from, within, held or set(), ignore)
    figures["all_published_after_s"] = round(published_s, 2)
    figures["projections_equal_after_s"] = round(converged_s, 2)
    conn = await pipeline.connect()
    try:
        rows = await event_log(conn)
    finally:
        await conn.close()
    started = time.monotonic()
    records = await read_all(pipeline.stack.kafka, pipeline.topics.values())
    figures.update(check_log_on_kafka(rows, records, pipeline.topics, held or set()))
    figures["kafka_read_s"] = round(time.monotonic() - started, 2)
    return figures
