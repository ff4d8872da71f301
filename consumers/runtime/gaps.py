"""Delta streams never step over a gap: an event past a missing version waits, and its entity's stream is held.

A snapshot stream (users: every event carries the whole user) may skip versions: the newest event is the whole
truth. A delta stream (groups: `group.membership_changed` carries only who was added and removed) may not: a team
that misses version 5 and applies 6 is wrong for good, and the missing 5, re-sent later, would be skipped as
older than the stored 6. So on a delta stream an event is applied only when its version is the stored one + 1
(1 for an entity not seen yet):

- an older or equal version is a duplicate and is skipped, as on every stream (a repair event at the stored
  version is re-applied, runtime/domain.py);
- a newer one past a gap (say the event before it went to the DLQ) is **held**: stored in the stream's
  `held_table` with the record as received, its Kafka offset committed like any other, and the entity's stream
  is held: every later event of the entity waits there too. Other entities, in the same partition or not, keep
  flowing. The consumer logs `consumer.stream_held` (once per entity, with the missing versions) and counts it
  (`scimsync_consumer_held_total`, the gauge `scimsync_consumer_held_streams`);
- when the missing version arrives (fixed and re-sent from the DLQ, `scimsync replay --user`, or the entity's
  whole history from `scimsync reconcile --fix`), it is applied and then, in the same transaction, every held
  event that now follows in order (`consumer.stream_released`). Held events the stream has caught up with
  (duplicates) are dropped then.

Unknown event types of a delta stream still take their place in the order (they move the version without an
effect), or every later event of the entity would wait behind them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consumers.runtime.envelope import Event, decode
from consumers.runtime.schemas import SchemaRegistry

APPLY, DUPLICATE, GAP = "apply", "duplicate", "gap"


@dataclass(frozen=True)
class Held:
    """What a held stream looks like from outside (the metrics gauges)."""

    streams: int  # entities with at least one held event
    events: int
    oldest_age_seconds: float


def _key(id_column: str) -> str:
    return f"tenant_id = $1 AND {id_column} = $2"


async def admit(conn: Any, versions_table: str, id_column: str, event: Event) -> str:
    """The delta gate: APPLY (and the stored version moved to the event's), DUPLICATE, or GAP. Locks the row."""
    stored = await conn.fetchval(
        f"SELECT version FROM {versions_table} WHERE {_key(id_column)} FOR UPDATE", event.tenant_id, event.subject
    )
    have = stored or 0
    if event.version < have or (event.version == have and not event.repair):
        return DUPLICATE
    if event.version > have + 1:
        return GAP
    if event.version > have:
        await conn.execute(
            f"INSERT INTO {versions_table} (tenant_id, {id_column}, version) VALUES ($1, $2, $3) "
            f"ON CONFLICT (tenant_id, {id_column}) DO UPDATE SET version = EXCLUDED.version",
            event.tenant_id,
            event.subject,
            event.version,
        )
    return APPLY


async def hold(conn: Any, held_table: str, id_column: str, event: Event, record: Any) -> bool:
    """Keep an event that arrived past a gap; True when it is the first one its entity holds (newly held)."""
    first: bool = await conn.fetchval(
        f"""
        WITH before AS (SELECT count(*) AS n FROM {held_table} WHERE {_key(id_column)}),
        kept AS (
            INSERT INTO {held_table}
                (tenant_id, {id_column}, version, value, repair, repair_through, topic, partition, "offset")
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT DO NOTHING
        )
        SELECT n = 0 FROM before
        """,
        event.tenant_id,
        event.subject,
        event.version,
        record.value,
        event.repair,
        event.repair_through,
        record.topic,
        record.partition,
        record.offset,
    )
    return first


async def stored_version(conn: Any, versions_table: str, id_column: str, event: Event) -> int:
    value = await conn.fetchval(
        f"SELECT version FROM {versions_table} WHERE {_key(id_column)}", event.tenant_id, event.subject
    )
    return int(value or 0)


async def next_held(
    conn: Any, held_table: str, id_column: str, event: Event, version: int, registry: SchemaRegistry, attribute: str
) -> Event | None:
    """The held event that follows `version` of `event`'s entity, taken out of the table; held duplicates dropped."""
    rows = await conn.fetch(
        f"DELETE FROM {held_table} WHERE {_key(id_column)} AND version <= $3 "
        "RETURNING version, value, repair, repair_through",
        event.tenant_id,
        event.subject,
        version + 1,
    )
    for row in rows:
        if row["version"] == version + 1:
            return decode(bytes(row["value"]), registry, attribute, row["repair"], row["repair_through"])
    return None


async def still_held(conn: Any, held_table: str, id_column: str, event: Event) -> int:
    """How many events of the entity still wait (past a further gap)."""
    return int(
        await conn.fetchval(
            f"SELECT count(*) FROM {held_table} WHERE {_key(id_column)}", event.tenant_id, event.subject
        )
    )


async def measure(db: Any, held_table: str, id_column: str) -> Held:
    row = await db.fetchrow(
        f"SELECT count(DISTINCT (tenant_id, {id_column})) AS streams, count(*) AS events, "
        "coalesce(extract(epoch FROM now() - min(held_at)), 0)::float8 AS age "
        f"FROM {held_table}"
    )
    return Held(streams=row["streams"], events=row["events"], oldest_age_seconds=row["age"])
