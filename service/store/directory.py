"""What the admin console reads about one tenant's people and groups, and how far the pipeline has carried them.

The consumers' version gates (booking.users, workspace.versions, workspace.group_versions) live in the same
database: an event is applied by a consumer once its gate holds that version or a later one. Until a consumer
has started once its tables don't exist; that reads as "nothing applied yet".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from service.store import outbox

_EMAILS = "CASE WHEN jsonb_typeof(resource->'emails') = 'array' THEN resource->'emails' ELSE '[]' END"
_USERS = f"""
SELECT id, user_name, active, updated_at,
       (SELECT e->>'value' FROM jsonb_array_elements({_EMAILS}) e
        ORDER BY lower(e->>'primary') = 'true' DESC NULLS LAST LIMIT 1) AS email
FROM users
WHERE tenant_id = $1
  AND ($2 = '' OR lower(user_name) LIKE $2 ESCAPE '\\'
       OR EXISTS (SELECT 1 FROM jsonb_array_elements({_EMAILS}) e WHERE lower(e->>'value') LIKE $2 ESCAPE '\\'))
  AND ($3::boolean IS NULL OR active = $3)
ORDER BY updated_at DESC, id LIMIT $4
"""
_DELETED = """
SELECT subject AS id, occurred_at FROM events
WHERE tenant_id = $1 AND aggregate = 'user' AND type = 'user.deleted' AND ($2 = '' OR subject::text LIKE $2)
ORDER BY sequence DESC LIMIT $3
"""
_BEHIND = """
SELECT count(*) AS events, min(e.published_at) AS oldest
FROM events e LEFT JOIN {gate} g ON g.tenant_id = e.tenant_id AND g.{key} = e.subject
WHERE e.tenant_id = $1 AND e.aggregate = $2 AND e.published_at IS NOT NULL
  AND (g.version IS NULL OR g.version < e.version)
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
class Health:
    last_published_at: datetime | None
    tenant_unpublished: int
    relay: outbox.Lag
    consumers: dict[str, Backlog]


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%" if escaped else ""


async def users(conn: Any, tenant_id: str, query: str, state: str, limit: int = 50) -> list[UserRow]:
    key = uuid.UUID(tenant_id)
    if state == "deleted":
        rows = await conn.fetch(_DELETED, key, _like(query), limit)
        return [UserRow(str(r["id"]), None, None, "deleted", r["occurred_at"]) for r in rows]
    active = {"active": True, "deactivated": False}.get(state)
    rows = await conn.fetch(_USERS, key, _like(query), active, limit)
    return [
        UserRow(str(r["id"]), r["user_name"], r["email"], "active" if r["active"] else "deactivated", r["updated_at"])
        for r in rows
    ]


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


async def groups(conn: Any, tenant_id: str, limit: int = 500) -> list[GroupRow]:
    rows = await conn.fetch(
        "SELECT g.id, g.display_name, g.updated_at,"
        " (SELECT count(*) FROM group_members m WHERE m.tenant_id = g.tenant_id AND m.group_id = g.id) AS members"
        " FROM groups g WHERE g.tenant_id = $1 ORDER BY lower(g.display_name) LIMIT $2",
        uuid.UUID(tenant_id),
        limit,
    )
    return [GroupRow(str(r["id"]), r["display_name"], r["members"], r["updated_at"]) for r in rows]


async def health(conn: Any, tenant_id: str) -> Health:
    key = uuid.UUID(tenant_id)
    last = await conn.fetchval("SELECT max(published_at) FROM events WHERE tenant_id = $1", key)
    waiting = await conn.fetchval("SELECT count(*) FROM events WHERE published_at IS NULL AND tenant_id = $1", key)
    consumers: dict[str, Backlog] = {}
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
        consumers[consumer] = Backlog(total, oldest, started)
    return Health(last, waiting, await outbox.lag(conn), consumers)


def _json(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
