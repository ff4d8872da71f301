"""Relay failover when the leader's host vanishes: its Postgres traffic frozen by a proxy, no socket closed.

The leader reaches Postgres through a FreezableProxy (tests/integration/proxy.py), the standby directly. Freezing
the proxy is a power loss or a partition as Postgres and the leader see it. The standby must publish the events
written after the freeze within 15 s, nothing lost, per-user order kept, and the frozen leader must have stopped
publishing before the standby began. The measured figure is printed; repeat with
`.venv/bin/pytest tests/integration/test_relay_failover.py -q -s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.proxy import FreezableProxy
from tests.integration.test_relay import (
    RelayProcess,
    assert_applies_in_order,
    by_key,
    fill_outbox,
    read_topic,
    versions_seen,
    wait_published,
)

FAILOVER_BUDGET_S = 15.0


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[FreezableProxy]:
    parts = urlsplit(database_url)
    frozen = FreezableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await frozen.start()
    yield frozen
    frozen.thaw()
    await frozen.close()


@pytest.fixture
async def topic(stack: Any) -> AsyncIterator[str]:
    name = f"scimsync-failover-{uuid.uuid4().hex[:10]}"
    yield name
    with contextlib.suppress(Exception):
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka)
        await admin.start()
        try:
            await admin.delete_topics([name, f"{name}-groups"])
        finally:
            await admin.close()


def relay_env(database_url: str, kafka: str, topic: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "SCIMSYNC_USER_TOPIC": topic,
        "SCIMSYNC_GROUP_TOPIC": f"{topic}-groups",
        "SCIMSYNC_LOG_LEVEL": "info",
    }


def log_entries(relay: RelayProcess) -> list[dict[str, Any]]:
    entries = []
    for line in relay.log_path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            entries.append(orjson.loads(line))
    return entries


def at(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["timestamp"])


async def test_a_standby_takes_over_within_15_s_of_the_leaders_network_freezing(
    proxy: FreezableProxy, database_url: str, stack: Any, topic: str, db: Any
) -> None:
    through_proxy = urlunsplit(urlsplit(database_url)._replace(netloc=_netloc(database_url, proxy.port)))
    leader = RelayProcess(relay_env(through_proxy, stack.kafka, topic), f"{topic}-leader")
    standby: RelayProcess | None = None
    try:
        await leader.wait_for("relay.active")
        standby = RelayProcess(relay_env(database_url, stack.kafka, topic), f"{topic}-standby")
        await standby.wait_for("relay.standby")

        tenant_id = uuid.uuid4()
        expected = await fill_outbox(db, tenant_id, users=50, versions=4)
        await wait_published(db, tenant_id)

        proxy.freeze()
        frozen_at = time.monotonic()
        expected |= await fill_outbox(db, tenant_id, users=50, versions=4)
        await wait_published(db, tenant_id, within=60)
        failover = time.monotonic() - frozen_at
        print(f"\nrelay failover after the leader's network froze: {failover:.1f} s")
        assert failover <= FAILOVER_BUDGET_S, f"the standby took {failover:.1f} s"

        records = await read_topic(stack.kafka, topic, versions_seen(str(tenant_id), expected))
        assert_applies_in_order(by_key(records, str(tenant_id)), expected)

        # No split brain: the cut-off leader stopped publishing before the standby started.
        [took_over] = [e for e in log_entries(standby) if e["event"] == "relay.active"]
        published = [e for e in log_entries(leader) if e["event"] == "outbox.published"]
        assert published and max(at(e) for e in published) < at(took_over)
        deadline = time.monotonic() + 15  # the leader notices too (its statement times out after the lease)
        while not any(e["event"] == "relay.lease_lost" for e in log_entries(leader)):
            assert time.monotonic() < deadline, leader.log_path.read_text()
            await asyncio.sleep(0.1)

        # The network comes back: the old leader rejoins as a standby, and doesn't publish.
        proxy.thaw()
        deadline = time.monotonic() + 30
        while [e["event"] for e in log_entries(leader)].count("relay.standby") < 1:
            assert time.monotonic() < deadline, leader.log_path.read_text()
            await asyncio.sleep(0.1)
    finally:
        proxy.thaw()
        leader.stop()
        if standby is not None:
            standby.stop()


async def test_a_leader_waiting_for_a_kafka_that_never_answers_keeps_its_lease(
    database_url: str, topic: str, db: Any
) -> None:
    """Kafka's host black-holed (connections accepted, nothing answered): every send runs to the lease's deadline,
    then the relay backs off. Postgres must not take that silence for a vanished leader and end its session."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass
        writer.close()

    black_hole = await asyncio.start_server(silent, "127.0.0.1", 0)
    kafka = f"127.0.0.1:{black_hole.sockets[0].getsockname()[1]}"
    env = {**relay_env(database_url, kafka, topic), "SCIMSYNC_RELAY_LEASE_SECONDS": "3"}
    relay = RelayProcess(env, f"{topic}-black-hole")
    try:
        await relay.wait_for("relay.active")
        await fill_outbox(db, uuid.uuid4(), users=1, versions=1)
        deadline = time.monotonic() + 60
        while relay.events().count("relay.kafka_unavailable") < 4:  # pauses of 0.5, 1 and 1.5 s after sends of 2.4 s
            assert time.monotonic() < deadline, relay.log_path.read_text()
            await asyncio.sleep(0.1)
        events = relay.events()
        assert "relay.lease_lost" not in events and "relay.database_unavailable" not in events, events
        assert events.count("relay.active") == 1, "the lock was held throughout"
    finally:
        relay.stop()
        black_hole.close()


def _netloc(database_url: str, port: int) -> str:
    parts = urlsplit(database_url)
    credentials = parts.netloc.rpartition("@")[0]
    return f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
