"""The asyncpg pool: jsonb travels as orjson bytes, statements are prepared and cached by asyncpg."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from service import logs

log = logs.get(__name__)

# Errors that mean "Postgres can't be reached right now" (a restart, a failover, a network cut, no free
# connection slot), not a bug: the API answers them 503 with Retry-After (api/errors.py) and the pool
# reconnects on its own afterwards. Any other error from Postgres stays a 500.
UNREACHABLE: tuple[type[Exception], ...] = (
    OSError,  # refused, reset, unreachable, timed out (TimeoutError is an OSError)
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, and "connection was closed in the middle of operation"
    asyncpg.CannotConnectNowError,  # 57P03: the database system is starting up / shutting down
    asyncpg.AdminShutdownError,  # 57P01: a restart terminated our session
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.TooManyConnectionsError,  # 53300
    # A restart's FATAL reaches idle pooled connections too; until their socket closes, the next query on one
    # fails inside the client ("another operation is in progress"). Retrying on a fresh connection works.
    asyncpg.InternalClientError,
)
# Postgres rolled the transaction back to settle a conflict with a concurrent one (a deadlock, a serialization
# failure): nobody's bug, and the same request sent again goes through. The API answers 503 with Retry-After too.
CONTENDED: tuple[type[Exception], ...] = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
# What the API's error renderer looks at: every error a database call can raise. `unreachable` tells which.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
_CONNECT_TIMEOUT = 5.0  # a vanished host answers 503 within seconds instead of asyncpg's default minute


def unreachable(exc: BaseException) -> bool:
    """True when `exc` is, or was raised while handling, an UNREACHABLE error. A transaction cut by a restart ends
    in asyncpg's InterfaceError ("the underlying connection is closed") from its exit, raised while handling the
    real cause: the cause decides, not the message."""
    return _caused_by(exc, UNREACHABLE)


def contended(exc: BaseException) -> bool:
    """True when `exc` is, or was raised while handling, a CONTENDED error."""
    return _caused_by(exc, CONTENDED)


def _caused_by(exc: BaseException, kinds: tuple[type[Exception], ...]) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):  # a chain is short; never loop on a cycle
        if seen is None:
            return False
        if isinstance(seen, kinds):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def distrust_connections(pool: Any) -> None:
    """After Postgres was unreachable, replace every pooled connection on its next use.

    A restart can leave a connection mid-protocol (still open, its last operation's error already raised) and
    `_keep_session` runs no statement that would notice: handed out again, its next query fails with
    "another operation is in progress" — a 500. Expiring the pool's generation closes such connections.
    """
    if pool is not None:
        await pool.expire_connections()


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


async def create_pool(
    database_url: str, min_size: int = 2, max_size: int = 20, *, tolerate_unreachable: bool = False
) -> asyncpg.Pool:
    """The pool, with `min_size` connections open. With `tolerate_unreachable` (the API) a Postgres that can't be
    reached yet (a pod scheduled during a failover) is no reason to fail: the pool is created empty, every call
    meanwhile fails as in any outage (UNREACHABLE, a 503), and connections open on first use once it is back."""
    try:
        return await _create_pool(database_url, min_size, max_size)
    except UNREACHABLE as exc:
        if not tolerate_unreachable or min_size == 0:
            raise
        log.warning("postgres.unreachable_at_start", error=type(exc).__name__)
        return await _create_pool(database_url, 0, max_size)  # opens no connection now


async def _create_pool(database_url: str, min_size: int, max_size: int) -> asyncpg.Pool:
    pool: asyncpg.Pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        init=_init,
        reset=_keep_session,
        command_timeout=30,
        timeout=_CONNECT_TIMEOUT,
    )
    return pool


async def connect(database_url: str, **options: Any) -> Any:
    """One connection with the same codecs, for CLI commands, the relay and tests; `options` go to asyncpg."""
    conn = await asyncpg.connect(database_url, **options)
    await _init(conn)
    return conn
