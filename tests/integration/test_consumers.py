"""The consumer runtime over real Kafka and Postgres: dedupe, replay, dead letters, stop, kill, rebalance, metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from consumers.runtime.domain import Domain, Stream
from consumers.runtime.envelope import Event
from consumers.runtime.process import ConsumerProcess
from consumers.samples import produce, user_event
from tests.integration.conftest import Stack
from tests.integration.test_consumers_helpers import (
    ConsumerEnv,
    db_connect,
    eventually,
    new_env,
    read_topic,
    running,
    spawn,
    until_idle,
)


@pytest.fixture
async def env(database_url: str, stack: Stack) -> ConsumerEnv:
    return await new_env(database_url, stack.kafka)


def lifecycle(tenant: str, user: str) -> list[dict[str, Any]]:
    return [
        user_event("user.created", tenant, user, 1),
        user_event("user.updated", tenant, user, 2, family_name="Byron"),
        user_event("user.deactivated", tenant, user, 3, family_name="Byron"),
        user_event("user.reactivated", tenant, user, 4, family_name="Byron"),
        user_event("user.updated", tenant, user, 5, family_name="King", department="R&D"),
    ]


async def domain_state(conn: Any, tenant: str) -> dict[str, Any]:
    """Everything both domains hold for a tenant, rows as they are (timestamps included)."""
    queries = {
        "booking.users": "SELECT * FROM booking.users WHERE tenant_id = $1 ORDER BY user_id",
        "booking.bookings": "SELECT * FROM booking.bookings WHERE tenant_id = $1 ORDER BY id",
        "workspace.members": "SELECT * FROM workspace.members WHERE tenant_id = $1 ORDER BY user_id",
        "workspace.versions": "SELECT * FROM workspace.versions WHERE tenant_id = $1 ORDER BY user_id",
    }
    return {name: [dict(r) for r in await conn.fetch(sql, tenant)] for name, sql in queries.items()}


async def test_duplicated_and_replayed_deliveries_change_nothing(env: ConsumerEnv) -> None:
    tenant = str(uuid.uuid4())
    users = [str(uuid.uuid4()) for _ in range(20)]
    events = [e for u in users for e in lifecycle(tenant, u)]
    events.append(user_event("user.deleted", tenant, users[0], 6))
    # Every event delivered twice in a row (a relay re-sending after a crash), plus an event type from the future.
    future = {**user_event("user.updated", tenant, users[1], 7), "type": "user.merged"}
    await produce(env.kafka, env.topic, [e for e in events for _ in range(2)] + [future])
    total = 2 * len(events) + 1
    async with running("booking", env.settings()) as booking, running("workspace", env.settings()) as workspace:
        await until_idle(booking, total)
        await until_idle(workspace, total)
    for consumer in (booking, workspace):
        assert consumer.metrics.counts["applied"] == len(events)
        assert consumer.metrics.counts["skipped_duplicate"] == len(events)
        assert consumer.metrics.counts["skipped_unknown_type"] == 1
    conn = await db_connect(env)
    try:
        before = await domain_state(conn, tenant)
        assert len(before["booking.users"]) == 20 and len(before["workspace.members"]) == 19
        # A replay: the same range re-delivered on the topic, and a rebuilt consumer group reading it all again.
        await produce(env.kafka, env.topic, events)
        replay = env.settings(group_prefix=f"{env.topic}.replay.")
        async with running("booking", env.settings()) as again, running("booking", replay) as rebuilt:
            await until_idle(again, len(events))
            await until_idle(rebuilt, 3 * len(events) + 1)
        assert again.metrics.counts["applied"] == rebuilt.metrics.counts["applied"] == 0
        assert await domain_state(conn, tenant) == before
    finally:
        await conn.close()


async def test_poison_messages_go_to_the_dlq_and_the_partition_keeps_moving(env: ConsumerEnv, tmp_path: Path) -> None:
    # A JSON Schema of our own, so the schema step is tested whatever schemas/events holds today.
    (tmp_path / "user.created.schema.json").write_bytes(
        orjson.dumps(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "required": ["data"],
                "properties": {"data": {"$ref": "user.schema.json"}},
            }
        )
    )
    (tmp_path / "user.schema.json").write_bytes(orjson.dumps({"type": "object", "required": ["userName"]}))
    tenant, user = str(uuid.uuid4()), str(uuid.uuid4())
    no_user_name = user_event("user.created", tenant, user, 1)
    del no_user_name["data"]["userName"]
    no_active = user_event("user.updated", tenant, user, 2)
    del no_active["data"]["active"]
    records: list[dict[str, Any] | bytes] = [
        b'{"specversion": "1.0", "id": ',  # not JSON
        no_user_name,  # fails the JSON Schema
        no_active,  # fails the envelope rules
        user_event("user.created", tenant, user, 1),
        user_event("user.updated", tenant, user, 2, family_name="Byron"),
    ]
    await produce(env.kafka, env.topic, records, partition=0)
    async with running("workspace", env.settings(schemas_dir=tmp_path)) as consumer:
        await until_idle(consumer, len(records))
    assert consumer.metrics.counts["dead_lettered"] == 3
    dead = await read_topic(env.kafka, env.dlq, expected=3)
    assert len(dead) == 3
    dead.sort(key=lambda r: int(dict(r.headers)["dlq_offset"]))
    headers = [dict(r.headers) for r in dead]
    assert [h["dlq_error"].decode().split(":")[0] for h in headers] == ["json", "schema", "envelope"]
    assert all(h["dlq_topic"] == env.topic.encode() and h["dlq_partition"] == b"0" for h in headers)
    assert [int(h["dlq_offset"]) for h in headers] == [0, 1, 2]
    assert headers[1]["ce_type"] == b"user.created" and headers[1]["dlq_group"] == f"{env.topic}.workspace".encode()
    assert dead[0].value == records[0]
    conn = await db_connect(env)
    try:
        row = await conn.fetchrow("SELECT version, family_name FROM workspace.members WHERE user_id = $1", user)
    finally:
        await conn.close()
    assert dict(row) == {"version": 2, "family_name": "Byron"}


def _recording_domain(tmp_path: Path, explode: str = "explode@example.com") -> tuple[Domain, str, list[str]]:
    """A domain whose handler records each event with its transaction id, and fails for `explode`.
    → the domain, its schema, the ids of the events the handler failed on (once per attempt)."""
    schema = f"recording_{uuid.uuid4().hex[:8]}"
    sql = tmp_path / "schema.sql"
    sql.write_text(
        f"CREATE SCHEMA IF NOT EXISTS {schema};"
        f"CREATE TABLE IF NOT EXISTS {schema}.versions (tenant_id uuid, user_id uuid, version bigint NOT NULL,"
        " PRIMARY KEY (tenant_id, user_id));"
        f"CREATE TABLE IF NOT EXISTS {schema}.applied (event_id uuid PRIMARY KEY, tx bigint NOT NULL);"
    )
    attempts: list[str] = []

    async def record(conn: Any, event: Event) -> None:
        if event.data.get("userName") == explode:
            attempts.append(event.id)
            raise RuntimeError("handler bug")
        await conn.execute(f"INSERT INTO {schema}.applied VALUES ($1, txid_current())", event.id)

    streams = {"user_topic": Stream(f"{schema}.versions", {"user.created": record})}
    return Domain(name="recording", schema_sql=sql, streams=streams), schema, attempts


async def _run_until_idle(domain: Domain, env: ConsumerEnv, total: int) -> ConsumerProcess:
    process = ConsumerProcess(domain, env.settings())
    await process.start()
    task = asyncio.create_task(process.run())
    try:
        await until_idle(process, total)
    finally:
        process.stop()
        await task
        await process.close()
    return process


async def test_a_handler_failing_every_attempt_is_dead_lettered_and_the_rest_applied(
    env: ConsumerEnv, tmp_path: Path
) -> None:
    domain, schema, attempts = _recording_domain(tmp_path)
    tenant = str(uuid.uuid4())
    good = [user_event("user.created", tenant, str(uuid.uuid4()), 1) for _ in range(4)]
    bad = user_event("user.created", tenant, str(uuid.uuid4()), 1, user_name="explode@example.com")
    await produce(env.kafka, env.topic, [*good[:2], bad, *good[2:]], partition=1)
    process = await _run_until_idle(domain, env, 5)
    assert process.metrics.counts["applied"] == 4
    assert process.metrics.counts["dead_lettered"] == 1
    assert process.metrics.counts["handler_retries"] == 2
    assert len(attempts) == 1 + 3  # the batch, then three attempts on its own
    dead = await read_topic(env.kafka, env.dlq, expected=1)
    headers = dict(dead[0].headers)
    assert headers["dlq_error"].startswith(b"handler: RuntimeError: handler bug")
    assert headers["dlq_attempts"] == b"3" and headers["dlq_offset"] == b"2" and headers["ce_id"] == bad["id"].encode()
    conn = await db_connect(env)
    try:
        applied = {str(r["event_id"]) for r in await conn.fetch(f"SELECT event_id FROM {schema}.applied")}
    finally:
        await conn.close()
    assert applied == {e["id"] for e in good}


async def test_a_small_fetch_over_several_partitions_commits_once(env: ConsumerEnv, tmp_path: Path) -> None:
    domain, schema, _ = _recording_domain(tmp_path)
    tenant = str(uuid.uuid4())
    spread = {p: [user_event("user.created", tenant, str(uuid.uuid4()), 1) for _ in range(2)] for p in (0, 1, 2)}
    for partition, events in spread.items():
        await produce(env.kafka, env.topic, events, partition=partition)
    process = await _run_until_idle(domain, env, 6)
    assert process.metrics.counts["applied"] == 6
    conn = await db_connect(env)
    try:
        tx = {str(r["event_id"]): r["tx"] for r in await conn.fetch(f"SELECT event_id, tx FROM {schema}.applied")}
    finally:
        await conn.close()
    assert set(tx) == {e["id"] for events in spread.values() for e in events}
    # Fetched together (they were all there before the consumer started): one transaction for all partitions.
    assert len(set(tx.values())) < len(spread), tx


async def test_a_poison_event_in_a_shared_fetch_holds_back_only_itself(env: ConsumerEnv, tmp_path: Path) -> None:
    domain, schema, attempts = _recording_domain(tmp_path)
    tenant = str(uuid.uuid4())
    good = {p: [user_event("user.created", tenant, str(uuid.uuid4()), 1) for _ in range(3)] for p in (0, 2)}
    bad = user_event("user.created", tenant, str(uuid.uuid4()), 1, user_name="explode@example.com")
    for partition, events in good.items():
        await produce(env.kafka, env.topic, events, partition=partition)
    await produce(env.kafka, env.topic, [bad], partition=1)
    process = await _run_until_idle(domain, env, 7)
    assert process.metrics.counts["applied"] == 6
    assert process.metrics.counts["dead_lettered"] == 1
    assert len(attempts) >= 1 + 3  # the shared fetch and/or its partition's batch, then three attempts on its own
    dead = await read_topic(env.kafka, env.dlq, expected=1)
    assert dict(dead[0].headers)["ce_id"] == bad["id"].encode()
    conn = await db_connect(env)
    try:
        applied = {str(r["event_id"]) for r in await conn.fetch(f"SELECT event_id FROM {schema}.applied")}
    finally:
        await conn.close()
    assert applied == {e["id"] for events in good.values() for e in events}


async def test_sigterm_finishes_the_batch_and_commits(env: ConsumerEnv) -> None:
    tenant = str(uuid.uuid4())
    users = [str(uuid.uuid4()) for _ in range(400)]
    events = [e for u in users for e in lifecycle(tenant, u)]
    proc = spawn("booking", env, "consumer-sigterm", SCIMSYNC_CONSUMER_BATCH_SIZE="200")
    conn = await db_connect(env)
    try:
        await produce(env.kafka, env.topic, events)

        async def some_applied() -> bool:
            n = await conn.fetchval("SELECT count(*) FROM booking.users WHERE tenant_id = $1", tenant)
            return bool(n > 50)

        await eventually(some_applied, 30, "the consumer to start applying")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
        # Everything applied before the stop was committed: a restart finds no duplicates, only new work.
        async with running("booking", env.settings()) as restarted:
            await until_idle(restarted, 0)
            await eventually(
                lambda: _count(conn, tenant, 5, len(users)), 60, "all users at their last version after restart"
            )
        assert restarted.metrics.counts["skipped_duplicate"] == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        await conn.close()


async def _count(conn: Any, tenant: str, version: int, expected: int) -> bool:
    n = await conn.fetchval("SELECT count(*) FROM booking.users WHERE tenant_id = $1 AND version = $2", tenant, version)
    return bool(n == expected)


async def test_consumers_killed_mid_batch_converge_after_restart(env: ConsumerEnv) -> None:
    tenant = str(uuid.uuid4())
    users = [str(uuid.uuid4()) for _ in range(600)]
    deleted = set(users[::3])
    events = [e for u in users for e in lifecycle(tenant, u)]
    events += [user_event("user.deleted", tenant, u, 6) for u in users if u in deleted]
    next_week = datetime.now(UTC) + timedelta(days=7)
    conn = await db_connect(env)
    try:
        desk = await conn.fetchval("INSERT INTO booking.desks (tenant_id, name) VALUES ($1, 'D1') RETURNING id", tenant)
        await conn.executemany(
            "INSERT INTO booking.bookings (tenant_id, user_id, desk_id, starts_at, ends_at, booked_by_name) "
            "VALUES ($1, $2, $3, $4, $4::timestamptz + interval '8 hours', 'Ada Lovelace')",
            [(tenant, u, desk, next_week + timedelta(minutes=i)) for i, u in enumerate(users)],
        )
        procs = [
            spawn(d, env, f"consumer-kill-{d}", SCIMSYNC_CONSUMER_BATCH_SIZE="300") for d in ("booking", "workspace")
        ]
        await produce(env.kafka, env.topic, events)

        async def both_midway() -> bool:
            b = await conn.fetchval("SELECT count(*) FROM booking.users WHERE tenant_id = $1", tenant)
            w = await conn.fetchval("SELECT count(*) FROM workspace.versions WHERE tenant_id = $1", tenant)
            return bool(b > 100 and w > 100)

        await eventually(both_midway, 60, "both consumers to be applying")
        for proc in procs:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        progress = await conn.fetchval(
            "SELECT count(*) FROM booking.users WHERE tenant_id = $1 AND version = 6", tenant
        )
        assert progress < len(deleted), "killed after the end: make the burst bigger"
        async with running("booking", env.settings()) as booking, running("workspace", env.settings()) as workspace:
            await until_idle(booking, 0)
            await until_idle(workspace, 0)

            async def converged() -> bool:
                b = await conn.fetchval(
                    "SELECT count(*) FROM booking.users WHERE tenant_id = $1 AND version = CASE WHEN deleted THEN 6 "
                    "ELSE 5 END",
                    tenant,
                )
                w = await conn.fetchval(
                    "SELECT count(*) FROM workspace.versions WHERE tenant_id = $1 AND version = CASE WHEN "
                    "user_id = ANY ($2::uuid[]) THEN 6 ELSE 5 END",
                    tenant,
                    list(deleted),
                )
                lag = booking.metrics.total_lag + workspace.metrics.total_lag
                return bool(b == len(users) and w == len(users)) and lag == 0

            await eventually(converged, 90, "both domains to converge")
        state = await domain_state(conn, tenant)
    finally:
        await conn.close()
    by_user = {str(r["user_id"]): r for r in state["booking.users"]}
    for user in users:
        row = by_user[user]
        if user in deleted:
            assert (row["deleted"], row["eligible"], row["display_name"], row["version"]) == (True, False, None, 6)
        else:
            assert (row["deleted"], row["eligible"], row["display_name"], row["version"]) == (
                False,
                True,
                "Ada King",
                5,
            )
    assert all(
        b["status"] == "cancelled" and b["cancel_reason"] == "user_deactivated" for b in state["booking.bookings"]
    )
    names = {str(b["user_id"]): b["booked_by_name"] for b in state["booking.bookings"]}
    assert all(names[u] is None if u in deleted else names[u] == "Ada King" for u in users)
    members = {str(m["user_id"]): m for m in state["workspace.members"]}
    assert set(members) == set(users) - deleted
    assert all(m["version"] == 5 and m["family_name"] == "King" and m["active"] for m in members.values())


async def test_a_rebalance_in_the_middle_loses_nothing(env: ConsumerEnv) -> None:
    tenant = str(uuid.uuid4())
    users = [str(uuid.uuid4()) for _ in range(300)]
    events = [e for u in users for e in lifecycle(tenant, u)]
    conn = await db_connect(env)
    try:
        async with running("workspace", env.settings(batch_size=100)) as first:
            await produce(env.kafka, env.topic, events[: len(events) // 2])
            async with running("workspace", env.settings(batch_size=100)) as second:  # joins: partitions move
                await produce(env.kafka, env.topic, events[len(events) // 2 :])

                async def done() -> bool:
                    n = await conn.fetchval(
                        "SELECT count(*) FROM workspace.members WHERE tenant_id = $1 AND version = 5", tenant
                    )
                    return bool(n == len(users))

                await eventually(done, 60, "every member at version 5")
            # The second one leaves: its partitions come back to the first.
            await produce(env.kafka, env.topic, [user_event("user.deleted", tenant, u, 6) for u in users[:10]])
            await eventually(
                lambda: _members(conn, tenant, len(users) - 10), 60, "the deletions after the second consumer left"
            )
    finally:
        await conn.close()
    assert first.metrics.counts["applied"] + second.metrics.counts["applied"] == len(events) + 10
    assert first.metrics.counts["dead_lettered"] == second.metrics.counts["dead_lettered"] == 0


async def _members(conn: Any, tenant: str, expected: int) -> bool:
    return bool(await conn.fetchval("SELECT count(*) FROM workspace.members WHERE tenant_id = $1", tenant) == expected)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_metrics_endpoint_shows_counters_and_lag_per_partition(env: ConsumerEnv) -> None:
    tenant, user = str(uuid.uuid4()), str(uuid.uuid4())
    events = lifecycle(tenant, user)
    await produce(env.kafka, env.topic, [*events, events[0]])
    async with running("workspace", env.settings(metrics_port=_free_port())) as consumer:
        await until_idle(consumer, len(events) + 1)
        await eventually(lambda: _all_partitions_measured(consumer), 10, "lag for every partition")
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{consumer.metrics_port}/metrics")
            missing = await client.get(f"http://127.0.0.1:{consumer.metrics_port}/nope")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    labels = f'group="{env.topic}.workspace",topic="{env.topic}"'
    lines = set(response.text.splitlines())
    assert f"scimsync_consumer_applied_total{{{labels}}} 5" in lines
    assert f"scimsync_consumer_skipped_duplicate_total{{{labels}}} 1" in lines
    assert f"scimsync_consumer_dead_lettered_total{{{labels}}} 0" in lines
    assert {f'scimsync_consumer_lag{{{labels},partition="{p}"}} 0' for p in range(3)} <= lines
    assert missing.status_code == 404


async def _all_partitions_measured(consumer: ConsumerProcess) -> bool:
    return len(consumer.metrics.lag) == 6  # workspace: the user and the group topic, 3 partitions each


async def test_a_deployment_error_stops_the_consumer_without_committing_or_dead_lettering(
    env: ConsumerEnv, tmp_path: Path
) -> None:
    """A missing column is the deployment's fault, not the event's: stop, and let the events wait for the fix."""
    schema = f"broken_{uuid.uuid4().hex[:8]}"
    sql = tmp_path / "schema.sql"
    sql.write_text(
        f"CREATE SCHEMA IF NOT EXISTS {schema};"
        f"CREATE TABLE IF NOT EXISTS {schema}.versions (tenant_id uuid, user_id uuid, version bigint NOT NULL,"
        " PRIMARY KEY (tenant_id, user_id));"
    )

    async def broken(conn: Any, event: Event) -> None:
        await conn.execute(f"UPDATE {schema}.versions SET no_such_column = 1")

    domain = Domain(
        name="broken", schema_sql=sql, streams={"user_topic": Stream(f"{schema}.versions", {"user.created": broken})}
    )
    await produce(env.kafka, env.topic, [user_event("user.created", str(uuid.uuid4()), str(uuid.uuid4()), 1)])
    process = ConsumerProcess(domain, env.settings())
    await process.start()
    try:
        with pytest.raises(asyncpg.UndefinedColumnError):
            await asyncio.wait_for(process.run(), timeout=30)
    finally:
        await process.close()
    assert process.metrics.counts["dead_lettered"] == 0
    admin = AIOKafkaAdminClient(bootstrap_servers=env.kafka)
    await admin.start()
    try:
        assert await admin.list_consumer_group_offsets(f"{env.topic}.broken") == {}
    finally:
        await admin.close()
