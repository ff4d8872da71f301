"""asyncpg for the consumers: a pool with the jsonb codec, and applying a domain's schema.sql at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import orjson

# Two consumers starting at once must not race on CREATE ... IF NOT EXISTS (it isn't atomic in Postgres).
_SCHEMA_LOCK = 0x5C1A5C0
# Failures that are nobody's fault: the event is retried later, never dead-lettered.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TransactionRollbackError,  # serialization failure, deadlock
    asyncpg.OperatorInterventionError,  # admin shutdown, query cancelled
    asyncpg.InsufficientResourcesError,
    # A restart's FATAL on an idle pooled connection: its next query fails inside the client ("another operation
    # is in progress") until the socket closes. Retried later, never dead-lettered.
    asyncpg.InternalClientError,
)

# Failures of the deployment, not of an event (a missing column, a permission): dead-lettering every event would
# hide them, so the consumer stops without committing and the events wait for the fix.
FATAL_ERRORS: tuple[type[BaseException], ...] = (asyncpg.SyntaxOrAccessError, asyncpg.FeatureNotSupportedError)


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda value: b"\x01" + orjson.dumps(value),
        decoder=lambda data: orjson.loads(data[1:]),
        format="binary",
    )


async def create_pool(database_url: str, max_size: int = 8) -> asyncpg.Pool:
    pool: asyncpg.Pool = await asyncpg.create_pool(
        database_url, min_size=1, max_size=max_size, init=_init, command_timeout=60
    )
    return pool


async def connect(database_url: str) -> Any:
    conn = await asyncpg.connect(database_url)
    await _init(conn)
    return conn


async def apply_schema(conn: Any, sql_file: Path) -> None:
    """Run an idempotent schema.sql (CREATE ... IF NOT EXISTS) under an advisory lock."""
    sql = sql_file.read_text()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
        await conn.execute(sql)
