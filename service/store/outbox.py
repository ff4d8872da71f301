"""The outbox side of the event log: what the relay claims and marks, and how far behind it is.

Only the relay that holds the relay lock (`try_lock_relay`, a session advisory lock) claims and marks, so a
claim is a plain read in sequence order: no row locks, no SKIP LOCKED. One user's events are written under
that user's row lock, so their sequences follow their commit order; a lower sequence of another user that
commits late is simply claimed by a later batch.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.domain.events import StoredEvent

CHANNEL = "scimsync_events"  # NOTIFY channel of 0002_outbox_notify.sql: a wake-up, no payload
RELAY_LOCK = 7_202_612  # arbitrary, constant: the advisory lock id of the active relay (migrations use 7_202_611)
SLEEP_LOCK = 7_202_613  # held by the relay only while it waits: writers NOTIFY only then (migration 0004)

# What every read of the log selects: the columns a StoredEvent is made of (`stored`).
EVENT_COLUMNS = "sequence, id, tenant_id, aggregate, subject, type, version, occurred_at, data"

_CLAIM = f"SELECT {EVENT_COLUMNS} FROM events WHERE published_at IS NULL ORDER BY sequence LIMIT $1"

# Of the given (tenant, subject) pairs: the latest event of each, or every event of each, in log order.
_PAIRS = "aggregate = $1 AND (tenant_id, subject) IN (SELECT * FROM unnest($2::uuid[], $3::uuid[]))"
_LATEST = f"SELECT DISTINCT ON (subject) {EVENT_COLUMNS} FROM events WHERE {_PAIRS} ORDER BY subject, sequence DESC"
_HISTORIES = f"SELECT {EVENT_COLUMNS} FROM events WHERE {_PAIRS} ORDER BY subject, sequence"

_MARK = "UPDATE events SET published_at = now() WHERE sequence = ANY($1::bigint[]) AND published_at IS NULL"

_LAG = """
SELECT
    (SELECT count(*) FROM events WHERE published_at IS NULL) AS unpublished,
    (SELECT greatest(0, extract(epoch FROM clock_timestamp() - occurred_at))::float8
       FROM events WHERE published_at IS NULL ORDER BY sequence LIMIT 1) AS oldest_age
"""

# Walks the primary key backwards from the newest event to the first published one.
_LAST_PUBLISHED = "SELECT sequence FROM events WHERE published_at IS NOT NULL ORDER BY sequence DESC LIMIT 1"


@dataclass(frozen=True)
class Lag:
    unpublished: int
    oldest_age_seconds: float  # 0 when nothing waits


async def try_lock_relay(conn: Any) -> bool:
    """Take the relay lock for this session, if no other session holds it. Closing the session releases it."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK))


async def try_fall_asleep(conn: Any) -> bool:
    """Take the sleeping lock; False while a writer that hasn't notified is still in flight."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", SLEEP_LOCK))


async def wake_up(conn: Any) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", SLEEP_LOCK)


async def claim_batch(conn: Any, limit: int) -> list[StoredEvent]:
    """Up to `limit` unpublished events, oldest sequence first."""
    return [stored(row) for row in await conn.fetch(_CLAIM, limit)]


def stored(row: Any) -> StoredEvent:
    return StoredEvent(
        sequence=row["sequence"],
        id=str(row["id"]),
        tenant_id=str(row["tenant_id"]),
        subject=str(row["subject"]),
        type=row["type"],
        version=row["version"],
        occurred_at=row["occurred_at"],
        data=row["data"],
        aggregate=row["aggregate"],
    )


async def has_unpublished(conn: Any) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM events WHERE published_at IS NULL)"))


async def mark_published(conn: Any, sequences: list[int]) -> int:
    """Mark events published, in one statement; returns how many were still unmarked."""
    status: str = await conn.execute(_MARK, sequences)
    return int(status.rsplit(" ", 1)[-1])


async def lag(db: Any) -> Lag:
    """How far the relay is behind: unpublished events and the age of the oldest. `db`: a pool or a connection."""
    row = await db.fetchrow(_LAG)
    return Lag(unpublished=row["unpublished"], oldest_age_seconds=row["oldest_age"] or 0.0)


async def last_published_sequence(db: Any) -> int | None:
    value = await db.fetchval(_LAST_PUBLISHED)
    return None if value is None else int(value)


@dataclass(frozen=True)
class Selection:
    """Which events of the log to replay; every field narrows it, None means any."""

    tenant_id: str | None = None
    subject: str | None = None  # a user or group id
    aggregate: str | None = None  # "user" | "group"
    from_sequence: int | None = None  # inclusive
    to_sequence: int | None = None  # inclusive
    since: datetime | None = None  # occurred_at >= since
    until: datetime | None = None  # occurred_at < until

    def where(self, params: list[object]) -> str:
        """A parameterised WHERE clause (values only as $n parameters, appended to `params`)."""
        conditions = ["TRUE"]
        for column, op, value in (
            ("tenant_id", "=", uuid.UUID(self.tenant_id) if self.tenant_id else None),
            ("subject", "=", uuid.UUID(self.subject) if self.subject else None),
            ("aggregate", "=", self.aggregate),
            ("sequence", ">=", self.from_sequence),
            ("sequence", "<=", self.to_sequence),
            ("occurred_at", ">=", self.since),
            ("occurred_at", "<", self.until),
        ):
            if value is not None:
                params.append(value)
                conditions.append(f"{column} {op} ${len(params)}")
        return " AND ".join(conditions)


async def count_selected(conn: Any, selection: Selection) -> int:
    params: list[object] = []
    return int(await conn.fetchval(f"SELECT count(*) FROM events WHERE {selection.where(params)}", *params))


async def read_selected(conn: Any, selection: Selection, after_sequence: int, limit: int) -> list[StoredEvent]:
    """The next `limit` selected events after `after_sequence`, in sequence order (keyset paging)."""
    params: list[object] = [after_sequence, limit]
    where = selection.where(params)
    rows = await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE sequence > $1 AND {where} ORDER BY sequence LIMIT $2", *params
    )
    return [stored(row) for row in rows]


def _pairs(pairs: list[tuple[str, str]]) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    return [uuid.UUID(t) for t, _ in pairs], [uuid.UUID(i) for _, i in pairs]


async def latest_events(conn: Any, aggregate: str, pairs: list[tuple[str, str]]) -> list[StoredEvent]:
    """The latest event of each (tenant id, subject id), in log order."""
    rows = await conn.fetch(_LATEST, aggregate, *_pairs(pairs))
    return sorted((stored(row) for row in rows), key=lambda e: e.sequence)


async def histories(conn: Any, aggregate: str, pairs: list[tuple[str, str]]) -> dict[str, list[StoredEvent]]:
    """Every event of each (tenant id, subject id), in log order, by subject."""
    out: dict[str, list[StoredEvent]] = {}
    for row in await conn.fetch(_HISTORIES, aggregate, *_pairs(pairs)):
        out.setdefault(str(row["subject"]), []).append(stored(row))
    return out
