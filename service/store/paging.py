"""One page of a tenant's resources (users or groups): filter, stable order, exact total, in one statement.

The order is the sort key, then `seq` (creation order), so Okta's import paging never skips or repeats while
nothing changes. The total and the page come from one statement, hence one snapshot: `totalResults` is exact.

Unfiltered, unsorted user pages (Okta's import) never read the whole tenant: `user_blocks` (migration 0012)
holds exact per-snapshot counts of a tenant's users per block of 1,024 `seq` values, so the total is a sum over
~N/1,024 small rows and page K starts in the block where the running sum passes K, read from the (tenant_id, seq)
index with an offset below the block's size. A filtered query collects its matches' seqs (an index scan when the
filter has an index), counts them and reads the page's rows by seq; a sorted one counts, then sorts.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from service.domain.filter import Expr
from service.domain.schema import AttrRef
from service.store.filter_sql import Columns, order_sql, to_sql

# Tables whose rows are counted per block of `seq >> 10` (the shift is the migration's trigger's).
_BLOCKS = {"users": "user_blocks"}

_BLOCK_PAGE = """
WITH b AS (
    SELECT block, sum(n)::bigint AS n FROM {blocks} WHERE tenant_id = $1 GROUP BY block
), c AS (
    SELECT block, n, sum(n) OVER (ORDER BY block)::bigint AS upto FROM b
), s AS (
    SELECT block, $2::bigint - (upto - n) AS skip FROM c WHERE upto > $2::bigint ORDER BY block LIMIT 1
)
SELECT t.total, p.* FROM (SELECT coalesce(sum(n), 0)::bigint AS total FROM b) AS t
LEFT JOIN LATERAL (
    SELECT {select} FROM {table}
    WHERE tenant_id = $1 AND seq >= (SELECT block FROM s) << 10
    ORDER BY seq OFFSET (SELECT skip FROM s) LIMIT $3
) AS p ON true
"""

# The matches' seqs once (MATERIALIZED; from the index alone when it includes seq, as migration 0012's
# users_tenant_updated_at does), counted and cut to the page; only the page's rows are then read.
_FILTERED_PAGE = """
WITH m AS MATERIALIZED (SELECT seq FROM {table} WHERE {where})
SELECT t.total, p.* FROM (SELECT count(*) AS total FROM m) AS t
LEFT JOIN LATERAL (
    SELECT {select} FROM {table}
    WHERE tenant_id = $1 AND seq IN (SELECT seq FROM m ORDER BY seq LIMIT ${limit} OFFSET ${offset})
    ORDER BY seq
) AS p ON true
"""

_SORTED_PAGE = """
SELECT t.total, p.* FROM (SELECT count(*) AS total FROM {table} WHERE {where}) AS t
LEFT JOIN LATERAL (
    SELECT {select} FROM {table} WHERE {where} ORDER BY {order} LIMIT ${limit} OFFSET ${offset}
) AS p ON true
"""


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
    """(total matches, rows of the page); `start` is 1-based. `table` and `select` are ours, never input;
    `select` names plain columns (the page is read in a subquery)."""
    params: list[object] = [uuid.UUID(tenant_id)]
    where = "tenant_id = $1"
    if expr is not None:
        where += f" AND ({to_sql(expr, params, columns)})"
    blocks = _BLOCKS.get(table)
    if count == 0:
        if expr is None and blocks is not None:
            sql = f"SELECT coalesce(sum(n), 0) FROM {blocks} WHERE tenant_id = $1"
        else:
            sql = f"SELECT count(*) FROM {table} WHERE {where}"
        return int(await pool.fetchval(sql, *params)), []
    if expr is None and sort is None and blocks is not None:
        query = _BLOCK_PAGE.format(blocks=blocks, table=table, select=select)
        rows = await pool.fetch(query, params[0], start - 1, count)
    else:
        template, order = _FILTERED_PAGE, "seq"
        if sort is not None:
            ref, descending = sort
            template = _SORTED_PAGE
            order = f"{order_sql(ref, columns)} {'DESC' if descending else 'ASC'} NULLS LAST, seq"
        params += [count, start - 1]
        query = template.format(
            table=table, where=where, select=select, order=order, limit=len(params) - 1, offset=len(params)
        )
        rows = await pool.fetch(query, *params)
    # One row with NULL columns when the page is empty (past the end, or no match): it still carries the total.
    return int(rows[0]["total"]), [r for r in rows if r["id"] is not None]
