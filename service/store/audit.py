"""The audit log of SCIM requests, written in batches off the request path (COPY every fraction of a second).

A crash can lose the last fraction of a second of audit rows, never a user change: those are
committed with their events before the response is sent.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg

from service import logs

log = logs.get(__name__)
_COLUMNS = ["at", "tenant_id", "method", "path", "status", "request_id", "duration_ms"]
Row = tuple[datetime, uuid.UUID | None, str, str, int, str, float]


class AuditLog:
    def __init__(self, pool: asyncpg.Pool, interval: float = 0.2, max_pending: int = 100_000) -> None:
        self._pool = pool
        self._interval = interval
        self._max_pending = max_pending
        self._pending: list[Row] = []
        self._task: asyncio.Task[None] | None = None

    def record(self, tenant_id: str | None, method: str, path: str, status: int, request_id: str, ms: float) -> None:
        if len(self._pending) >= self._max_pending:
            return  # Postgres is unreachable for long: keep serving rather than grow without bound
        tenant = uuid.UUID(tenant_id) if tenant_id else None
        self._pending.append((datetime.now(UTC), tenant, method, path[:2048], status, request_id, ms))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            await self._pool.copy_records_to_table("scim_requests", records=batch, columns=_COLUMNS)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("audit.flush_failed", rows=len(batch), error=type(exc).__name__)
            self._pending = batch + self._pending

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()
