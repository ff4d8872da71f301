"""Keyset pages for the admin console's lists: a page starts after (or ends before) a row named by its id.

The order is a key unique within the tenant (lower(userName), lower(displayName), an event's sequence), read from
an index, so a page costs the same at any depth and a row created or deleted elsewhere in the list never makes
another appear twice or go missing. The page, its position and the total are read in one REPEATABLE READ
snapshot, so "51-100 of 5,000" agrees with the rows shown. Counts stop at COUNT_CAP (a page never scans a million
rows to count them) unless the listing has an exact cheap total (user_blocks for a tenant's unfiltered users).

All SQL here is this module's or its callers' constant text; the anchor, the filter values and the tenant are
always parameters.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

COUNT_CAP = 10_000


@dataclass(frozen=True)
class Listing:
    """One list of one tenant: its rows are `source` WHERE `tenant` (which uses only $1, the tenant's id) AND
    `where` (which may use $2..$n, the filter's values). `total` counts every match exactly and cheaply from $1
    alone, or is None (then the count stops at COUNT_CAP)."""

    select: str  # the page's columns, one of them named `id`
    source: str  # FROM …
    tenant: str
    key: str  # unique per tenant, indexed
    id_column: str  # what `id` is read from, to find the anchor's key
    descending: bool = False
    where: str = "true"
    total: str | None = None
    # Plan every read for its own filter values: a LIKE '%x%' matching a handful of rows wants the trigram index,
    # one matching most of the tenant the ordered key index; a generic plan (which Postgres may settle on for a
    # prepared statement after five runs) would pick one for all and be slow for the others.
    custom_plans: bool = False


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    start: int  # matches before the first row; COUNT_CAP means "at least that many"
    total: int
    total_capped: bool  # True: more than COUNT_CAP match (the count stopped there)
    previous: str | None  # the first row's id when there are rows before it
    next: str | None  # the last row's id when there are rows after it
    lost: bool = False  # the anchor is not (or no longer) in this list: this is the first page


Direction = Literal["after", "before"]


async def page(
    conn: Any, listing: Listing, params: list[object], anchor: tuple[Direction, uuid.UUID] | None, size: int
) -> Page:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if listing.custom_plans:
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        return await _page(conn, listing, params, anchor, size)


async def _page(
    conn: Any, listing: Listing, params: list[object], anchor: tuple[Direction, uuid.UUID] | None, size: int
) -> Page:
    n = len(params)
    forward, backward = (">", "<") if not listing.descending else ("<", ">")
    ascending, reverse = ("ASC", "DESC") if not listing.descending else ("DESC", "ASC")
    matches = f"{listing.source} WHERE {listing.tenant} AND ({listing.where})"
    base = f"SELECT {listing.select}, {listing.key} AS sort_key {matches}"
    first_page = f"{base} ORDER BY {listing.key} {ascending} LIMIT ${n + 1}"
    key: object = None
    if anchor is not None:  # the anchor's own key, filter or not (it may have changed since), never another tenant's
        find = f"SELECT {listing.key} {listing.source} WHERE {listing.tenant} AND {listing.id_column} = $2"
        key = await conn.fetchval(find, params[0], anchor[1])
    if anchor is None or key is None:
        rows = await conn.fetch(first_page, *params, size)
    elif anchor[0] == "after":
        sql = f"{base} AND {listing.key} {forward} ${n + 1} ORDER BY {listing.key} {ascending} LIMIT ${n + 2}"
        rows = await conn.fetch(sql, *params, key, size)
    else:
        sql = f"{base} AND {listing.key} {backward} ${n + 1} ORDER BY {listing.key} {reverse} LIMIT ${n + 2}"
        rows = list(reversed(await conn.fetch(sql, *params, key, size)))
        if len(rows) < size:  # rows before it went away: Previous shows a full first page
            rows = await conn.fetch(first_page, *params, size)
    if listing.total is not None:
        total = int(await conn.fetchval(listing.total, params[0]))
    else:
        total = int(
            await conn.fetchval(f"SELECT count(*) FROM (SELECT 1 {matches} LIMIT {COUNT_CAP + 1}) AS m", *params)
        )
    lost = anchor is not None and key is None
    capped = listing.total is None and total > COUNT_CAP
    if not rows:
        return Page([], 0, total, capped, None, None, lost)
    before = f"SELECT count(*) FROM (SELECT 1 {matches} AND {listing.key} {backward} ${n + 1} LIMIT {COUNT_CAP}) AS m"
    start = int(await conn.fetchval(before, *params, rows[0]["sort_key"]))
    after = f"SELECT EXISTS (SELECT 1 {matches} AND {listing.key} {forward} ${n + 1})"
    more = bool(await conn.fetchval(after, *params, rows[-1]["sort_key"]))
    previous = str(rows[0]["id"]) if start else None
    return Page(list(rows), start, total, capped, previous, str(rows[-1]["id"]) if more else None, lost)
