"""The audit log of SCIM requests, written in batches off the request path (COPY every fraction of a second).

A crash can lose the last fraction of a second of audit rows, never a user change: those are
committed with their events before the response is sent.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from service import logs

log = logs.get(__name__)
_COLUMNS = ["at", "tenant_id", "method", "path", "status", "request_id", "duration_ms"]
_DETAIL_COLUMNS = [*_COLUMNS, "user_agent", "token_id", "scim_type", "detail", "body"]
Row = tuple[
    datetime,
    uuid.UUID | None,
    str,
    str,
    int,
    str,
    float,
    str | None,
    uuid.UUID | None,
    str | None,
    str | None,
    Any,
]
BODY_DAYS = 30  # a refused request's redacted body is kept this long, then forgotten (the row stays)


class AuditLog:
    def __init__(self, pool: asyncpg.Pool, interval: float = 0.2, max_pending: int = 100_000) -> None:
        self._pool = pool
        self._interval = interval
        self._max_pending = max_pending
        self._pending: list[Row] = []
        self._task: asyncio.Task[None] | None = None

    def record(
        self,
        tenant_id: str | None,
        method: str,
        path: str,
        status: int,
        request_id: str,
        ms: float,
        *,
        user_agent: str | None = None,
        token_id: str | None = None,
        scim_type: str | None = None,
        detail: str | None = None,
        body: Any = None,
    ) -> None:
        """`body` is the already redacted body of a refused request (see service.domain.redaction); None else."""
        if len(self._pending) >= self._max_pending:
            return  # Postgres is unreachable for long: keep serving rather than grow without bound
        tenant = uuid.UUID(tenant_id) if tenant_id else None
        token = uuid.UUID(token_id) if token_id else None
        agent = user_agent[:512] if user_agent else None
        self._pending.append(
            (
                datetime.now(UTC),
                tenant,
                method,
                path[:2048],
                status,
                request_id,
                ms,
                agent,
                token,
                scim_type,
                detail,
                body,
            )
        )

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
            await self._pool.copy_records_to_table("scim_requests", records=batch, columns=_DETAIL_COLUMNS)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("audit.flush_failed", rows=len(batch), error=type(exc).__name__)
            self._pending = batch + self._pending

    async def _run(self) -> None:
        flushes = 0
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()
            flushes += 1
            if flushes % 18_000 == 1:  # at start, then about hourly
                await self._forget_old_bodies()

    async def _forget_old_bodies(self) -> None:
        try:
            await forget_old_bodies(self._pool)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("audit.forget_bodies_failed", error=type(exc).__name__)


async def forget_old_bodies(db: Any, days: int = BODY_DAYS) -> int:
    """Drop the kept request bodies older than `days` (the request rows themselves stay)."""
    done = await db.execute(
        "UPDATE scim_requests SET body = NULL WHERE body IS NOT NULL AND at < now() - make_interval(days => $1)", days
    )
    return int(done.split()[-1])
