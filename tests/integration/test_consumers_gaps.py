"""A gap in a group's versions is never stepped over: the group is held (metric, log line) until the missing
event arrives, then everything applies in order. Users (snapshots) may still skip ahead.
"""

from __future__ import annotations

import socket
import uuid
from typing import Any

import httpx
import orjson
import pytest

from consumers.samples import group_event, produce, user_event
from tests.integration.conftest import Stack
from tests.integration.test_consumers_helpers import (
    ROOT,
    ConsumerEnv,
    db_connect,
    eventually,
    new_env,
    running,
    spawn,
    until_idle,
)
from tests.integration.test_consumers_teams import teams


@pytest.fixture
async def env(database_url: str, stack: Stack) -> ConsumerEnv:
    return await new_env(database_url, stack.kafka)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def scrape(port: int) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    return {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in response.text.splitlines()
        if line and not line.startswith("#")
    }


def log_lines(name: str, event: str) -> list[dict[str, Any]]:
    lines = []
    for line in (ROOT / ".pytest_cache" / f"{name}.log").read_text().splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if entry.get("event") == event:
            lines.append(entry)
    return lines


async def test_a_dead_lettered_membership_change_holds_its_group_until_it_is_re_sent(env: ConsumerEnv) -> None:
    tenant, crew, other = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    ada, bob, cy = (str(uuid.uuid4()) for _ in range(3))
    lost = group_event("group.membership_changed", tenant, crew, 2, added=[bob])
    poison = {**lost, "data": {**lost["data"], "added": "not a list"}}  # fails its JSON Schema: the DLQ
    on_one_partition = [
        group_event("group.created", tenant, crew, 1, display_name="Crew", members=[ada]),
        poison,
        group_event("group.membership_changed", tenant, crew, 3, added=[cy]),
        # Another group behind it in the same partition is not held.
        group_event("group.created", tenant, other, 1, display_name="Other", members=[ada]),
        group_event("group.membership_changed", tenant, other, 2, added=[bob]),
    ]
    await produce(env.kafka, env.group_topic, on_one_partition, partition=0)
    port, name = _free_port(), f"gaps-{env.topic}"
    proc = spawn("workspace", env, name, SCIMSYNC_CONSUMER_METRICS_PORT=str(port))
    labels = f'group="{env.topic}.workspace",topic="{env.group_topic}"'
    conn = await db_connect(env)
    try:

        async def other_done() -> bool:
            team = (await teams(conn, tenant)).get(other)
            return team is not None and team["version"] == 2

        await eventually(other_done, 60, "the other group's events applied")
        crew_team = (await teams(conn, tenant))[crew]
        assert (crew_team["members"], crew_team["version"]) == ({ada}, 1), "version 3 must wait for version 2"
        assert (await teams(conn, tenant))[other]["members"] == {ada, bob}

        async def alerted() -> bool:
            metrics = await scrape(port)
            return metrics.get(f"scimsync_consumer_held_streams{{{labels}}}") == 1

        await eventually(alerted, 20, "the held-streams gauge at 1")
        metrics = await scrape(port)
        assert metrics[f"scimsync_consumer_held_total{{{labels}}}"] == 1
        assert metrics[f"scimsync_consumer_dead_lettered_total{{{labels}}}"] == 1
        [held] = log_lines(name, "consumer.stream_held")
        assert (held["group_id"], held["stored_version"], held["version"], held["missing"]) == (crew, 1, 3, [2, 2])
        assert (held["level"], held["tenant_id"], held["partition"], held["offset"]) == ("warning", tenant, 0, 2)

        # The fix is deployed and the lost event re-sent (as from the DLQ, or `scimsync replay --user`).
        await produce(env.kafka, env.group_topic, [lost])

        async def crew_right() -> bool:
            team = (await teams(conn, tenant))[crew]
            return bool(team["members"] == {ada, bob, cy} and team["version"] == 3)

        await eventually(crew_right, 30, "the crew team right again, at version 3")
        await eventually(lambda: _gauge_is(port, labels, 0), 20, "the held-streams gauge back at 0")
        [released] = log_lines(name, "consumer.stream_released")
        assert (released["group_id"], released["released"], released["version"]) == (crew, 1, 3)
        assert released["still_held"] == 0
        assert await conn.fetchval("SELECT count(*) FROM workspace.held_group_events WHERE tenant_id = $1", tenant) == 0
    finally:
        await conn.close()
        proc.terminate()
        proc.wait(timeout=30)


async def _gauge_is(port: int, labels: str, value: float) -> bool:
    return (await scrape(port)).get(f"scimsync_consumer_held_streams{{{labels}}}") == value


async def test_held_events_release_in_order_past_several_gaps_and_duplicates(env: ConsumerEnv) -> None:
    """A group first seen past its creation is held too; versions arrive 4, 2, 4 (duplicate), 1, 3."""
    tenant, crew = str(uuid.uuid4()), str(uuid.uuid4())
    ada, bob, cy, dee = (str(uuid.uuid4()) for _ in range(4))
    history = [
        group_event("group.created", tenant, crew, 1, display_name="Crew", members=[ada]),
        group_event("group.membership_changed", tenant, crew, 2, added=[bob]),
        group_event("group.membership_changed", tenant, crew, 3, added=[cy], removed=[ada]),
        group_event("group.membership_changed", tenant, crew, 4, added=[dee], removed=[bob]),
    ]
    v1, v2, v3, v4 = history
    async with running("workspace", env.settings()) as consumer:
        await produce(env.kafka, env.group_topic, [v4, v2, v4])
        await until_idle(consumer, 3)
        conn = await db_connect(env)
        try:
            assert crew not in await teams(conn, tenant)
            assert consumer.metrics.counts["held"] == 3  # the duplicate of 4 is held once (same version)
            await produce(env.kafka, env.group_topic, [v1])
            await until_idle(consumer, 4)
            state = (await teams(conn, tenant))[crew]
            assert (state["members"], state["version"]) == ({ada, bob}, 2), "1 and the held 2 apply; 4 still waits"
            await produce(env.kafka, env.group_topic, [v3])
            await until_idle(consumer, 5)
            state = (await teams(conn, tenant))[crew]
            assert (state["members"], state["version"]) == ({cy, dee}, 4)
            assert consumer.metrics.counts["released"] == 2
            held = await conn.fetchval("SELECT count(*) FROM workspace.held_group_events WHERE tenant_id = $1", tenant)
            assert held == 0
        finally:
            await conn.close()


async def test_a_user_snapshot_may_still_skip_ahead(env: ConsumerEnv) -> None:
    tenant, user = str(uuid.uuid4()), str(uuid.uuid4())
    events = [user_event("user.created", tenant, user, 1), user_event("user.deactivated", tenant, user, 3)]
    await produce(env.kafka, env.topic, events)
    async with running("workspace", env.settings()) as consumer:
        await until_idle(consumer, 2)
        conn = await db_connect(env)
        try:
            row = await conn.fetchrow("SELECT active, version FROM workspace.members WHERE user_id = $1", user)
        finally:
            await conn.close()
    assert (row["active"], row["version"]) == (False, 3)
    assert consumer.metrics.counts["held"] == 0
