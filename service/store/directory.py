"""What the admin console reads about one tenant's people and groups, and how far the pipeline has carried them.

The consumers' version gates (booking.users, workspace.versions, workspace.group_versions) live in the same
database: an event is applied by a consumer once its gate holds that version or a later one. Until a consumer
has started once its tables don't exist; that reads as "nothing applied yet".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import asyncpg

from service.store import keyset, outbox

_EMAILS = "CASE WHEN jsonb_typeof(resource->'emails') = 'array' THEN resource->'emails' ELSE '[]' END"
_USER_COLUMNS = f"""id, user_name, active, updated_at,
       (SELECT e->>'value' FROM jsonb_array_elements({_EMAILS}) e
        ORDER BY lower(e->>'primary') = 'true' DESC NULLS LAST LIMIT 1) AS email"""
# Users by lower(userName) (unique per tenant: index users_tenant_user_name). Unfiltered, the total is user_blocks'
# exact sum.
_ALL_USERS = keyset.Listing(
    select=_USER_COLUMNS,
    source="FROM users",
    tenant="tenant_id = $1",
    key="lower(user_name)",
    id_column="id",
    total="SELECT coalesce(sum(n), 0)::bigint FROM user_blocks WHERE tenant_id = $1",
)
_USERS_IN_STATE = keyset.Listing(
    select=_USER_COLUMNS,
    source="FROM users",
    tenant="tenant_id = $1",
    key="lower(user_name)",
    id_column="id",
    where="active = $2",
)
# A search: $2 is a LIKE pattern (`%text%`, lower-cased, backslash escapes: LIKE's default), $3 active or not, or
# NULL for both. Each arm of the OR is served by a trigram index (migration 0014): a selective search reads only
# its matches; one that matches most of the tenant is read along the userName index instead (the planner picks,
# from the pattern itself: keyset.Listing.custom_plans). scim_emails_text joins the emails, so the exact test per
# email stays; it comes first because on the userName index's path both are tested on every row, and it is the
# cheaper (an AND's arms are tested in the order written; the bitmap path takes the index arm from it all the same).
USERS_SEARCH = keyset.Listing(
    select=_USER_COLUMNS,
    source="FROM users",
    tenant="tenant_id = $1",
    where=f"""(lower(user_name) LIKE $2
       OR (EXISTS (SELECT 1 FROM jsonb_array_elements({_EMAILS}) e WHERE lower(e->>'value') LIKE $2)
           AND scim_emails_text(resource) LIKE $2))
  AND ($3::boolean IS NULL OR active = $3)""",
    key="lower(user_name)",
    id_column="id",
    custom_plans=True,
)
# Deleted people: their user.deleted events (partial index events_deprovisioning), most recent first.
_DELETED = keyset.Listing(
    select="subject AS id, occurred_at",
    source="FROM events",
    tenant="tenant_id = $1 AND aggregate = 'user' AND type = 'user.deleted'",
    where="$2 = '' OR subject::text LIKE $2",
    key="sequence",
    id_column="subject",
    descending=True,
)
_GROUPS = keyset.Listing(
    select="id, display_name, updated_at,"
    " (SELECT count(*) FROM group_members m WHERE m.tenant_id = g.tenant_id AND m.group_id = g.id) AS members",
    source="FROM groups g",
    tenant="g.tenant_id = $1",
    key="lower(display_name)",
    id_column="id",
)
_BEHIND = """
SELECT count(*) AS events, min(e.published_at) AS oldest
FROM events e LEFT JOIN {gate} g ON g.tenant_id = e.tenant_id AND g.{key} = e.subject
WHERE e.tenant_id = $1 AND e.aggregate = $2 AND e.published_at IS NOT NULL
  AND (g.version IS NULL OR g.version < e.version)
"""
# The oldest of them published before $3: a service that refused an event (dead-lettered it) or is stopped.
_STUCK = """
SELECT e.aggregate, e.type, e.subject, e.version, e.published_at
FROM events e LEFT JOIN {gate} g ON g.tenant_id = e.tenant_id AND g.{key} = e.subject
WHERE e.tenant_id = $1 AND e.aggregate = $2 AND e.published_at < $3
  AND (g.version IS NULL OR g.version < e.version)
ORDER BY e.sequence LIMIT $4
"""
# Which consumer applies which stream, through which version gate.
GATES = {
    "booking": [("user", "booking.users", "user_id")],
    "workspace": [("user", "workspace.versions", "user_id"), ("group", "workspace.group_versions", "group_id")],
}


@dataclass(frozen=True)
class UserRow:
    id: str
    user_name: str | None  # None for a deleted person: their data is erased
    email: str | None
    state: str  # active | deactivated | deleted
    changed_at: datetime


@dataclass(frozen=True)
class Event:
    sequence: int
    type: str
    version: int
    occurred_at: datetime
    published_at: datetime | None
    data: dict[str, Any]


@dataclass(frozen=True)
class Gate:
    """A consumer's version gate for one user: the last version it applied, and when (if it records that)."""

    version: int | None
    applied_at: datetime | None


@dataclass(frozen=True)
class GroupRow:
    id: str
    name: str
    members: int
    changed_at: datetime


@dataclass(frozen=True)
class Backlog:
    events: int  # published, not yet applied
    oldest_published_at: datetime | None
    started: bool  # False: the consumer has never run against this database


@dataclass(frozen=True)
class StuckEvent:
    """A published event a consumer has not applied long after: what the admin can look up (never its data)."""

    consumer: str
    aggregate: str  # user | group
    type: str
    subject: str
    version: int
    published_at: datetime


@dataclass(frozen=True)
class Health:
    last_published_at: datetime | None
    tenant_unpublished: int
    relay: outbox.Lag
    consumers: dict[str, Backlog]
    stuck: list[StuckEvent]  # the oldest few per consumer, published before `stuck_before`


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%" if escaped else ""


Row = TypeVar("Row")


@dataclass(frozen=True)
class Page(Generic[Row]):
    """One page of a list: its rows, how many matches come before them and in all (see keyset.Page)."""

    rows: list[Row]
    start: int
    total: int
    total_capped: bool
    previous: str | None  # the id Previous pages before
    next: str | None  # the id Next pages after
    lost: bool  # the id asked for is not in this list (deleted since, or never ours): this is the first page


Anchor = tuple[keyset.Direction, uuid.UUID] | None
PAGE_SIZE = 50


def _page(found: keyset.Page, rows: list[Row]) -> Page[Row]:
    return Page(rows, found.start, found.total, found.total_capped, found.previous, found.next, found.lost)


async def users(conn: Any, tenant_id: str, query: str, state: str, anchor: Anchor = None) -> Page[UserRow]:
    key = uuid.UUID(tenant_id)
    if state == "deleted":
        found = await keyset.page(conn, _DELETED, [key, _like(query)], anchor, PAGE_SIZE)
        return _page(found, [UserRow(str(r["id"]), None, None, "deleted", r["occurred_at"]) for r in found.rows])
    active = {"active": True, "deactivated": False}.get(state)
    if query:
        found = await keyset.page(conn, USERS_SEARCH, [key, _like(query), active], anchor, PAGE_SIZE)
    elif active is not None:
        found = await keyset.page(conn, _USERS_IN_STATE, [key, active], anchor, PAGE_SIZE)
    else:
        found = await keyset.page(conn, _ALL_USERS, [key], anchor, PAGE_SIZE)
    rows = [
        UserRow(str(r["id"]), r["user_name"], r["email"], "active" if r["active"] else "deactivated", r["updated_at"])
        for r in found.rows
    ]
    return _page(found, rows)


async def user(conn: Any, tenant_id: str, user_id: str) -> UserRow | None:
    row = await conn.fetchrow(
        "SELECT id, user_name, active, updated_at FROM users WHERE tenant_id = $1 AND id = $2",
        uuid.UUID(tenant_id),
        uuid.UUID(user_id),
    )
    if row is None:
        return None
    return UserRow(
        str(row["id"]), row["user_name"], None, "active" if row["active"] else "deactivated", row["updated_at"]
    )


async def timeline(conn: Any, tenant_id: str, user_id: str) -> list[Event]:
    rows = await conn.fetch(
        "SELECT sequence, type, version, occurred_at, published_at, data FROM events"
        " WHERE tenant_id = $1 AND aggregate = 'user' AND subject = $2 ORDER BY sequence",
        uuid.UUID(tenant_id),
        uuid.UUID(user_id),
    )
    return [Event(**{**dict(r), "data": _json(r["data"])}) for r in rows]


async def gates(conn: Any, tenant_id: str, user_id: str) -> dict[str, Gate]:
    """booking records when it applied (booking.users.updated_at); workspace records only the version."""
    key = (uuid.UUID(tenant_id), uuid.UUID(user_id))
    out: dict[str, Gate] = {}
    queries = {
        "booking": "SELECT version, updated_at AS applied_at FROM booking.users WHERE tenant_id = $1 AND user_id = $2",
        "workspace": "SELECT version, NULL::timestamptz AS applied_at FROM workspace.versions"
        " WHERE tenant_id = $1 AND user_id = $2",
    }
    for consumer, sql in queries.items():
        try:
            row = await conn.fetchrow(sql, *key)
        except asyncpg.UndefinedTableError:
            row = None
        out[consumer] = Gate(row["version"], row["applied_at"]) if row else Gate(None, None)
    return out


async def groups(conn: Any, tenant_id: str, anchor: Anchor = None) -> Page[GroupRow]:
    found = await keyset.page(conn, _GROUPS, [uuid.UUID(tenant_id)], anchor, PAGE_SIZE)
    rows = [GroupRow(str(r["id"]), r["display_name"], r["members"], r["updated_at"]) for r in found.rows]
    return _page(found, rows)


async def health(conn: Any, tenant_id: str, stuck_before: datetime, shown: int = 10) -> Health:
    key = uuid.UUID(tenant_id)
    last = await conn.fetchval("SELECT max(published_at) FROM events WHERE tenant_id = $1", key)
    waiting = await conn.fetchval("SELECT count(*) FROM events WHERE published_at IS NULL AND tenant_id = $1", key)
    consumers: dict[str, Backlog] = {}
    stuck: list[StuckEvent] = []
    for consumer, streams in GATES.items():
        total, oldest, started = 0, None, True
        for aggregate, gate, column in streams:
            try:
                row = await conn.fetchrow(_BEHIND.format(gate=gate, key=column), key, aggregate)
            except asyncpg.UndefinedTableError:
                started = False
                continue
            total += row["events"]
            if row["oldest"] is not None and (oldest is None or row["oldest"] < oldest):
                oldest = row["oldest"]
            if row["oldest"] is not None and row["oldest"] < stuck_before:
                found = await conn.fetch(_STUCK.format(gate=gate, key=column), key, aggregate, stuck_before, shown)
                stuck += [StuckEvent(consumer, **{**dict(r), "subject": str(r["subject"])}) for r in found]
        consumers[consumer] = Backlog(total, oldest, started)
    return Health(last, waiting, await outbox.lag(conn), consumers, stuck)


def _json(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
