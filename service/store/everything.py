"""One page of a tenant's Users and Groups together, for `POST /.search` at the root (RFC 7644 §3.4.3).

The order is stable, so paging with startIndex never skips or repeats a resource:
- without sortBy: every User (creation order), then every Group (creation order);
- with sortBy: by that attribute (resources of a type that lacks it, and resources without a value, last), ties
  broken Users before Groups, then creation order.
One statement (`UNION ALL` of both tables, `count(*) OVER ()` for the total); members of the page's groups in one
more query, only when the response shows them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from service.domain.filter import Expr
from service.domain.groups import GroupRecord
from service.domain.schema import AttrRef
from service.domain.users import UserRecord
from service.store.filter_sql import GROUP_COLUMNS, USER_COLUMNS, order_sql, to_sql
from service.store.groups import with_members

_SQL_TYPE = {"boolean": "boolean", "dateTime": "timestamptz", "integer": "numeric", "decimal": "numeric"}


@dataclass(frozen=True)
class Side:
    """One table's part of the search: its filter (None: every row; `skip`: no row) and its sort attribute."""

    expr: Expr | None = None
    skip: bool = False
    sort: AttrRef | None = None


@dataclass(frozen=True)
class Page:
    total: int
    resources: list[UserRecord | GroupRecord]


def _select(kind: int, table: str, side: Side, params: list[object], sort_type: str | None) -> str:
    columns = USER_COLUMNS if table == "users" else GROUP_COLUMNS
    where = "FALSE" if side.skip else "TRUE" if side.expr is None else to_sql(side.expr, params, columns)
    key = "NULL"
    if sort_type is not None:
        key = f"({order_sql(side.sort, columns)})::{sort_type}" if side.sort else f"NULL::{sort_type}"
    return (
        f"SELECT {kind} AS kind, seq, id, resource, version, created_at, updated_at, {key} AS sort_key "
        f"FROM {table} WHERE tenant_id = $1 AND ({where})"
    )


async def search(
    pool: asyncpg.Pool,
    tenant_id: str,
    users: Side,
    groups: Side,
    descending: bool,
    start: int,
    count: int,
    members: bool,
    display: bool,
) -> Page:
    """`start` is 1-based. The two sides' sort attributes must have the same SCIM type (the caller checks)."""
    sorts = [s.sort for s in (users, groups) if s.sort is not None]
    sort_type = _SQL_TYPE.get(sorts[0].target.type, "text") if sorts else None
    params: list[object] = [uuid.UUID(tenant_id)]
    union = (
        f"{_select(0, 'users', users, params, sort_type)} UNION ALL {_select(1, 'groups', groups, params, sort_type)}"
    )
    order = "kind, seq"
    if sort_type is not None:
        order = f"sort_key {'DESC' if descending else 'ASC'} NULLS LAST, {order}"
    if count == 0:
        return Page(int(await pool.fetchval(f"SELECT count(*) FROM ({union}) AS r", *params)), [])
    params += [count, start - 1]
    rows = await pool.fetch(
        f"SELECT *, count(*) OVER () AS total FROM ({union}) AS r "
        f"ORDER BY {order} LIMIT ${len(params) - 1} OFFSET ${len(params)}",
        *params,
    )
    if not rows:
        total = 0 if start == 1 else int(await pool.fetchval(f"SELECT count(*) FROM ({union}) AS r", *params[:-2]))
        return Page(total, [])
    resources: list[UserRecord | GroupRecord] = []
    for row in rows:
        record: Any = UserRecord if row["kind"] == 0 else GroupRecord
        resources.append(
            record(
                id=str(row["id"]),
                resource=row["resource"],
                version=row["version"],
                created=row["created_at"],
                last_modified=row["updated_at"],
            )
        )
    if members:
        page_groups = [r for r in resources if isinstance(r, GroupRecord)]
        loaded = {g.id: g for g in await with_members(pool, tenant_id, page_groups, display)}
        resources = [loaded.get(r.id, r) if isinstance(r, GroupRecord) else r for r in resources]
    return Page(int(rows[0]["total"]), resources)
