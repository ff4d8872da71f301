"""Paging a big tenant against the real PostgreSQL: exact totals, the right rows at any startIndex, bounded reads,
and filters that the indexes of migration 0012 serve."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from service.domain.filter import parse_filter
from service.domain.schema import USER_TYPE
from service.store import tenants, users
from service.store.filter_sql import USER_COLUMNS, to_sql
from service.store.paging import fetch_page
from service.store.pool import create_pool

_SELECT = "id, resource, version, created_at, updated_at"

_SEED = """
INSERT INTO users (tenant_id, id, user_name, active, version, resource, created_at, updated_at)
SELECT $1, gen_random_uuid(), $2 || g || '@example.com', true, 1,
       jsonb_build_object('userName', $2 || g || '@example.com',
                          'emails', jsonb_build_array(jsonb_build_object('value', 'Mail' || g || '@' || $2))),
       now(), $3::timestamptz + g * interval '1 second'
FROM generate_series(1, $4::int) AS g
"""

# Later than every real row in the session's database, so a `lastModified gt` near the end of a seed is selective
# for the planner whatever other tests stored.
START = datetime(2100, 1, 1, tzinfo=UTC)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, 1, 8)
    yield pool
    await pool.close()


async def _tenant(pool: asyncpg.Pool) -> str:
    async with pool.acquire() as conn:
        created, _ = await tenants.create(conn, f"paging-{uuid.uuid4().hex[:6]}")
    return created.id


async def _seed(pool: asyncpg.Pool, tenant: str, prefix: str, n: int) -> None:
    await pool.execute(_SEED, uuid.UUID(tenant), prefix, START, n)


async def _expected(pool: asyncpg.Pool, tenant: str, start: int, count: int) -> tuple[int, list[str]]:
    total = await pool.fetchval("SELECT count(*) FROM users WHERE tenant_id = $1", uuid.UUID(tenant))
    rows = await pool.fetch(
        "SELECT id FROM users WHERE tenant_id = $1 ORDER BY seq OFFSET $2 LIMIT $3", uuid.UUID(tenant), start - 1, count
    )
    return total, [str(r["id"]) for r in rows]


async def _page(pool: Any, tenant: str, start: int, count: int = 100, text: str | None = None) -> tuple[int, list[str]]:
    expr = parse_filter(text, USER_TYPE) if text else None
    total, rows = await fetch_page(pool, "users", USER_COLUMNS, _SELECT, tenant, expr, None, start, count)
    return total, [str(r["id"]) for r in rows]


async def test_every_start_index_gives_the_rows_at_that_position_and_the_exact_total(pool: asyncpg.Pool) -> None:
    # Two tenants interleaved (their seqs share blocks), deletes scattered over several blocks.
    tenant, other = await _tenant(pool), await _tenant(pool)
    for prefix in ("a", "b", "c"):
        await _seed(pool, tenant, prefix, 1500)
        await _seed(pool, other, prefix, 700)
    await pool.execute(
        "DELETE FROM users WHERE tenant_id = $1 AND (seq % 7 = 0 OR user_name LIKE 'b1%')", uuid.UUID(tenant)
    )
    total, _ = await _expected(pool, tenant, 1, 1)
    assert 3000 < total < 4000
    for start in (1, 2, 100, 1024, 1025, 1500, 2049, total - 99, total, total + 1, total + 500):
        assert await _page(pool, tenant, start) == await _expected(pool, tenant, start, 100), start
    assert await _page(pool, tenant, 7, count=0) == (total, [])


async def test_an_import_page_reads_about_a_page_not_the_whole_tenant(pool: asyncpg.Pool) -> None:
    tenant = await _tenant(pool)
    await _seed(pool, tenant, "r", 6000)
    await pool.execute("ANALYZE users")
    async with pool.acquire() as conn, conn.transaction():
        total, ids = await _page(conn, tenant, 5801)
        read = await conn.fetchval(
            "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables"
            " WHERE relname = 'users'"
        )
    assert (total, len(ids)) == (6000, 100)
    assert read <= 100 + 1024, f"one page read {read} user rows"


async def test_concurrent_creates_and_deletes_keep_the_total_exact(pool: asyncpg.Pool) -> None:
    tenant = await _tenant(pool)
    await _seed(pool, tenant, "k", 500)

    async def create(i: int) -> None:
        await users.create(pool, tenant, {"userName": f"new{i}@example.com", "active": True})

    await asyncio.gather(*(create(i) for i in range(200)))
    ids = await pool.fetch("SELECT id FROM users WHERE tenant_id = $1 ORDER BY seq LIMIT 150", uuid.UUID(tenant))
    await asyncio.gather(*(users.delete(pool, tenant, str(r["id"])) for r in ids))
    total, page = await _page(pool, tenant, 1)
    assert total == 550
    assert (total, page) == await _expected(pool, tenant, 1, 100)


async def test_a_deleted_tenant_leaves_no_counts(pool: asyncpg.Pool) -> None:
    tenant = await _tenant(pool)
    await _seed(pool, tenant, "z", 50)
    await pool.execute("DELETE FROM tenants WHERE id = $1", uuid.UUID(tenant))
    assert await pool.fetchval("SELECT count(*) FROM user_blocks WHERE tenant_id = $1", uuid.UUID(tenant)) == 0


async def _plan(pool: asyncpg.Pool, tenant: str, text: str) -> str:
    params: list[object] = [uuid.UUID(tenant)]
    where = to_sql(parse_filter(text, USER_TYPE), params, USER_COLUMNS)
    await pool.execute("ANALYZE users")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")  # a small table: ask whether an index CAN serve it
        rows = await conn.fetch(f"EXPLAIN SELECT id FROM users WHERE tenant_id = $1 AND ({where})", *params)
    return "\n".join(r[0] for r in rows)


@pytest.mark.parametrize(
    ("text", "index"),
    [
        ('emails.value eq "MAIL7@E"', "users_emails"),
        ('emails[value eq "MAIL7@E"]', "users_emails"),
        ('emails[type eq "work" and value eq "MAIL7@E"]', "users_emails"),
        ('emails[type eq "work"].value eq "MAIL7@E"', "users_emails"),
        ('meta.lastModified gt "2100-01-01T00:03:15Z"', "users_tenant_updated_at"),
        ('userName eq "e7@example.com"', "users_tenant_user_name"),
        ('externalId eq "x"', "users_tenant_external_id"),
    ],
)
async def test_lookup_filters_are_served_by_an_index(pool: asyncpg.Pool, text: str, index: str) -> None:
    tenant = await _tenant(pool)
    await _seed(pool, tenant, "e", 200)
    assert index in await _plan(pool, tenant, text)


async def test_email_and_last_modified_filters_find_the_right_users(pool: asyncpg.Pool) -> None:
    tenant = await _tenant(pool)
    await _seed(pool, tenant, "e", 200)
    total, ids = await _page(pool, tenant, 1, text='emails.value eq "mail7@E"')  # case-insensitive, as before
    assert total == 1 and len(ids) == 1
    since = (START + timedelta(seconds=190)).isoformat().replace("+00:00", "Z")
    total, ids = await _page(pool, tenant, 1, text=f'meta.lastModified gt "{since}"')
    assert (total, len(ids)) == (10, 10)
    total, ids = await _page(pool, tenant, 5, count=3, text=f'meta.lastModified gt "{since}"')
    assert (total, len(ids)) == (10, 3)
    assert await _page(pool, tenant, 50, text=f'meta.lastModified gt "{since}"') == (10, [])
