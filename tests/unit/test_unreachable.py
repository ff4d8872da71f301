"""Which database errors mean "Postgres is unreachable" (503) rather than a bug (500)."""

from __future__ import annotations

import asyncpg

from service.store.pool import unreachable


def _raised_while_handling(cause: BaseException, error: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException:
            raise error  # noqa: B904 (the implicit chaining is the point)
    except BaseException as exc:
        return exc


def test_connection_errors_are_unreachable() -> None:
    assert unreachable(ConnectionRefusedError())
    assert unreachable(TimeoutError())
    assert unreachable(asyncpg.CannotConnectNowError("the database system is starting up"))
    assert unreachable(asyncpg.AdminShutdownError("terminating connection due to administrator command"))
    assert unreachable(asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"))


def test_other_errors_are_bugs() -> None:
    assert not unreachable(asyncpg.UniqueViolationError("duplicate key"))
    assert not unreachable(asyncpg.RaiseError("secret"))
    assert not unreachable(asyncpg.InterfaceError("another operation is in progress"))


def test_a_transaction_exit_on_a_dead_connection_is_judged_by_its_cause() -> None:
    closed = asyncpg.InterfaceError("cannot call Transaction.__aexit__(): the underlying connection is closed")
    cut = asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    assert unreachable(_raised_while_handling(cut, closed))
    bug = asyncpg.InterfaceError("cannot call Transaction.__aexit__(): the underlying connection is closed")
    assert not unreachable(_raised_while_handling(ValueError("a bug"), bug))
