"""`scimsync rebuild` over real Kafka and Postgres: the rebuilt projection equals the one it replaced.

A rebuild clears whole tables, so each test here has a database of its own (not the session's).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from consumers.booking import service
from consumers.cli import rebuild_command
from consumers.domains import DOMAINS
from consumers.runtime.database import connect
from consumers.samples import group_event, produce, user_event
from tests.integration.conftest import ROOT, Stack
from tests.integration.test_consumers_helpers import ConsumerEnv, db_connect, new_env, running, until_idle


@pytest.fixture
async def own_database(stack: Stack) -> AsyncIterator[str]:
    name = f"scimsync_rebuild_{uuid.uuid4().hex[:8]}"
    admin = await connect(stack.database_url)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(urlsplit(stack.database_url)._replace(path=f"/{name}"))
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


@pytest.fixture
async def env(own_database: str, stack: Stack) -> ConsumerEnv:
    return await new_env(own_database, stack.kafka)


async def tables(env: ConsumerEnv, domain: str, exclude: tuple[str, ...] = ()) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table of the domain's schema, sorted (columns in `exclude` left out)."""
    conn = await db_connect(env)
    try:
        schema = DOMAINS[domain].projection[0].split(".")[0]
        names = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1", schema
        )
        result = {}
        for row in names:
            rows = await conn.fetch(f"SELECT * FROM {schema}.{row['table_name']}")
            cleaned = [{k: v for k, v in r.items() if k not in exclude} for r in rows]
            result[row["table_name"]] = sorted(cleaned, key=lambda r: orjson.dumps(r, default=str))
        return result
    finally:
        await conn.close()


def workspace_history(tenant: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Users and groups with some history each: updates, deactivation, deletion, membership changes."""
    users = [str(uuid.uuid4()) for _ in range(6)]
    user_events = []
    for n, user in enumerate(users):
        user_events.append(user_event("user.created", tenant, user, 1, user_name=f"u{n}@example.com"))
        user_events.append(user_event("user.updated", tenant, user, 2, user_name=f"u{n}@example.com", family_name="K"))
    user_events.append(user_event("user.deactivated", tenant, users[1], 3, user_name="u1@example.com"))
    user_events.append(user_event("user.deleted", tenant, users[2], 3))
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    group_events = [
        group_event("group.created", tenant, a, 1, display_name="A", members=users[:3]),
        group_event("group.created", tenant, b, 1, display_name="B", members=users[2:5]),
        group_event("group.created", tenant, c, 1, display_name="C", members=[users[0]]),
        group_event("group.membership_changed", tenant, a, 2, added=[users[5]], removed=[users[0]]),
        group_event("group.membership_changed", tenant, a, 3, removed=[users[2]]),  # users[2] deleted
        group_event("group.membership_changed", tenant, b, 2, removed=[users[2]]),
        group_event("group.updated", tenant, b, 3, display_name="Bee", external_id="00gB"),
        group_event("group.deleted", tenant, c, 2),
    ]
    return user_events, group_events


def summary_of(out: str) -> dict[str, Any]:
    """The JSON summary the command prints last (in-process, the runtime's log lines share stdout)."""
    summary: dict[str, Any] = orjson.loads(out[out.rindex('{\n  "domain"') :])
    return summary


async def committed(env: ConsumerEnv, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=env.kafka)
    await admin.start()
    try:
        return {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group)).items()}
    finally:
        await admin.close()


async def end_offsets(env: ConsumerEnv, *topics: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=env.kafka)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in range(3)]
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def test_a_rebuilt_workspace_equals_the_one_it_replaced(
    env: ConsumerEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = str(uuid.uuid4())
    user_events, group_events = workspace_history(tenant)
    await produce(env.kafka, env.topic, user_events)
    await produce(env.kafka, env.group_topic, group_events)
    total = len(user_events) + len(group_events)
    async with running("workspace", env.settings()) as consumer:
        await until_idle(consumer, total)
    before = await tables(env, "workspace")
    assert len(before["teams"]) == 2 and len(before["team_members"]) == 4 and len(before["members"]) == 5

    # Drift the rebuild must undo: a lost member, a corrupted team, a gate row too far ahead.
    conn = await db_connect(env)
    try:
        await conn.execute("DELETE FROM workspace.members WHERE user_name = 'u0@example.com'")
        await conn.execute("UPDATE workspace.teams SET display_name = 'wrong'")
        await conn.execute("UPDATE workspace.group_versions SET version = 99")
    finally:
        await conn.close()

    capsys.readouterr()
    assert await rebuild_command("workspace", env.settings()) == 0
    summary = summary_of(capsys.readouterr().out)
    assert await tables(env, "workspace") == before
    assert summary["cleared"] == list(DOMAINS["workspace"].projection) and summary["kept"] == []
    users, groups = summary["topics"][env.topic], summary["topics"][env.group_topic]
    assert (users["partitions"], users["events_in_range"]) == (3, len(user_events))
    # The user topic: only each user's last event is applied (the others are superseded); the group topic: all.
    assert (users["applied"], users["superseded"]) == (6, len(user_events) - 6)
    assert (groups["applied"], groups["superseded"], groups["skipped"]) == (len(group_events), 0, 0)
    assert summary["offsets_committed"] is True and summary["warnings"] == [] and summary["seconds"] > 0
    group = env.settings().group_id("workspace")
    assert await committed(env, group) == await end_offsets(env, env.topic, env.group_topic)

    # The consumer carries on from the end: a new event is applied, nothing before it again.
    later = user_event("user.updated", tenant, user_events[0]["subject"], 3, given_name="Later")
    await produce(env.kafka, env.topic, [later])
    async with running("workspace", env.settings()) as consumer:
        await until_idle(consumer, 1)
        assert consumer.metrics.counts["applied"] == 1 and consumer.metrics.handled == 1


async def test_rebuild_refuses_while_the_group_has_members_unless_forced(
    env: ConsumerEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = str(uuid.uuid4())
    user_events, group_events = workspace_history(tenant)
    await produce(env.kafka, env.topic, user_events)
    await produce(env.kafka, env.group_topic, group_events)
    async with running("workspace", env.settings()) as consumer:
        await until_idle(consumer, len(user_events) + len(group_events))
        before = await tables(env, "workspace")
        capsys.readouterr()
        assert await rebuild_command("workspace", env.settings()) == 1
        out, err = capsys.readouterr()
        group = env.settings().group_id("workspace")
        assert (
            '"domain"' not in out and f"consumer group '{group}' has 1 active member(s): scimsync-workspace at" in err
        )
        assert "--force" in err
        assert await tables(env, "workspace") == before  # nothing touched

        assert await rebuild_command("workspace", env.settings(), force=True) == 0
        out, err = capsys.readouterr()
        summary = summary_of(out)
        assert summary["offsets_committed"] is False and "--force" in summary["warnings"][0]
        assert "warning: --force" in err
        assert await tables(env, "workspace") == before
        # The running consumer still works.
        await produce(env.kafka, env.topic, [user_event("user.created", tenant, str(uuid.uuid4()), 1)])
        await until_idle(consumer, len(user_events) + len(group_events) + 1)
    assert len((await tables(env, "workspace"))["members"]) == 6


def next_week(hour: int) -> datetime:
    return (datetime.now(UTC) + timedelta(days=7)).replace(hour=hour, minute=0, second=0, microsecond=0)


async def test_a_booking_rebuild_keeps_desks_and_bookings(env: ConsumerEnv) -> None:
    """Only booking.users is a projection. A deactivation in the history must not cancel later bookings."""
    tenant, ada, bob = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    history = [
        user_event("user.created", tenant, ada, 1, given_name="Ada"),
        user_event("user.created", tenant, bob, 1, given_name="Bob"),
        user_event("user.deactivated", tenant, ada, 2, given_name="Ada"),
    ]
    await produce(env.kafka, env.topic, history)
    async with running("booking", env.settings()) as consumer:
        await until_idle(consumer, 3)
        conn = await db_connect(env)
        try:
            desk = await service.add_desk(conn, tenant, "2.14")
            bob_booking = await service.book(conn, tenant, bob, desk.id, next_week(9), next_week(12))
            # Ada comes back and books: that booking was made after her deactivation.
            await produce(env.kafka, env.topic, [user_event("user.reactivated", tenant, ada, 3, given_name="Ada")])
            await until_idle(consumer, 4)
            ada_booking = await service.book(conn, tenant, ada, desk.id, next_week(13), next_week(17))
        finally:
            await conn.close()
    volatile = ("updated_at",)  # booking.users.updated_at is when the row was written
    before = await tables(env, "booking", exclude=volatile)

    # As an SRE runs it: the real command, a process of its own.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.cli",
        "rebuild",
        "booking",
        cwd=ROOT,
        env=env.environ(SCIMSYNC_LOG_LEVEL="warning"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, stderr.decode()
    summary = orjson.loads(stdout)
    assert summary["cleared"] == ["booking.users"] and summary["kept"] == ["booking.bookings", "booking.desks"]
    assert "booking domain's own data, not a projection" in summary["note"]
    assert (summary["applied"], summary["superseded"]) == (2, 2)
    after = await tables(env, "booking", exclude=volatile)
    assert after == before
    statuses = {str(b["id"]): b["status"] for b in after["bookings"]}
    assert statuses == {ada_booking.id: "confirmed", bob_booking.id: "confirmed"}


async def test_rebuild_since_a_time_reads_only_the_events_from_then(env: ConsumerEnv) -> None:
    tenant, old, new = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    await produce(env.kafka, env.topic, [user_event("user.created", tenant, old, 1)])
    await asyncio.sleep(0.01)  # Kafka timestamps are milliseconds
    since = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await produce(env.kafka, env.topic, [user_event("user.created", tenant, new, 1)])
    async with running("workspace", env.settings()) as consumer:
        await until_idle(consumer, 2)
    assert await rebuild_command("workspace", env.settings(), since=since) == 0
    members = (await tables(env, "workspace"))["members"]
    assert [str(m["user_id"]) for m in members] == [new]


async def test_rebuild_warns_when_retention_has_deleted_events(
    env: ConsumerEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant, user = str(uuid.uuid4()), str(uuid.uuid4())
    events = [user_event("user.created", tenant, user, 1), user_event("user.updated", tenant, user, 2)]
    await produce(env.kafka, env.topic, events, partition=0)
    admin = AIOKafkaAdminClient(bootstrap_servers=env.kafka)
    await admin.start()
    try:
        await admin.delete_records(
            {TopicPartition(env.topic, 0): RecordsToDelete(1)}
        )  # what retention does to old segments
    finally:
        await admin.close()
    capsys.readouterr()
    assert await rebuild_command("workspace", env.settings()) == 0
    out, err = capsys.readouterr()
    [warning] = summary_of(out)["warnings"]
    assert f"{env.topic}: partitions [0] no longer start at offset 0" in warning
    assert f"scimsync replay --topic {env.topic}" in warning and "warning:" in err


def test_rebuild_exits_2_when_kafka_is_unreachable(env: ConsumerEnv) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "rebuild", "workspace"],
        cwd=ROOT,
        env={**env.environ(), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert b"cannot rebuild workspace" in done.stderr and done.stdout == b""


def test_rebuild_exits_2_when_postgres_is_unreachable(env: ConsumerEnv) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "rebuild", "booking"],
        cwd=ROOT,
        env={**env.environ(), "DATABASE_URL": "postgresql://x:y@127.0.0.1:1/none"},
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert b"cannot rebuild booking" in done.stderr
