"""`scimsync rebuild` must not bring stale data back: an older event after a newer one, retention racing the rebuild,
a rebuild that dies between clearing the projection and committing its offsets.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from consumers import rebuild as rebuild_module
from consumers.booking import service
from consumers.cli import rebuild_command
from consumers.samples import produce, user_event
from tests.integration.conftest import Stack
from tests.integration.test_consumers_helpers import ConsumerEnv, db_connect, eventually, new_env, running, until_idle
from tests.integration.test_consumers_rebuild import own_database as own_database_fixture
from tests.integration.test_consumers_rebuild import summary_of, tables, workspace_history

REPAIR = [("scimsync_repair", b"1")]
own_database = own_database_fixture  # a rebuild clears whole tables: a database of the test's own


@pytest.fixture
async def env(own_database: str, stack: Stack) -> ConsumerEnv:
    return await new_env(own_database, stack.kafka)


async def test_an_older_event_after_a_newer_one_does_not_make_a_leaver_eligible_again(env: ConsumerEnv) -> None:
    """A replay (`--until`, `--user`) or a cut-off former relay leader puts an older event after the newer ones."""
    tenant, leaver, stayer = (str(uuid.uuid4()) for _ in range(3))
    created = user_event("user.created", tenant, leaver, 1, given_name="Lea")
    history = [
        created,
        user_event("user.deactivated", tenant, leaver, 2, given_name="Lea"),
        user_event("user.created", tenant, stayer, 1, given_name="Sam"),
        created,  # the replayed older event, last in the partition
    ]
    await produce(env.kafka, env.topic, history, partition=0)
    async with running("booking", env.settings()) as consumer:
        await until_idle(consumer, len(history))
    before = await tables(env, "booking", exclude=("updated_at",))
    assert await rebuild_command("booking", env.settings()) == 0
    after = await tables(env, "booking", exclude=("updated_at",))
    assert after == before
    eligible = {str(u["user_id"]): (u["eligible"], u["version"]) for u in after["users"]}
    assert eligible == {leaver: (False, 2), stayer: (True, 1)}


async def test_a_deleted_persons_snapshot_does_not_come_back_and_a_repair_wins_a_tie(env: ConsumerEnv) -> None:
    tenant, gone, fixed = (str(uuid.uuid4()) for _ in range(3))
    await produce(
        env.kafka,
        env.topic,
        [
            user_event("user.created", tenant, gone, 1, given_name="Gone"),
            user_event("user.deleted", tenant, gone, 2),
            user_event("user.created", tenant, fixed, 1, given_name="Fixed"),
            user_event("user.updated", tenant, fixed, 2, given_name="Right"),
            user_event("user.created", tenant, gone, 1, given_name="Gone"),  # the pre-delete snapshot, again
        ],
        partition=0,
    )
    # reconcile --fix re-sent fixed's latest (repair), then a stale duplicate of the same version follows.
    await produce(env.kafka, env.topic, [user_event("user.updated", tenant, fixed, 2, given_name="Right")], 0, REPAIR)
    await produce(env.kafka, env.topic, [user_event("user.updated", tenant, fixed, 2, given_name="Wrong")], 0)
    assert await rebuild_command("workspace", env.settings()) == 0
    members = {str(m["user_id"]): m for m in (await tables(env, "workspace"))["members"]}
    assert set(members) == {fixed}, "the deleted person is back"
    assert (members[fixed]["given_name"], members[fixed]["version"]) == ("Right", 2)


async def test_retention_during_the_rebuild_never_jumps_to_the_end(
    env: ConsumerEnv, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Retention deletes the start of a partition between the rebuild's two passes over the user topic."""
    tenant = str(uuid.uuid4())
    users = [str(uuid.uuid4()) for _ in range(5)]
    await produce(env.kafka, env.topic, [user_event("user.created", tenant, u, 1) for u in users], partition=0)
    first_pass = rebuild_module._last_offsets

    async def retention_strikes(*args: Any) -> Any:
        kept = await first_pass(*args)
        admin = AIOKafkaAdminClient(bootstrap_servers=env.kafka)
        await admin.start()
        try:
            await admin.delete_records({TopicPartition(env.topic, 0): RecordsToDelete(2)})
        finally:
            await admin.close()
        return kept

    monkeypatch.setattr(rebuild_module, "_last_offsets", retention_strikes)
    capsys.readouterr()
    assert await rebuild_command("workspace", env.settings()) == 0
    out, err = capsys.readouterr()
    members = {str(m["user_id"]) for m in (await tables(env, "workspace"))["members"]}
    assert members == set(users[2:]), "what retention left must be applied, not skipped to the end"
    warnings = summary_of(out)["warnings"]
    assert any(f"{env.topic}: retention deleted events of partitions [0] during the rebuild" in w for w in warnings)
    assert "warning:" in err


class Crash(BaseException):
    """The rebuild process dying at this point (kill -9, lost host): nothing the rebuild handles."""


def crashing(*_: Any) -> Awaitable[Any]:
    raise Crash


async def test_a_rebuild_that_dies_before_committing_its_start_leaves_no_empty_projection_behind(
    env: ConsumerEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = str(uuid.uuid4())
    user_events, group_events = workspace_history(tenant)
    await produce(env.kafka, env.topic, user_events)
    await produce(env.kafka, env.group_topic, group_events)
    async with running("workspace", env.settings()) as consumer:
        await until_idle(consumer, len(user_events) + len(group_events))
    before = await tables(env, "workspace")

    monkeypatch.setattr(rebuild_module, "_commit", crashing)  # its first offset commit
    with pytest.raises(Crash):
        await rebuild_command("workspace", env.settings())
    monkeypatch.undo()
    # The live consumer starts again: whatever it finds, the projection must end up whole (not empty).
    first = user_events[0]["subject"]
    later = user_event(
        "user.updated", tenant, first, 3, user_name="u0@example.com", family_name="K", given_name="Later"
    )
    await produce(env.kafka, env.topic, [later])
    async with running("workspace", env.settings()) as consumer:
        conn = await db_connect(env)
        try:
            await eventually(lambda: _member_named(conn, "Later"), 30, "the later event applied")
        finally:
            await conn.close()
    changed = ("updated_at", "given_name", "display_name", "manager_id", "version")  # what the later event changed
    assert _without(await tables(env, "workspace"), changed) == _without(before, changed)


async def test_a_rebuild_that_dies_after_clearing_holds_the_consumer_until_it_is_run_again(
    env: ConsumerEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Booking: the live consumer must not replay the whole history into a cleared projection (it would cancel
    bookings with an old deactivation); it waits for the rebuild to be run again."""
    tenant, ada = str(uuid.uuid4()), str(uuid.uuid4())
    await produce(
        env.kafka,
        env.topic,
        [
            user_event("user.created", tenant, ada, 1),
            user_event("user.deactivated", tenant, ada, 2),
            user_event("user.reactivated", tenant, ada, 3),
        ],
    )
    async with running("booking", env.settings()) as consumer:
        await until_idle(consumer, 3)
    conn = await db_connect(env)
    try:
        desk = await service.add_desk(conn, tenant, "1.01")
        soon = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
        booking = await service.book(conn, tenant, ada, desk.id, soon, soon + timedelta(hours=4))
        monkeypatch.setattr(rebuild_module, "_last_offsets", crashing)  # dies once it read anything
        with pytest.raises(Crash):
            await rebuild_command("booking", env.settings())
        monkeypatch.undo()
        assert await conn.fetchval("SELECT count(*) FROM booking.users WHERE tenant_id = $1", tenant) == 0

        async with running("booking", env.settings()) as consumer:
            await eventually(lambda: _logged_pending(consumer), 20, "the consumer to report the pending rebuild")
            assert consumer.metrics.handled == 0, "it applied events into a half-rebuilt projection"
            # A waiting consumer holds no partition, so it reports no lag: the gauge is what an alert can see.
            assert _pending_gauge(consumer) == 1.0
        assert await rebuild_command("booking", env.settings()) == 0
        async with running("booking", env.settings()) as consumer:
            await produce(env.kafka, env.topic, [user_event("user.updated", tenant, ada, 4)])
            await until_idle(consumer, 1)
            assert _pending_gauge(consumer) == 0.0
        row = await conn.fetchrow("SELECT eligible, version FROM booking.users WHERE user_id = $1", ada)
        assert (row["eligible"], row["version"]) == (True, 4)
        status = await conn.fetchval("SELECT status FROM booking.bookings WHERE id = $1", booking.id)
        assert status == "confirmed", "an old deactivation was replayed over the booking"
    finally:
        await conn.close()


async def _logged_pending(consumer: Any) -> bool:
    return bool(consumer.rebuild_pending)


def _pending_gauge(consumer: Any) -> float | None:
    """scimsync_consumer_rebuild_pending as the consumer's /metrics renders it (None: not exported)."""
    for line in consumer.metrics.render().splitlines():
        if line.startswith("scimsync_consumer_rebuild_pending{"):
            return float(line.rsplit(" ", 1)[1])
    return None


async def _member_named(conn: Any, name: str) -> bool:
    return bool(await conn.fetchval("SELECT count(*) FROM workspace.members WHERE given_name = $1", name))


def _without(state: dict[str, list[dict[str, Any]]], columns: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    return {
        table: sorted(({k: v for k, v in r.items() if k not in columns} for r in rows), key=repr)
        for table, rows in state.items()
    }
