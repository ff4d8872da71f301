"""The API's gauges, refreshed in the background so that a Prometheus scrape never waits for a query.

Every refresh: can this process reach Postgres and Kafka (`scimsync_dependency_up`), and — when Postgres
answers — how far the relay is behind (`scimsync_outbox_*`). When Postgres doesn't answer the lag gauges are
left out rather than shown stale; the dependency gauge says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from service import logs
from service.api import prometheus
from service.store import outbox

log = logs.get(__name__)

_QUERY_TIMEOUT = 5.0


class GaugeRefresher:
    def __init__(
        self,
        metrics: prometheus.ApiMetrics,
        readiness: Callable[[], Awaitable[dict[str, str | None]]],
        pool: Any,
        interval: float,
    ) -> None:
        self._metrics = metrics
        self._readiness = readiness
        self._pool = pool
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.refresh()  # the first scrape already has numbers
        self._task = asyncio.create_task(self._run(), name="metrics-gauges")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except Exception as exc:  # a refresh must never end the loop; the age gauge shows staleness
                log.warning("metrics.refresh_failed", error=type(exc).__name__)

    async def refresh(self) -> None:
        down = await self._readiness()
        values: dict[str, dict[prometheus.Labels, float]] = {
            prometheus.DEPENDENCY_UP: {
                (("dependency", name),): 0.0 if reason is not None else 1.0 for name, reason in down.items()
            }
        }
        if down.get("postgres") is None:
            try:
                lag = await asyncio.wait_for(outbox.lag(self._pool), _QUERY_TIMEOUT)
            except Exception as exc:  # Postgres went away between the probe and the query
                log.warning("metrics.lag_unavailable", error=type(exc).__name__)
            else:
                values[prometheus.UNPUBLISHED] = {(): float(lag.unpublished)}
                values[prometheus.OLDEST_AGE] = {(): lag.oldest_age_seconds}
                values[prometheus.PARKED] = {(): float(lag.parked)}
                values[prometheus.HELD] = {(): float(lag.held)}
                values[prometheus.HELD_AGE] = {(): lag.oldest_held_age_seconds}
        self._metrics.set_gauges(values, time.monotonic())
