"""One page of a tenant's resources (users or groups): filter, stable order, total, in one round trip.

The order is the sort key, then `seq` (creation order), so Okta's import paging never skips or repeats.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from service.domain.filter import Expr
from service.domain.schema import AttrRef
from service.store.filter_sql import Columns, order_sql, to_sql


async def fetch_page(
    pool: asyncpg.Pool,
    table: str,
    columns: Columns,
    select: str,
    tenant_id: str,
    expr: Expr | None,
    sort: tuple[AttrRef, bool] | None,
    start: int,
    count: int,
) -> tuple[int, list[Any]]:
    """(total matches, rows of the page); `start` is 1-based. `table` and `select` are ours, never input."""
    params: list[object] = [uuid.UUID(tenant_id)]
    where = "tenant_id = $1"
    if expr is not None:
        where += f" AND ({to_sql(expr, params, columns)})"
    if count == 0:
        return int(await pool.fetchval(f"SELECT count(*) FROM {table} WHERE {where}", *params)), []
    order = "seq"
    if sort is not None:
        ref, descending = sort
        order = f"{order_sql(ref, columns)} {'DESC' if descending else 'ASC'} NULLS LAST, seq"
    params += [count, start - 1]
    rows = await pool.fetch(
        f"SELECT {select}, count(*) OVER () AS total FROM {table} WHERE {where} "
        f"ORDER BY {order} LIMIT ${len(params) - 1} OFFSET ${len(params)}",
        *params,
    )
    if rows:
        return int(rows[0]["total"]), list(rows)
    if start == 1:
        return 0, []  # Okta's lookup before a create: no match, nothing more to count
    # Past the last page the window has no row to report the total on.
    return int(await pool.fetchval(f"SELECT count(*) FROM {table} WHERE {where}", *params[:-2])), []
