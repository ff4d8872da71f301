"""Ordered SQL migrations (`migrations/NNNN_name.sql`), each applied once and recorded.

An advisory lock makes concurrent `scimsync migrate` runs (two pods starting) wait for each other.
"""

from __future__ import annotations

from importlib.resources import files

import asyncpg

_LOCK = 7_202_611  # arbitrary, constant: the advisory lock id of migrations


def available() -> list[tuple[str, str]]:
    """(name, sql) of every migration shipped with the package, in order."""
    folder = files("service.store").joinpath("migrations")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), folder.joinpath(name).read_text()) for name in names]


async def pending(conn: asyncpg.Connection) -> list[str]:
    """Names of the shipped migrations not applied yet (all of them on an empty database)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")} if exists else set()
    return [name for name, _ in available() if name not in done]


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply what isn't applied yet; return the names applied now (empty when up to date)."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations"
        " (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK)
    try:
        done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        applied = []
        for name, sql in available():
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            applied.append(name)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK)
