"""Groups in Postgres. Every write commits the group row, its member rows and its events together.

Members live only in `group_members`, one row per member: a membership change deletes and inserts just the rows
it names (`DELETE … RETURNING`, `INSERT … ON CONFLICT DO NOTHING RETURNING`), so what really changed is known and
is what the `group.membership_changed` event carries. Each event gets its own version: a PATCH that renames a
group and changes its members writes `group.updated` at v+1 and `group.membership_changed` at v+2. A change of
more than `limits.MEMBERS_PER_EVENT` ids is split into several `group.membership_changed` events (removals first,
then additions, ids in order), v+2, v+3, …, so that each fits a Kafka record; a creation likewise.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from service.domain import groups as domain
from service.domain.errors import InvalidValue, NotFound, Uniqueness
from service.domain.filter import Expr
from service.domain.groups import GroupRecord, Member, MembershipDelta
from service.domain.limits import MEMBERS_PER_EVENT, check_resource_size
from service.domain.schema import AttrRef
from service.domain.versions import check_version
from service.store.filter_sql import GROUP_COLUMNS
from service.store.ids import resource_id
from service.store.paging import fetch_page
from service.tracing import OutboxWrite

_COLUMNS = "id, resource, version, created_at, updated_at"

# $10: the group's version after its creation: 1, or more when its members need several events (_EVENT).
_CREATE = """
WITH g AS (
    INSERT INTO groups (tenant_id, id, display_name, external_id, version, resource, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $10, $5, $6, $6)
    RETURNING id
), m AS (
    INSERT INTO group_members (tenant_id, group_id, user_id)
    SELECT $1, g.id, u FROM g, unnest($7::uuid[]) AS u
)
INSERT INTO events (id, tenant_id, aggregate, subject, type, version, occurred_at, data, traceparent)
SELECT $8, $1, 'group', g.id, 'group.created', 1, $6, $9, $11 FROM g
"""

_EVENT = """
INSERT INTO events (id, tenant_id, aggregate, subject, type, version, occurred_at, data, traceparent)
VALUES ($1, $2, 'group', $3, $4, $5, $6, $7, $8)
"""

_UPDATE = """
WITH g AS (
    UPDATE groups SET display_name = $3, external_id = $4, resource = $5, version = $6, updated_at = $7
    WHERE tenant_id = $1 AND id = $2
    RETURNING id
)
INSERT INTO events (id, tenant_id, aggregate, subject, type, version, occurred_at, data, traceparent)
SELECT $8, $1, 'group', g.id, 'group.updated', $6, $7, $9, $10 FROM g
"""

# $3: the ids to add; $4: the ids to remove (_CHANGE_MEMBERS) or to keep (_REPLACE_MEMBERS). The two differ only
# in which rows they delete: `user_id = ANY(...)` is an index lookup, a replace has to look at every member.
# The change is numbered (removals first, then additions, each in id order) and cut into parts of $8 ids: part n
# is the event at version $5 + n. Returns one row per event written.
_MEMBERSHIP = """
WITH removed AS (
    DELETE FROM group_members WHERE tenant_id = $1 AND group_id = $2 AND {removed}
    RETURNING user_id
), added AS (
    INSERT INTO group_members (tenant_id, group_id, user_id)
    SELECT $1, $2, u FROM unnest($3::uuid[]) AS u
    ON CONFLICT DO NOTHING
    RETURNING user_id
), changes AS (
    SELECT c.user_id, c.removal, (row_number() OVER (ORDER BY c.removal DESC, c.user_id) - 1) / $8 AS part
    FROM (SELECT user_id, true AS removal FROM removed UNION ALL SELECT user_id, false FROM added) AS c
), parts AS (
    SELECT part,
           coalesce(jsonb_agg(user_id::text ORDER BY user_id) FILTER (WHERE NOT removal), '[]'::jsonb) AS added,
           coalesce(jsonb_agg(user_id::text ORDER BY user_id) FILTER (WHERE removal), '[]'::jsonb) AS removed
    FROM changes GROUP BY part
), g AS (
    UPDATE groups SET version = $5 + (SELECT max(part) FROM parts), updated_at = $6
    WHERE tenant_id = $1 AND id = $2 AND EXISTS (SELECT 1 FROM parts)
    RETURNING groups.id
)
INSERT INTO events (id, tenant_id, aggregate, subject, type, version, occurred_at, data, traceparent)
SELECT CASE WHEN parts.part = 0 THEN $7 ELSE gen_random_uuid() END, $1, 'group', g.id, 'group.membership_changed',
       $5 + parts.part, $6, jsonb_build_object('id', g.id::text, 'added', parts.added, 'removed', parts.removed), $9
FROM g, parts
ORDER BY parts.part
RETURNING version
"""
_CHANGE_MEMBERS = _MEMBERSHIP.format(removed="user_id = ANY($4::uuid[])")
_REPLACE_MEMBERS = _MEMBERSHIP.format(removed="user_id <> ALL($4::uuid[])")

_DELETE = """
WITH g AS (
    DELETE FROM groups WHERE tenant_id = $1 AND id = $2 RETURNING id, version
)
INSERT INTO events (id, tenant_id, aggregate, subject, type, version, occurred_at, data, traceparent)
SELECT $3, $1, 'group', g.id, 'group.deleted', g.version + 1, $4, jsonb_build_object('id', g.id::text), $5 FROM g
"""

# One query for the members of a whole page of groups, in the primary key's order. With `display` (the user's
# displayName, else its userName) only when asked for: that needs the users table too.
_MEMBERS = """
SELECT m.group_id, m.user_id, NULL AS display FROM group_members m
WHERE m.tenant_id = $1 AND m.group_id = ANY($2::uuid[])
ORDER BY m.group_id, m.user_id
"""
_MEMBERS_WITH_DISPLAY = """
SELECT m.group_id, m.user_id, coalesce(u.resource ->> 'displayName', u.user_name) AS display
FROM group_members m JOIN users u ON u.tenant_id = m.tenant_id AND u.id = m.user_id
WHERE m.tenant_id = $1 AND m.group_id = ANY($2::uuid[])
ORDER BY m.group_id, m.user_id
"""

_UNKNOWN_USERS = """
SELECT u::text FROM unnest($2::uuid[]) AS u
WHERE NOT EXISTS (SELECT 1 FROM users WHERE tenant_id = $1 AND id = u)
"""


@dataclass(frozen=True)
class Page:
    total: int
    groups: list[GroupRecord]


def record(row: Any) -> GroupRecord:
    """A group row (`_COLUMNS`) as the domain's record."""
    return GroupRecord(
        id=str(row["id"]),
        resource=row["resource"],
        version=row["version"],
        created=row["created_at"],
        last_modified=row["updated_at"],
    )


def _uniqueness() -> Uniqueness:
    return Uniqueness("displayName is already taken by another group in this tenant")


async def _unknown_members(pool: asyncpg.Pool, tenant: uuid.UUID, ids: list[str]) -> InvalidValue:
    """The error for adds that name no user of this tenant (asked after the failed transaction rolled back)."""
    missing = [r[0] for r in await pool.fetch(_UNKNOWN_USERS, tenant, [uuid.UUID(i) for i in ids])]
    if not missing:  # the user was deleted while we wrote
        return InvalidValue("members: a member is not a user of this tenant")
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return InvalidValue(f"members: no user {shown} in this tenant")


async def create(pool: asyncpg.Pool, tenant_id: str, resource: dict[str, Any], members: list[str]) -> GroupRecord:
    check_resource_size("Group", len(orjson.dumps(resource)))
    tenant, group_id, now = uuid.UUID(tenant_id), uuid.uuid4(), datetime.now(UTC)
    (_, created), *more = domain.created_events(str(group_id), resource, members, MEMBERS_PER_EVENT)
    try:
        async with pool.acquire() as conn, conn.transaction():
            with OutboxWrite("group", str(group_id)) as write:
                write.event(domain.CREATED, 1)
                await conn.execute(
                    _CREATE,
                    tenant,
                    group_id,
                    resource["displayName"],
                    resource.get("externalId"),
                    resource,
                    now,
                    [uuid.UUID(m) for m in members],
                    uuid.uuid4(),
                    created,
                    1 + len(more),
                    write.traceparent,
                )
                for version, (kind, data) in enumerate(more, start=2):
                    await conn.execute(
                        _EVENT, uuid.uuid4(), tenant, group_id, kind, version, now, data, write.traceparent
                    )
    except asyncpg.UniqueViolationError:
        raise _uniqueness() from None
    except asyncpg.ForeignKeyViolationError:
        raise await _unknown_members(pool, tenant, members) from None
    return GroupRecord(id=str(group_id), resource=resource, version=1 + len(more), created=now, last_modified=now)


async def with_members(db: Any, tenant_id: str, records: list[GroupRecord], display: bool = False) -> list[GroupRecord]:
    """`records` with their members loaded, in one query. `db`: a pool or a connection."""
    if not records:
        return records
    sql = _MEMBERS_WITH_DISPLAY if display else _MEMBERS
    rows = await db.fetch(sql, uuid.UUID(tenant_id), [uuid.UUID(r.id) for r in records])
    members: dict[str, list[Member]] = {r.id: [] for r in records}
    for row in rows:
        members[str(row["group_id"])].append(Member(str(row["user_id"]), row["display"]))
    return [dataclasses.replace(r, members=tuple(members[r.id])) for r in records]


async def get(
    pool: asyncpg.Pool, tenant_id: str, group_id: str, members: bool = True, display: bool = False
) -> GroupRecord:
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM groups WHERE tenant_id = $1 AND id = $2",
        uuid.UUID(tenant_id),
        resource_id(group_id, "Group"),
    )
    if row is None:
        raise NotFound(f"Group {group_id} not found")
    found = record(row)
    return (await with_members(pool, tenant_id, [found], display))[0] if members else found


async def search(
    pool: asyncpg.Pool,
    tenant_id: str,
    expr: Expr | None,
    sort: tuple[AttrRef, bool] | None,
    start: int,
    count: int,
    members: bool = True,
    display: bool = False,
) -> Page:
    """One page in a stable order (the sort key, then creation order); `start` is 1-based. Members of the whole
    page are loaded in one more query, and only when `members`."""
    total, rows = await fetch_page(pool, "groups", GROUP_COLUMNS, _COLUMNS, tenant_id, expr, sort, start, count)
    records = [record(r) for r in rows]
    return Page(total, await with_members(pool, tenant_id, records, display) if members else records)


async def update(
    pool: asyncpg.Pool,
    tenant_id: str,
    group_id: str,
    change: Callable[[GroupRecord], tuple[dict[str, Any], MembershipDelta]],
    if_match: str | None = None,
) -> GroupRecord:
    """Lock the group, compute its new attributes and membership delta with `change`, write both with their events.

    Members are not loaded: `change` sees the attributes only. A change that changes nothing writes nothing.
    """
    tenant, key = uuid.UUID(tenant_id), resource_id(group_id, "Group")
    delta = MembershipDelta()
    try:
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM groups WHERE tenant_id = $1 AND id = $2 FOR UPDATE", tenant, key
            )
            if row is None:
                raise NotFound(f"Group {group_id} not found")
            current = record(row)
            check_version(current.version, if_match)
            after, delta = change(current)
            version, now = current.version, datetime.now(UTC)
            attributes_changed = after != current.resource  # anything but the members
            if not attributes_changed and delta.empty:
                return current
            with OutboxWrite("group", current.id) as write:
                write.event(domain.UPDATED if attributes_changed else domain.MEMBERSHIP_CHANGED, version + 1)
                if attributes_changed:
                    check_resource_size("Group", len(orjson.dumps(after)))
                    version += 1
                    await conn.execute(
                        _UPDATE,
                        tenant,
                        key,
                        after["displayName"],
                        after.get("externalId"),
                        after,
                        version,
                        now,
                        uuid.uuid4(),
                        domain.event_data(current.id, after),
                        write.traceparent,
                    )
                if not delta.empty:
                    written = await conn.fetch(
                        _REPLACE_MEMBERS if delta.reset else _CHANGE_MEMBERS,
                        tenant,
                        key,
                        [uuid.UUID(i) for i in delta.adds],
                        [uuid.UUID(i) for i in (delta.adds if delta.reset else delta.removes)],
                        version + 1,
                        now,
                        uuid.uuid4(),
                        MEMBERS_PER_EVENT,
                        write.traceparent,
                    )
                    version += len(written)
    except asyncpg.UniqueViolationError:
        raise _uniqueness() from None
    except asyncpg.ForeignKeyViolationError:
        raise await _unknown_members(pool, tenant, list(delta.adds)) from None
    if version == current.version:
        return current
    return GroupRecord(id=current.id, resource=after, version=version, created=current.created, last_modified=now)


async def delete(pool: asyncpg.Pool, tenant_id: str, group_id: str, if_match: str | None = None) -> None:
    tenant, key = uuid.UUID(tenant_id), resource_id(group_id, "Group")
    async with pool.acquire() as conn, conn.transaction():
        if if_match is not None:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM groups WHERE tenant_id = $1 AND id = $2 FOR UPDATE", tenant, key
            )
            if row is None:
                raise NotFound(f"Group {group_id} not found")
            check_version(record(row).version, if_match)
        with OutboxWrite("group", str(key)) as write:
            write.event(domain.DELETED)
            done = await conn.execute(_DELETE, tenant, key, uuid.uuid4(), datetime.now(UTC), write.traceparent)
    if done != "INSERT 0 1":
        raise NotFound(f"Group {group_id} not found")
