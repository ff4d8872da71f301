"""The booking consumer over real Kafka and Postgres: who may book, and what happens to their bookings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers.booking import service
from consumers.samples import produce, user_event
from tests.integration.conftest import Stack
from tests.integration.test_consumers_helpers import ConsumerEnv, db_connect, new_env, running, until_idle


@pytest.fixture
async def env(database_url: str, stack: Stack) -> ConsumerEnv:
    return await new_env(database_url, stack.kafka)


@pytest.fixture
async def conn(env: ConsumerEnv) -> Any:
    connection = await db_connect(env)
    yield connection
    await connection.close()


def next_week(hour: int = 9) -> datetime:
    return (datetime.now(UTC) + timedelta(days=7)).replace(hour=hour, minute=0, second=0, microsecond=0)


async def refused(conn: Any, *args: Any) -> str:
    with pytest.raises(service.BookingRefused) as caught:
        await service.book(conn, *args)
    return caught.value.reason


async def test_lifecycle_deactivate_cancels_future_bookings_and_delete_scrubs_personal_data(
    env: ConsumerEnv, conn: Any
) -> None:
    tenant, ada = str(uuid.uuid4()), str(uuid.uuid4())
    desk = await service.add_desk(conn, tenant, "3.14")
    other_desk = await service.add_desk(conn, tenant, "3.15")
    assert [d.name for d in await service.list_desks(conn, tenant)] == ["3.14", "3.15"]
    start, end = next_week(9), next_week(17)
    events = 0
    async with running("booking", env.settings()) as consumer:
        assert await refused(conn, tenant, ada, desk.id, start, end) == "unknown_user"

        await produce(env.kafka, env.topic, [user_event("user.created", tenant, ada, 1, email="ada@example.com")])
        await until_idle(consumer, events := events + 1)
        booked = await service.book(conn, tenant, ada, desk.id, start, end)
        assert (booked.status, booked.booked_by_name) == ("confirmed", "Ada Lovelace")
        assert await refused(conn, tenant, ada, desk.id, start + timedelta(hours=1), end) == "desk_taken"
        # History: a booking that already happened (made back then, when booking a past day was still the future).
        past = await conn.fetchval(
            "INSERT INTO booking.bookings (tenant_id, user_id, desk_id, starts_at, ends_at, booked_by_name, "
            "booked_by_email) VALUES ($1, $2, $3, now() - interval '7 days', now() - interval '7 days' + interval "
            "'8 hours', 'Ada Lovelace', 'ada@example.com') RETURNING id",
            tenant,
            ada,
            desk.id,
        )

        await produce(env.kafka, env.topic, [user_event("user.deactivated", tenant, ada, 2)])
        await until_idle(consumer, events := events + 1)
        by_id = {b.id: b for b in await service.list_bookings(conn, tenant, ada)}
        assert (by_id[booked.id].status, by_id[booked.id].cancel_reason) == ("cancelled", "user_deactivated")
        assert (by_id[str(past)].status, by_id[str(past)].cancel_reason) == ("confirmed", None)
        assert await refused(conn, tenant, ada, other_desk.id, start, end) == "user_inactive"

        await produce(env.kafka, env.topic, [user_event("user.reactivated", tenant, ada, 3)])
        await until_idle(consumer, events := events + 1)
        again = await service.book(conn, tenant, ada, desk.id, start, end)  # the released desk is free again
        assert again.status == "confirmed"
        assert {b.id: b.status for b in await service.list_bookings(conn, tenant, ada)}[booked.id] == "cancelled"

        await produce(env.kafka, env.topic, [user_event("user.deleted", tenant, ada, 4)])
        await until_idle(consumer, events := events + 1)
        assert await refused(conn, tenant, ada, other_desk.id, start, end) == "user_deleted"

        # A replayed older event must not make the deleted user eligible again.
        await produce(env.kafka, env.topic, [user_event("user.reactivated", tenant, ada, 3)])
        await until_idle(consumer, events := events + 1)
        assert await refused(conn, tenant, ada, other_desk.id, start, end) == "user_deleted"

    rows = {str(r["id"]): dict(r) for r in await conn.fetch("SELECT * FROM booking.bookings WHERE user_id = $1", ada)}
    assert {k: (v["status"], v["cancel_reason"]) for k, v in rows.items()} == {
        booked.id: ("cancelled", "user_deactivated"),
        str(past): ("confirmed", None),
        again.id: ("cancelled", "user_deleted"),
    }
    assert all(r["booked_by_name"] is None and r["booked_by_email"] is None for r in rows.values())
    user = await conn.fetchrow("SELECT * FROM booking.users WHERE tenant_id = $1 AND user_id = $2", tenant, ada)
    assert (user["eligible"], user["deleted"], user["display_name"], user["email"], user["version"]) == (
        False,
        True,
        None,
        None,
        4,
    )
    assert consumer.metrics.counts["applied"] == 4 and consumer.metrics.counts["skipped_duplicate"] == 1


async def test_an_update_renames_kept_bookings_and_profile_edits_keep_eligibility(env: ConsumerEnv, conn: Any) -> None:
    tenant, bob = str(uuid.uuid4()), str(uuid.uuid4())
    desk = await service.add_desk(conn, tenant, "A")
    async with running("booking", env.settings()) as consumer:
        await produce(env.kafka, env.topic, [user_event("user.created", tenant, bob, 1, given_name="Bob")])
        await until_idle(consumer, 1)
        booking = await service.book(conn, tenant, bob, desk.id, next_week(9), next_week(12))
        assert booking.booked_by_name == "Bob Lovelace"
        await produce(env.kafka, env.topic, [user_event("user.updated", tenant, bob, 2, given_name="Robert")])
        await until_idle(consumer, 2)
    [kept] = await service.list_bookings(conn, tenant, bob)
    assert (kept.status, kept.booked_by_name) == ("confirmed", "Robert Lovelace")


async def test_refusals(conn: Any, env: ConsumerEnv) -> None:
    tenant = str(uuid.uuid4())
    desk = await service.add_desk(conn, tenant, "B")
    with pytest.raises(service.BookingRefused) as caught:
        await service.add_desk(conn, tenant, "B")
    assert caught.value.reason == "desk_exists"
    user = str(uuid.uuid4())
    await conn.execute(
        "INSERT INTO booking.users (tenant_id, user_id, eligible, version) VALUES ($1, $2, true, 1)", tenant, user
    )
    assert await refused(conn, tenant, user, desk.id, next_week(12), next_week(9)) == "invalid_period"
    yesterday = datetime.now(UTC) - timedelta(days=1)
    assert await refused(conn, tenant, user, desk.id, yesterday, yesterday + timedelta(hours=1)) == "invalid_period"
    assert await refused(conn, tenant, user, str(uuid.uuid4()), next_week(9), next_week(12)) == "unknown_desk"
    other_tenant_desk = await service.add_desk(conn, str(uuid.uuid4()), "B")
    assert await refused(conn, tenant, user, other_tenant_desk.id, next_week(9), next_week(12)) == "unknown_desk"
