"""The audit log of SCIM requests, written in batches off the request path (COPY every fraction of a second),
and pruned to its retention (`SCIMSYNC_AUDIT_RETENTION_DAYS`).

A crash can lose the last fraction of a second of audit rows, never a user change: those are
committed with their events before the response is sent. While Postgres is unreachable the rows wait in
memory, up to `max_pending`; past that each further row is dropped, counted (`dropped`, exported in
/metrics) and reported in an `audit.rows_dropped` log line per flush interval — never silently. Text
Postgres can't store (a NUL from `%00` in the URL, a refused body holding `\\u0000` or a lone surrogate) is
made storable before it is queued, and a batch Postgres still refuses for its content is dropped the same
way (`audit.batch_refused`): one bad row must never stop the audit log.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from service import logs
from service.domain.text import first_unstorable, unstorable
from service.store.pool import unreachable

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
_SURROGATE = re.compile("[\ud800-\udfff]")
BODY_DAYS = 30  # a refused request's redacted body is kept this long, then forgotten (the row stays)
PRUNE_EVERY_SECONDS = 3600.0
_PRUNE_BATCH = 10_000  # rows per DELETE: short transactions, no long lock on a big table

# Each API process prunes; concurrent runs are harmless (SKIP LOCKED); the index on `at` (migration 0006) keeps
# finding old rows cheap.
_PRUNE = """
DELETE FROM scim_requests WHERE id IN (
    SELECT id FROM scim_requests WHERE at < $1 ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED
)
"""


def _text(value: str | None) -> str | None:
    """Text as Postgres can store it: a NUL written as `%00` (how it came in a URL), a lone surrogate as U+FFFD."""
    if value is None or unstorable(value) is None:
        return value
    return _SURROGATE.sub("\ufffd", value.replace("\x00", "%00"))


class AuditLog:
    def __init__(
        self,
        pool: asyncpg.Pool,
        interval: float = 0.2,
        max_pending: int = 100_000,
        retention_days: int = 30,
    ) -> None:
        self._pool = pool
        self._interval = interval
        self._max_pending = max_pending
        self._retention = timedelta(days=retention_days)
        self._pending: list[Row] = []
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0  # rows dropped since the process started
        self._dropped_unreported = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

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
            # Postgres is unreachable for long: keep serving rather than grow without bound, but say so.
            self.dropped += 1
            self._dropped_unreported += 1
            return
        tenant = uuid.UUID(tenant_id) if tenant_id else None
        token = uuid.UUID(token_id) if token_id else None
        agent = user_agent[:512] if user_agent else None
        if body is not None and first_unstorable(body) is not None:
            body = {"redacted": "body with a NUL or a lone surrogate, which can't be stored"}
        self._pending.append(
            (
                datetime.now(UTC),
                tenant,
                method,
                str(_text(path[:2048])),
                status,
                request_id,
                ms,
                _text(agent),
                token,
                scim_type,
                _text(detail),
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
        self._report_drops()

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            await self._pool.copy_records_to_table("scim_requests", records=batch, columns=_DETAIL_COLUMNS)
        except Exception as exc:  # whatever it is, the loop must go on: retry or drop, never die
            if unreachable(exc):  # the rows wait for Postgres to come back
                log.warning("audit.flush_failed", rows=len(batch), error=type(exc).__name__)
                self._pending = batch + self._pending
                return
            # Postgres refused the rows themselves: retrying would fail every later flush too. Drop and say so.
            log.error("audit.batch_refused", rows=len(batch), error=type(exc).__name__)
            self.dropped += len(batch)

    async def prune(self) -> int:
        """Delete the rows older than the retention; how many."""
        before, deleted = datetime.now(UTC) - self._retention, 0
        while True:
            done = await self._pool.execute(_PRUNE, before, _PRUNE_BATCH)
            count = int(done.split()[-1])
            deleted += count
            if count < _PRUNE_BATCH:
                break
        if deleted:
            log.info("audit.pruned", rows=deleted, retention_days=self._retention.days)
        return deleted

    def _report_drops(self) -> None:
        if self._dropped_unreported:
            log.error("audit.rows_dropped", rows=self._dropped_unreported, total=self.dropped)
            self._dropped_unreported = 0

    async def _run(self) -> None:
        next_housekeeping = 0.0  # at start, then every PRUNE_EVERY_SECONDS
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()
            self._report_drops()
            if loop.time() >= next_housekeeping:
                next_housekeeping = loop.time() + await self._housekeeping()

    async def _housekeeping(self) -> float:
        """Prune to the retention and forget old bodies; seconds until the next time (sooner after a failure)."""
        try:
            await self.prune()
            await forget_old_bodies(self._pool)
        except Exception as exc:
            if not unreachable(exc) and not isinstance(exc, asyncpg.PostgresError):
                raise
            log.warning("audit.housekeeping_failed", error=type(exc).__name__)
            return 60.0
        return PRUNE_EVERY_SECONDS


async def forget_old_bodies(db: Any, days: int = BODY_DAYS) -> int:
    """Drop the kept request bodies older than `days` (the request rows themselves stay)."""
    done = await db.execute(
        "UPDATE scim_requests SET body = NULL WHERE body IS NOT NULL AND at < now() - make_interval(days => $1)", days
    )
    return int(done.split()[-1])
