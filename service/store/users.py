"""Users in Postgres. Every write commits the user row and its event (the outbox row) together.

Creates and deletes are one statement each (`WITH … INSERT INTO events`): one round trip, atomic.
Updates read the row, let the domain compute the new state, and write row and event in one statement if the
version is still the one read (optimistic; a deactivation locks the row for the deprovisioning brake).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from service.domain import users as domain
from service.domain.errors import NotFound, Uniqueness
from service.domain.filter import Expr
from service.domain.limits import check_resource_size
from service.domain.schema import AttrRef
from service.domain.users import UserRecord
from service.domain.versions import check_version
from service.store import holds, leaving
from service.store.filter_sql import USER_COLUMNS
from service.store.ids import resource_id
from service.store.paging import fetch_page
from service.tracing import OutboxWrite

_COLUMNS = "id, resource, version, created_at, updated_at"
_GET = f"SELECT {_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2"
_LOCK = f"{_GET} FOR UPDATE"

_CREATE = """
WITH u AS (
    INSERT INTO users (tenant_id, id, user_name, external_id, active, version, resource, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $7)
    RETURNING id
)
INSERT INTO events (id, tenant_id, aggregate, subject, type, version, occurred_at, data, traceparent)
SELECT $8, $1, 'user', u.id, 'user.created', 1, $7, $9, $10 FROM u
"""

_UPDATE = """
WITH u AS (
    UPDATE users SET user_name = $3, external_id = $4, active = $5, resource = $6, version = $7, updated_at = $8
    WHERE tenant_id = $1 AND id = $2 AND version = $7 - 1
    RETURNING id
)
INSERT INTO events (id, tenant_id, aggregate, subject, type, version, occurred_at, data, traceparent)
SELECT $9, $1, 'user', u.id, $10, $7, $8, $11, $12 FROM u
"""

# Right to erasure: once a user is deleted, its earlier events keep only what isn't personal (ids, types,
# versions, times), so no replay can bring the data back. Unpublished ones go out erased too.
_ERASE = """
UPDATE events SET data = jsonb_build_object('id', subject::text, 'erased', true)
WHERE tenant_id = $1 AND aggregate = 'user' AND subject = $2 AND type <> 'user.deleted'
    AND NOT (data ? 'erased')
"""

_DELETE = """
WITH u AS (
    DELETE FROM users WHERE tenant_id = $1 AND id = $2 RETURNING id, version
)
INSERT INTO events (id, tenant_id, aggregate, subject, type, version, occurred_at, data, traceparent)
SELECT $3, $1, 'user', u.id, 'user.deleted', u.version + 1, $4, jsonb_build_object('id', u.id::text), $5 FROM u
"""


@dataclass(frozen=True)
class Page:
    total: int
    users: list[UserRecord]


def _record(row: Any) -> UserRecord:
    return UserRecord(
        id=str(row["id"]),
        resource=row["resource"],
        version=row["version"],
        created=row["created_at"],
        last_modified=row["updated_at"],
    )


def _uniqueness(resource: dict[str, Any]) -> Uniqueness:
    # Never echo the userName back into logs; the client knows what it sent.
    return Uniqueness("userName is already taken in this tenant")


# The columns of a new user's row, in `row`'s order (bulk loads COPY them: see bench/million.py).
ROW_COLUMNS = (
    "tenant_id",
    "id",
    "user_name",
    "external_id",
    "active",
    "version",
    "resource",
    "created_at",
    "updated_at",
)


def row(tenant: uuid.UUID, user_id: uuid.UUID, resource: dict[str, Any], now: datetime) -> tuple[Any, ...]:
    """A new user's row (ROW_COLUMNS), exactly as `create` writes it."""
    return (
        tenant,
        user_id,
        resource["userName"],
        resource.get("externalId"),
        domain.is_active(resource),
        1,
        resource,
        now,
        now,
    )


async def create(pool: asyncpg.Pool, tenant_id: str, resource: dict[str, Any]) -> UserRecord:
    check_resource_size("User", len(orjson.dumps(resource)))
    user_id, now = uuid.uuid4(), datetime.now(UTC)
    tenant, _, user_name, external_id, active, _, _, _, _ = row(uuid.UUID(tenant_id), user_id, resource, now)
    try:
        with OutboxWrite("user", str(user_id)) as write:
            write.event(domain.CREATED, 1)
            await pool.execute(
                _CREATE,
                tenant,
                user_id,
                user_name,
                external_id,
                active,
                resource,
                now,
                uuid.uuid4(),
                domain.event_data(str(user_id), resource),
                write.traceparent,
            )
    except asyncpg.UniqueViolationError:
        raise _uniqueness(resource) from None
    return UserRecord(id=str(user_id), resource=resource, version=1, created=now, last_modified=now)


async def get(pool: asyncpg.Pool, tenant_id: str, user_id: str) -> UserRecord:
    row = await pool.fetchrow(
        _GET,
        uuid.UUID(tenant_id),
        resource_id(user_id, "User"),
    )
    if row is None:
        raise NotFound(f"User {user_id} not found")
    return _record(row)


async def search(
    pool: asyncpg.Pool,
    tenant_id: str,
    expr: Expr | None,
    sort: tuple[AttrRef, bool] | None,
    start: int,
    count: int,
) -> Page:
    """One page in a stable order (the sort key, then creation order); `start` is 1-based."""
    total, rows = await fetch_page(pool, "users", USER_COLUMNS, _COLUMNS, tenant_id, expr, sort, start, count)
    return Page(total, [_record(r) for r in rows])


# An optimistic write that finds the user changed since it was read reads again, at most this often; then it locks.
_OPTIMISTIC_TRIES = 3


async def update(
    pool: asyncpg.Pool,
    tenant_id: str,
    user_id: str,
    change: Callable[[UserRecord], dict[str, Any]],
    if_match: str | None = None,
) -> UserRecord:
    """Compute the user's new state with `change` and write it with its event.

    A change that changes nothing writes nothing: no new version, no event. Optimistic, because nearly every
    write to a user is the only one in flight: read the row, compute, then one statement writes row and event only
    if the version is still the one read (two round trips, no explicit transaction, instead of BEGIN, SELECT …
    FOR UPDATE, UPDATE, COMMIT). A writer that got there first makes us read again. A deactivation takes the
    locked path: the deprovisioning brake counts it in the same transaction.
    """
    tenant, key = uuid.UUID(tenant_id), resource_id(user_id, "User")
    for _ in range(_OPTIMISTIC_TRIES):
        current, after, kind = _changed(
            await pool.fetchrow(_GET, tenant, key),
            user_id,
            change,
            if_match,
        )
        if kind is None:
            return current
        if kind == domain.DEACTIVATED:
            break
        written = await _write(pool, tenant, key, current, after, kind)
        if written is not None:
            return written[0]
    async with pool.acquire() as conn, conn.transaction():
        current, after, kind = _changed(
            await conn.fetchrow(_LOCK, tenant, key),
            user_id,
            change,
            if_match,
        )
        if kind is None:
            return current
        written = await _write(conn, tenant, key, current, after, kind)
        assert written is not None  # the row is locked: its version is still the one read
        user, event_id = written
        if kind == domain.DEACTIVATED:
            await holds.after_deprovisioning(conn, tenant, event_id, user.last_modified)
        return user


def _changed(
    row: Any, user_id: str, change: Callable[[UserRecord], dict[str, Any]], if_match: str | None
) -> tuple[UserRecord, dict[str, Any], str | None]:
    """The user as read, its state after `change`, and the event that makes (None: nothing changes)."""
    if row is None:
        raise NotFound(f"User {user_id} not found")
    current = _record(row)
    check_version(current.version, if_match)
    after = change(current)
    return current, after, domain.event_type(current.resource, after)


async def _write(
    db: Any, tenant: uuid.UUID, key: uuid.UUID, current: UserRecord, after: dict[str, Any], kind: str
) -> tuple[UserRecord, uuid.UUID] | None:
    """Row and event in one statement if the user is still at `current.version` (→ the user, the event's id);
    None if it moved on."""
    check_resource_size("User", len(orjson.dumps(after)))
    version, now, event_id = current.version + 1, datetime.now(UTC), uuid.uuid4()
    with OutboxWrite("user", current.id) as write:
        write.event(kind, version)
        try:
            done = await db.execute(
                _UPDATE,
                tenant,
                key,
                after["userName"],
                after.get("externalId"),
                domain.is_active(after),
                after,
                version,
                now,
                event_id,
                kind,
                domain.event_data(current.id, after),
                write.traceparent,
            )
        except asyncpg.UniqueViolationError:
            raise _uniqueness(after) from None
    if done != "INSERT 0 1":
        return None
    return UserRecord(current.id, after, version, current.created, now), event_id


async def delete(pool: asyncpg.Pool, tenant_id: str, user_id: str, if_match: str | None = None) -> None:
    """Delete the user with its event, erase its earlier events, and leave its groups (store/leaving.py)."""
    tenant, key = uuid.UUID(tenant_id), resource_id(user_id, "User")
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(_LOCK, tenant, key)
        if row is None:
            raise NotFound(f"User {user_id} not found")
        check_version(_record(row).version, if_match)
        now, event_id = datetime.now(UTC), uuid.uuid4()
        with OutboxWrite("user", str(key)) as write:
            write.event(domain.DELETED)
            groups = await leaving.leave(conn, tenant, key)
            done = await conn.execute(_DELETE, tenant, key, event_id, now, write.traceparent)
            await conn.execute(_ERASE, tenant, key)
            # Held (now, or behind a held deactivation): its teams keep the person until it is released.
            if await holds.after_deprovisioning(conn, tenant, event_id, now) or await holds.waits(conn, tenant, key):
                await leaving.defer(conn, tenant, key, groups, now, write.traceparent)
            else:
                await leaving.announce(conn, tenant, key, groups, now, write.traceparent)
    if done != "INSERT 0 1":
        raise NotFound(f"User {user_id} not found")
