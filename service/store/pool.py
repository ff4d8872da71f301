"""The asyncpg pool: jsonb travels as orjson bytes, statements are prepared and cached by asyncpg."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda value: b"\x01" + orjson.dumps(value),
        decoder=lambda data: orjson.loads(data[1:]),
        format="binary",
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's default reset (`RESET ALL; UNLISTEN *; ...`), a round trip on every release.

    Safe because pooled connections never change session state: no SET, no session advisory locks,
    and LISTEN only on connections held for the life of the process.
    """


async def create_pool(database_url: str, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    pool: asyncpg.Pool = await asyncpg.create_pool(
        database_url, min_size=min_size, max_size=max_size, init=_init, reset=_keep_session, command_timeout=30
    )
    return pool


async def connect(database_url: str, **options: Any) -> Any:
    """One connection with the same codecs, for CLI commands, the relay and tests; `options` go to asyncpg."""
    conn = await asyncpg.connect(database_url, **options)
    await _init(conn)
    return conn
