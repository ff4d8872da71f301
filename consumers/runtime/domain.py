"""What a domain gives the runtime: its name, its schema.sql, and one stream per topic it consumes.

A stream is a topic (named by its setting: `user_topic`, `group_topic`), the table that is its version gate,
the envelope attribute that carries the entity's version (`userversion`, `groupversion`), and the handlers.
Each topic has its own gate, since versions count per entity of one kind; topics are not ordered relative to
each other, so a domain's handlers must not assume that one topic's events arrive before another's.

The version gate. An event is applied iff its version is newer than the one stored for its entity, in the same
transaction as its effect; the stored version moves to the event's. Duplicates and replays are then skipped.

Repair events. A record with the Kafka header `scimsync_repair: 1` (what `scimsync reconcile --fix` publishes:
the entity's latest event, re-sent) is applied also when its version *equals* the stored one; an older version is
still skipped. So every handler must be idempotent for the latest event: applying it twice leaves the same state
as applying it once (upserts and "set to" updates are; booking's deactivation and deletion cancel the future
confirmed bookings again, of which there are none the second time, or only ones that shouldn't exist).

Repairing a history. Group events are changes, not snapshots, so re-sending the latest one can't repair a team.
`reconcile --fix` then re-sends the entity's whole history with `scimsync_repair: 1` and
`scimsync_repair_through: N` (its latest version). Its first event (version 1) resets the entity through the
stream's `reset` handler, unless the domain already holds a version newer than N (live events since: leave them;
reconcile again later); the following events then apply as newer ones.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumers.runtime import gaps
from consumers.runtime.envelope import Event

# A handler applies one event inside the transaction the runtime opened (after the version gate let it through).
Handler = Callable[[Any, Event], Awaitable[None]]
REPAIR_HEADER = "scimsync_repair"
USER_CHANGES = ("user.created", "user.updated", "user.deactivated", "user.reactivated")  # each carries the whole user
REPAIR_THROUGH_HEADER = "scimsync_repair_through"
_TABLE = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
TOPIC_SETTINGS = ("user_topic", "group_topic")  # the ConsumerSettings attributes a stream may name


@dataclass(frozen=True)
class Stream:
    """One topic of a domain: its version gate and its handlers."""

    versions_table: str  # schema.table with (tenant_id uuid, <id_column> uuid, version bigint), PK (tenant_id, id)
    handlers: Mapping[str, Handler]
    version_attribute: str = "userversion"  # the envelope attribute holding the entity's version
    id_column: str = "user_id"  # the versions table's entity column (the event's `subject`)
    # Every event carries the entity's whole state (user events do; group events carry changes). A rebuild then
    # needs only each entity's last event, and must not re-apply older ones to data the domain keeps (bookings).
    snapshots: bool = True
    # Clears the entity from the projection before its history is re-applied (a repair, see above).
    reset: Handler | None = None
    # A delta stream (snapshots=False) applies each entity's versions strictly in order: an event past a gap waits
    # in this table (schema.table, see runtime/gaps.py and workspace/schema.sql) until the missing one arrives.
    held_table: str | None = None

    def __post_init__(self) -> None:
        if not _TABLE.match(self.versions_table):
            raise ValueError(f"versions_table must be schema.table, got {self.versions_table!r}")
        if not _NAME.match(self.id_column) or not _NAME.match(self.version_attribute):
            raise ValueError("id_column and version_attribute must be plain names")
        if self.snapshots != (self.held_table is None):
            raise ValueError("a delta stream (snapshots=False) needs a held_table, a snapshot stream has none")
        if self.held_table is not None and not _TABLE.match(self.held_table):
            raise ValueError(f"held_table must be schema.table, got {self.held_table!r}")

    @property
    def advance_sql(self) -> str:
        """Move the entity's stored version to the event's, only forwards (or onto itself for a repair, `$4`).

        A row comes back iff the event is to be applied. The upsert also takes the row lock, so everything else
        touching this entity waits for our commit.
        """
        return (
            f"INSERT INTO {self.versions_table} AS v (tenant_id, {self.id_column}, version) VALUES ($1, $2, $3) "
            f"ON CONFLICT (tenant_id, {self.id_column}) DO UPDATE SET version = EXCLUDED.version "
            "WHERE v.version < EXCLUDED.version OR ($4 AND v.version = EXCLUDED.version) RETURNING v.version"
        )


@dataclass(frozen=True)
class Domain:
    name: str  # also the consumer group (after the optional prefix)
    schema_sql: Path
    streams: Mapping[str, Stream]  # topic setting (`user_topic`, `group_topic`) -> stream
    # What `scimsync rebuild` clears: the tables derived from the events only. Anything else in the domain's
    # schema is the domain's own data and is kept.
    projection: tuple[str, ...] = field(default=())
    # schema.table (group_id text PK, started_at): set while `scimsync rebuild` has cleared the projection and not
    # finished; the consumer waits for it to go (consumers/rebuild.py). None: the domain can't be rebuilt safely.
    rebuild_marker: str | None = None

    def __post_init__(self) -> None:
        unknown = [name for name in self.streams if name not in TOPIC_SETTINGS]
        if unknown or not self.streams:
            raise ValueError(f"streams must name topic settings {TOPIC_SETTINGS}, got {sorted(self.streams)}")
        if not all(_TABLE.match(t) for t in self.projection):
            raise ValueError(f"projection tables must be schema.table, got {self.projection!r}")
        if self.rebuild_marker is not None and not _TABLE.match(self.rebuild_marker):
            raise ValueError(f"rebuild_marker must be schema.table, got {self.rebuild_marker!r}")

    @property
    def handled_types(self) -> list[str]:
        return sorted({t for stream in self.streams.values() for t in stream.handlers})


async def advance_version(conn: Any, stream: Stream, event: Event) -> str:
    """`gaps.APPLY` when the event is to be applied (the gate has moved), `gaps.DUPLICATE`, or (delta streams only)
    `gaps.GAP`: versions are missing before it, it must wait (runtime/gaps.py)."""
    if event.repair and event.repair_through is not None and event.version == 1 and stream.reset is not None:
        key = f"tenant_id = $1 AND {stream.id_column} = $2"
        stored = await conn.fetchval(
            f"SELECT version FROM {stream.versions_table} WHERE {key} FOR UPDATE", event.tenant_id, event.subject
        )
        if stored is not None and stored > event.repair_through:
            return gaps.DUPLICATE  # newer than the history being re-sent: don't rewind it
        await conn.execute(f"DELETE FROM {stream.versions_table} WHERE {key}", event.tenant_id, event.subject)
        await stream.reset(conn, event)
    if stream.held_table is not None:
        return await gaps.admit(conn, stream.versions_table, stream.id_column, event)
    row = await conn.fetchval(stream.advance_sql, event.tenant_id, event.subject, event.version, event.repair)
    return gaps.APPLY if row is not None else gaps.DUPLICATE


def user_handlers(changed: Handler, deleted: Handler) -> dict[str, Handler]:
    """The handler table of a domain that keeps users: every change is a snapshot to apply; deletion is apart."""
    return {**dict.fromkeys(USER_CHANGES, changed), "user.deleted": deleted}
