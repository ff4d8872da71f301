"""The relay's lease (service/relay/lease.py): what Postgres is told, and until when the leader may send."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from service.relay.lease import Lease
from service.settings import Settings, SettingsError


def test_postgres_ends_a_quiet_session_after_the_lease() -> None:
    settings = Lease(10).server_settings()
    assert settings["idle_session_timeout"] == settings["idle_in_transaction_session_timeout"] == "10000"
    assert settings["tcp_user_timeout"] == "10000"
    assert (settings["tcp_keepalives_idle"], settings["tcp_keepalives_interval"], settings["tcp_keepalives_count"]) == (
        "2",
        "2",
        "3",
    )


async def test_the_leader_stops_sending_a_margin_before_postgres_can_end_its_session() -> None:
    lease = Lease(10)
    assert lease.deadline() <= asyncio.get_running_loop().time(), "no answer yet: no sending"
    now = asyncio.get_running_loop().time()
    lease.answered(now - 3)
    assert lease.deadline() == pytest.approx(now - 3 + 10 - 2)
    assert lease.statement_timeout_s == 10 and lease.margin == 2
    lease.forget()
    assert lease.seconds_since_answer() is None and lease.deadline() <= asyncio.get_running_loop().time()


def test_the_lease_is_a_setting() -> None:
    assert Settings.from_env({}).relay_lease_seconds == 10
    assert Settings.from_env({"SCIMSYNC_RELAY_LEASE_SECONDS": "6"}).relay_lease_seconds == 6
    with pytest.raises(SettingsError, match="SCIMSYNC_RELAY_LEASE_SECONDS"):
        Settings.from_env({"SCIMSYNC_RELAY_LEASE_SECONDS": "1"})


def test_a_session_left_mid_operation_by_a_restart_is_a_database_error_for_the_relay_and_the_consumers() -> None:
    """A restart's FATAL on an idle session makes asyncpg's next query raise InternalClientError ("another operation
    is in progress"): the relay must reconnect (it used to exit), a consumer retry later (never dead-letter)."""
    from consumers.runtime.database import TRANSIENT_ERRORS
    from service.relay import relay

    error = asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress")
    assert isinstance(error, relay._DATABASE_ERRORS)
    assert isinstance(error, TRANSIENT_ERRORS)
