"""The outbox side of the event log: what the relay claims and marks, and how far behind it is.

Only the relay that holds the relay lock (`try_lock_relay`, a session advisory lock) claims and marks, so a
claim is a plain read in sequence order: no row locks, no SKIP LOCKED. One user's events are written under
that user's row lock, so their sequences follow their commit order; a lower sequence of another user that
commits late is simply claimed by a later batch.

The gate. A stream is the events of one user or group: (aggregate, tenant_id, subject). An unpublished event
whose `state` is set is a gate: neither it nor any later event of its stream is claimed, so the stream's order
holds while every other stream keeps flowing. Two states use it:

- `parked`: Kafka refused the event for good (too large, invalid, not authorised). The relay parks it
  (`park`, with the reason) and the SRE re-sends it with `scimsync relay resend` (`release`).
- `held`: kept back on purpose (the deprovisioning brake, store/holds.py). A feature that holds events sets
  `gate(conn, sequences, HELD, reason)` and later `release(conn, sequences, HELD)` or `set_aside(...)`.

The gate is defined here once (`gate_in_stream`), and everything that sends events honours it: the relay's claim,
`scimsync replay` (it skips gated events and those behind them, and counts them) and `reconcile --fix` (it
re-sends nothing of a gated stream). Anything else would let a held deactivation or a stream's later events
out before the gate opens.

The claim probes the partial index `events_gated` (only gated rows, so a handful) once per unpublished
event it reads: ready streams pay one lookup in an almost empty index. Events waiting behind a gate are read
and skipped by every claim until the gate opens, so a claim costs a little more per event held back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from service.domain.events import StoredEvent

CHANNEL = "scimsync_events"  # NOTIFY channel of 0002_outbox_notify.sql: a wake-up, no payload
RELAY_LOCK = 7_202_612  # arbitrary, constant: the advisory lock id of the active relay (migrations use 7_202_611)
SLEEP_LOCK = 7_202_613  # held by the relay only while it waits: writers NOTIFY only then (migration 0004)

# What every read of the log selects: the columns a StoredEvent is made of (`stored`).
EVENT_COLUMNS = "sequence, id, tenant_id, aggregate, subject, type, version, occurred_at, data, traceparent"

PARKED = "parked"
HELD = "held"


def is_gate(row: str = "events") -> str:
    """SQL, true when `row` is a gate: unpublished, with a state (the partial index `events_gated` holds these)."""
    return f"{row}.published_at IS NULL AND {row}.state IS NOT NULL"


def gate_in_stream(row: str, earlier: bool = False) -> str:
    """SQL, true when the stream of `row` (an alias with aggregate, tenant_id and subject) has a gate, or with
    `earlier` one before `row.sequence`. The one definition of a blocked stream."""
    before = f" AND gate.sequence < {row}.sequence" if earlier else ""
    return (
        f"EXISTS (SELECT 1 FROM events AS gate WHERE {is_gate('gate')} AND gate.aggregate = {row}.aggregate"
        f" AND gate.tenant_id = {row}.tenant_id AND gate.subject = {row}.subject{before})"
    )


# Ready to publish: unpublished, not a gate, and no gate earlier in its stream.
_READY = f"events.published_at IS NULL AND events.state IS NULL AND NOT {gate_in_stream('events', earlier=True)}"
# Kept back: a gate, or an unpublished event behind one.
_BLOCKED = f"events.published_at IS NULL AND (events.state IS NOT NULL OR {gate_in_stream('events', earlier=True)})"
_CLAIM = f"SELECT {EVENT_COLUMNS} FROM events WHERE {_READY} ORDER BY sequence LIMIT $1"
# Not EXISTS: the planner drops ORDER BY/LIMIT inside it and may then scan the whole table for a ready row.
_FIRST_READY = f"SELECT sequence FROM events WHERE {_READY} ORDER BY sequence LIMIT 1"

# Of the given (tenant, subject) pairs: the latest event of each, or every event of each, in log order.
_PAIRS = "aggregate = $1 AND (tenant_id, subject) IN (SELECT * FROM unnest($2::uuid[], $3::uuid[]))"
_LATEST = f"SELECT DISTINCT ON (subject) {EVENT_COLUMNS} FROM events WHERE {_PAIRS} ORDER BY subject, sequence DESC"
_HISTORIES = f"SELECT {EVENT_COLUMNS} FROM events WHERE {_PAIRS} ORDER BY subject, sequence"

_MARK = "UPDATE events SET published_at = now() WHERE sequence = ANY($1::bigint[]) AND published_at IS NULL"
# Of the given (tenant, subject) pairs: those whose stream has a gate.
_BLOCKED_PAIRS = f"""
SELECT s.subject FROM (
    SELECT $1::text AS aggregate, t AS tenant_id, u AS subject FROM unnest($2::uuid[], $3::uuid[]) AS p(t, u)
) AS s
WHERE {gate_in_stream("s")}
"""

# The oldest age is of what the relay may publish: a stream behind a gate waits on purpose (counted apart).
_LAG = f"""
SELECT
    (SELECT count(*) FROM events WHERE published_at IS NULL) AS unpublished,
    (SELECT greatest(0, extract(epoch FROM clock_timestamp() - occurred_at))::float8
       FROM events WHERE {_READY} ORDER BY sequence LIMIT 1) AS oldest_age,
    (SELECT count(*) FROM events WHERE {is_gate()} AND state = 'parked') AS parked,
    (SELECT count(*) FROM events WHERE {is_gate()} AND state = 'held') AS held,
    (SELECT greatest(0, extract(epoch FROM clock_timestamp() - min(state_since)))::float8
       FROM events WHERE {is_gate()} AND state = 'held') AS oldest_held_age
"""

_GATE = """
UPDATE events SET state = $2, state_reason = $3, state_since = now()
WHERE sequence = ANY($1::bigint[]) AND published_at IS NULL
"""
_RELEASE = f"""
UPDATE events SET state = NULL, state_reason = NULL, state_since = NULL
WHERE sequence = ANY($1::bigint[]) AND {is_gate()} AND state = $2
RETURNING sequence
"""
# Done without being sent: the gate's stream goes on after it; state and reason stay on the row, for the record.
_SET_ASIDE = f"""
UPDATE events SET published_at = now(), state_reason = state_reason || $3
WHERE sequence = ANY($1::bigint[]) AND {is_gate()} AND state = $2
RETURNING sequence
"""
# Each gate with how many later events of its stream wait behind it.
_GATED = f"""
SELECT g.sequence, g.tenant_id, g.aggregate, g.subject, g.type, g.version, g.state, g.state_reason, g.state_since,
       (SELECT count(*) FROM events AS w WHERE w.tenant_id = g.tenant_id AND w.subject = g.subject
            AND w.aggregate = g.aggregate AND w.sequence > g.sequence AND w.published_at IS NULL) AS waiting
FROM events AS g
WHERE {is_gate("g")} AND g.state = $1 AND ($2::uuid IS NULL OR g.tenant_id = $2)
    AND ($3::text IS NULL OR g.aggregate = $3) AND ($4::uuid[] IS NULL OR g.subject = ANY($4))
ORDER BY g.sequence
"""
# Of the given user events, those erased since they were read (their user was deleted meanwhile).
_ERASED = "SELECT sequence, data FROM events WHERE sequence = ANY($1::bigint[]) AND data ? 'erased'"

# Walks the primary key backwards from the newest event to the first published one.
_LAST_PUBLISHED = "SELECT sequence FROM events WHERE published_at IS NOT NULL ORDER BY sequence DESC LIMIT 1"


@dataclass(frozen=True)
class Lag:
    unpublished: int  # every unpublished event, gated or not
    oldest_age_seconds: float  # of the oldest event the relay may publish; 0 when none waits
    parked: int = 0
    held: int = 0
    oldest_held_age_seconds: float = 0.0  # how long the oldest hold (the deprovisioning brake) has waited


@dataclass(frozen=True)
class Gated:
    """A gate: an unpublished event that may not go out yet, and the later events of its stream it keeps back."""

    sequence: int
    tenant_id: str
    aggregate: str
    subject: str
    type: str
    version: int
    state: str
    reason: str | None
    since: datetime | None
    waiting: int  # later unpublished events of the same stream


async def try_lock_relay(conn: Any) -> bool:
    """Take the relay lock for this session, if no other session holds it. Closing the session releases it."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK))


async def try_fall_asleep(conn: Any) -> bool:
    """Take the sleeping lock; False while a writer that hasn't notified is still in flight."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", SLEEP_LOCK))


async def wake_up(conn: Any) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", SLEEP_LOCK)


async def claim_batch(conn: Any, limit: int) -> list[StoredEvent]:
    """Up to `limit` unpublished events of streams without a gate before them, oldest sequence first."""
    return [stored(row) for row in await conn.fetch(_CLAIM, limit)]


async def gate(conn: Any, sequences: list[int], state: str, reason: str) -> None:
    """Close the gate at these unpublished events: they and the later events of their streams wait."""
    await conn.execute(_GATE, sequences, state, reason)


async def release(conn: Any, sequences: list[int], state: str) -> list[int]:
    """Open the gates in `state` at these events (others are left alone); the sequences released."""
    return [row["sequence"] for row in await conn.fetch(_RELEASE, sequences, state)]


async def set_aside(conn: Any, sequences: list[int], state: str, note: str) -> list[int]:
    """Mark the gates in `state` at these events done without sending them (`note` is appended to the reason):
    their streams go on with the next event. The sequences set aside."""
    return [row["sequence"] for row in await conn.fetch(_SET_ASIDE, sequences, state, note)]


async def gated(
    conn: Any,
    state: str,
    tenant_id: str | uuid.UUID | None = None,
    aggregate: str | None = None,
    subjects: list[uuid.UUID] | None = None,
) -> list[Gated]:
    """The gates in `state`, oldest first: of one tenant, aggregate and some subjects if given."""
    tenant = uuid.UUID(tenant_id) if isinstance(tenant_id, str) else tenant_id
    rows = await conn.fetch(_GATED, state, tenant, aggregate, subjects)
    return [
        Gated(
            sequence=r["sequence"],
            tenant_id=str(r["tenant_id"]),
            aggregate=r["aggregate"],
            subject=str(r["subject"]),
            type=r["type"],
            version=r["version"],
            state=r["state"],
            reason=r["state_reason"],
            since=r["state_since"],
            waiting=r["waiting"],
        )
        for r in rows
    ]


async def record_outcome(conn: Any, published: list[int], parked: list[tuple[int, str]]) -> None:
    """After a batch: mark what Kafka took, park what it refused for good, in one transaction."""
    async with conn.transaction():
        if published:
            await mark_published(conn, published)
        for sequence, reason in parked:
            await gate(conn, [sequence], PARKED, reason)


async def erase_deleted(conn: Any, batch: list[StoredEvent]) -> list[StoredEvent]:
    """The batch with the personal data of users deleted since it was read erased, as the log now has it.

    Deleting a user erases its earlier events in the log (store/users.py), but a batch read before that (and
    held, e.g. through a Kafka outage) still carries the data: the relay asks again before each re-send.
    """
    candidates = [
        e.sequence
        for e in batch
        if e.aggregate == "user"
        and e.type != "user.deleted"
        and not (isinstance(e.data, dict) and e.data.get("erased"))
    ]
    if not candidates:
        return batch
    erased = {row["sequence"]: row["data"] for row in await conn.fetch(_ERASED, candidates)}
    if not erased:
        return batch
    return [replace(e, data=erased[e.sequence]) if e.sequence in erased else e for e in batch]


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
        traceparent=row["traceparent"],
    )


async def has_ready(conn: Any) -> bool:
    """Is there an event the relay may publish (events behind a gate don't count: they wait for a human)?"""
    return await conn.fetchval(_FIRST_READY) is not None


async def mark_published(conn: Any, sequences: list[int]) -> int:
    """Mark events published, in one statement; returns how many were still unmarked."""
    status: str = await conn.execute(_MARK, sequences)
    return int(status.rsplit(" ", 1)[-1])


async def lag(db: Any) -> Lag:
    """How far the relay is behind: unpublished events and the age of the oldest. `db`: a pool or a connection."""
    row = await db.fetchrow(_LAG)
    return Lag(
        unpublished=row["unpublished"],
        oldest_age_seconds=row["oldest_age"] or 0.0,
        parked=row["parked"],
        held=row["held"],
        oldest_held_age_seconds=row["oldest_held_age"] or 0.0,
    )


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


async def count_selected(conn: Any, selection: Selection, blocked: bool = False) -> int:
    """How many selected events may be re-sent (with `blocked`: how many are kept back by a gate instead)."""
    params: list[object] = []
    sql = f"SELECT count(*) FROM events WHERE {selection.where(params)} AND {'' if blocked else 'NOT '}({_BLOCKED})"
    return int(await conn.fetchval(sql, *params))


async def read_selected(conn: Any, selection: Selection, after_sequence: int, limit: int) -> list[StoredEvent]:
    """The next `limit` selected events after `after_sequence`, in sequence order (keyset paging), without those
    a gate keeps back: a replay must not send a held event, nor a stream's events past a gate."""
    params: list[object] = [after_sequence, limit]
    where = selection.where(params)
    rows = await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE sequence > $1 AND {where} AND NOT ({_BLOCKED})"
        " ORDER BY sequence LIMIT $2",
        *params,
    )
    return [stored(row) for row in rows]


async def blocked_subjects(conn: Any, aggregate: str, pairs: list[tuple[str, str]]) -> set[str]:
    """Of the given (tenant id, subject id): the subjects whose stream has a gate."""
    return {str(row["subject"]) for row in await conn.fetch(_BLOCKED_PAIRS, aggregate, *_pairs(pairs))}


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
