"""The outbox gate against real Postgres and Kafka: a record Kafka refuses for good is parked, stops only its own
stream, is listed and re-sent by the CLI; and a batch held through an outage publishes no erased personal data.

Relays run as subprocesses (fixtures of test_relay.py). The session database is shared by every test, so each
test removes its own events at the end: a parked event left behind would stay unpublished for the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from . import test_relay
from .proxy import splice
from .test_relay import RelayProcess, assert_applies_in_order, by_key, fill_outbox, versions_seen, wait_published
from .topics import TopicReader, read_to_the_end, read_topic

relays, topic = test_relay.relays, test_relay.topic  # fixtures: relays on this test's own topic


async def add_event(db: Any, tenant: uuid.UUID, user: uuid.UUID, version: int, **extra: Any) -> int:
    """One user event straight into the outbox; its sequence."""
    data = {"id": str(user), "userName": f"{user}@example.com", "active": True, **extra}
    kind = "user.created" if version == 1 else "user.updated"
    return int(
        await db.fetchval(
            "INSERT INTO events (id, tenant_id, aggregate, subject, type, version, occurred_at, data)"
            " VALUES (gen_random_uuid(), $1, 'user', $2, $3, $4, now(), $5) RETURNING sequence",
            tenant,
            user,
            kind,
            version,
            data,
        )
    )


@pytest.fixture
async def tenants(db: Any) -> AsyncIterator[list[uuid.UUID]]:
    """Tenant ids for this test; their events are removed at the end (a parked one would wait all session)."""
    made: list[uuid.UUID] = []
    yield made
    await db.execute("DELETE FROM events WHERE tenant_id = ANY($1::uuid[])", made)


def new_tenant(tenants: list[uuid.UUID]) -> uuid.UUID:
    tenants.append(uuid.uuid4())
    return tenants[-1]


async def state_of(db: Any, sequences: list[int]) -> list[tuple[bool, str | None]]:
    rows = await db.fetch(
        "SELECT published_at IS NOT NULL AS published, state FROM events WHERE sequence = ANY($1) ORDER BY sequence",
        sequences,
    )
    return [(r["published"], r["state"]) for r in rows]


async def until(check: Callable[[], Any], within: float = 30, what: str = "condition") -> None:
    """Poll `check` (a bool or an awaitable of one) until true."""
    deadline = asyncio.get_running_loop().time() + within
    while not (await result if inspect.isawaitable(result := check()) else result):
        assert asyncio.get_running_loop().time() < deadline, f"no {what} within {within} s"
        await asyncio.sleep(0.05)


async def cli(database_url: str, kafka: str, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "SCIMSYNC_LOG_LEVEL": "warning",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def parked_logs(relay: RelayProcess) -> list[dict[str, Any]]:
    out = []
    for line in relay.log_path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("event") == "relay.event_parked":
                out.append(entry)
    return out


def gauge(metrics: str, name: str) -> float:
    return next(float(line.split()[1]) for line in metrics.splitlines() if line.startswith(name))


# --- a record over the producer's limit ----------------------------------------------------------------------


async def test_an_event_kafka_refuses_is_parked_and_stops_only_its_own_stream(
    db: Any,
    database_url: str,
    api_url: str,
    stack: Any,
    topic: str,
    relays: Callable[..., RelayProcess],
    tenants: list[uuid.UUID],
) -> None:
    """An event over 1 MiB already in the log (written before the write-time limits existed)."""
    acme, ada = new_tenant(tenants), uuid.uuid4()
    first = await add_event(db, acme, ada, 1)
    huge = await add_event(db, acme, ada, 2, title="x" * 1_100_000)
    after = await add_event(db, acme, ada, 3)
    other = new_tenant(tenants)
    expected = await fill_outbox(db, other, users=20, versions=3)  # another tenant's events, after the huge one

    relay = relays()
    async with TopicReader(stack.kafka, topic) as reader:
        await wait_published(db, other)  # today: nothing after the huge event is ever published
        await reader.wait_until(versions_seen(str(other), expected))
        assert await state_of(db, [first, huge, after]) == [(True, None), (False, "parked"), (False, None)]
        reason = await db.fetchval("SELECT state_reason FROM events WHERE sequence = $1", huge)
        assert reason.startswith("MessageSizeTooLargeError")

        # Later traffic flows; the parked event isn't retried, and its user's later event still waits.
        expected |= await fill_outbox(db, other, users=5, versions=2)
        await wait_published(db, other)
        await reader.wait_until(versions_seen(str(other), expected))
        assert [r.version for r in by_key(reader.records, str(acme))[f"{acme}:{ada}"]] == [1]
        assert await state_of(db, [huge, after]) == [(False, "parked"), (False, None)]
    [logged] = parked_logs(relay)  # logged once
    assert (logged["sequence"], logged["tenant_id"], logged["held_back"]) == (huge, str(acme), 1)  # v3, same batch
    assert logged["reason"] == reason and logged["level"] == "error"

    # Listed for the SRE, counted in /metrics; the relay lag's age isn't raised by a stream that waits on purpose.
    code, out, _ = await cli(database_url, stack.kafka, "relay", "parked", "--tenant", str(acme))
    assert code == 0
    [listed] = json.loads(out)
    assert listed["sequence"] == huge and listed["type"] == "user.updated" and listed["subject"] == str(ada)
    assert listed["reason"] == reason and listed["waiting_behind"] == 1 and listed["since"]
    async with httpx.AsyncClient() as client:

        async def exported() -> bool:  # the API refreshes its gauges in the background
            metrics = (await client.get(f"{api_url}/metrics")).text
            return gauge(metrics, "scimsync_relay_parked_events") >= 1

        await until(exported, what="scimsync_relay_parked_events >= 1")
    code, out, _ = await cli(database_url, stack.kafka, "relay", "status")
    assert code == 0 and json.loads(out)["parked"] >= 1

    # A replay (the runbook's step after a Kafka outage) sends neither the parked event nor what waits behind it.
    replayed = f"{topic}-replay"
    code, _, err = await cli(
        database_url, stack.kafka, "replay", "--tenant", str(acme), "--aggregate", "user", "--topic", replayed
    )
    assert code == 0, err
    assert json.loads(err.strip().splitlines()[-1])["gated"] == 2
    assert [r.version for r in await read_to_the_end(stack.kafka, replayed)] == [1]

    # Re-sent as it is, Kafka refuses it again: parked again (logged again), its stream still waits.
    since = await db.fetchval("SELECT state_since FROM events WHERE sequence = $1", huge)
    code, out, _ = await cli(database_url, stack.kafka, "relay", "resend", str(huge))
    assert code == 0 and json.loads(out) == {"resent": [huge], "not_parked": []}
    await until(lambda: len(parked_logs(relay)) == 2, what="a second relay.event_parked")
    assert await state_of(db, [huge, after]) == [(False, "parked"), (False, None)]
    assert await db.fetchval("SELECT state_since FROM events WHERE sequence = $1", huge) > since

    # Re-sending what isn't parked is an error naming it.
    code, out, err = await cli(database_url, stack.kafka, "relay", "resend", str(first))
    assert code == 1 and json.loads(out)["not_parked"] == [first] and f"event {first} is not parked" in err


# --- a record the broker refuses, re-sent once the topic takes it --------------------------------------------


async def set_max_message_bytes(kafka: str, name: str, value: int, create: bool = False) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        config = {"max.message.bytes": str(value)}
        if create:
            await admin.create_topics([NewTopic(name, 3, 1, topic_configs=config)])
        else:
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs=config)])
    finally:
        await admin.close()


async def test_a_record_the_broker_refuses_is_parked_and_resent_in_order_once_the_topic_takes_it(
    db: Any,
    database_url: str,
    stack: Any,
    topic: str,
    relays: Callable[..., RelayProcess],
    tenants: list[uuid.UUID],
) -> None:
    await set_max_message_bytes(stack.kafka, topic, 20_000, create=True)  # the broker refuses larger batches
    acme, bob, cy = new_tenant(tenants), uuid.uuid4(), uuid.uuid4()
    bob_events = [
        await add_event(db, acme, bob, 1),
        await add_event(db, acme, bob, 2, title="y" * 50_000),  # under the producer's limit, over the topic's
        await add_event(db, acme, bob, 3, title="short again"),
    ]
    cy_events = [await add_event(db, acme, cy, v) for v in (1, 2, 3)]

    relay = relays()
    async with TopicReader(stack.kafka, topic) as reader:
        await until(lambda: _published(db, cy_events), what="cy's events published")
        await reader.wait_until(versions_seen(str(acme), {f"{acme}:{cy}": 3, f"{acme}:{bob}": 1}))
        assert await state_of(db, bob_events) == [(True, None), (False, "parked"), (False, None)]
        reason = await db.fetchval("SELECT state_reason FROM events WHERE sequence = $1", bob_events[1])
        assert reason.split(":")[0] in ("MessageSizeTooLargeError", "RecordListTooLargeError"), reason
        assert [r.version for r in by_key(reader.records, str(acme))[f"{acme}:{bob}"]] == [1]
        assert len(parked_logs(relay)) == 1

        await set_max_message_bytes(stack.kafka, topic, 1_048_588)
        code, out, _ = await cli(database_url, stack.kafka, "relay", "resend", "--all", "--tenant", str(acme))
        assert code == 0 and json.loads(out)["resent"] == [bob_events[1]]
        expected = {f"{acme}:{bob}": 3, f"{acme}:{cy}": 3}
        records = await reader.wait_until(versions_seen(str(acme), expected))
    await until(lambda: _published(db, bob_events), what="bob's events published")
    assert_applies_in_order(by_key(records, str(acme)), expected)
    assert [r.version for r in by_key(records, str(acme))[f"{acme}:{bob}"]] == [1, 2, 3], "in order, no duplicate"


async def _published(db: Any, sequences: list[int]) -> bool:
    return all(published for published, _ in await state_of(db, sequences))


# --- erasure at publish time ---------------------------------------------------------------------------------


class Proxy:
    """A TCP forwarder to Kafka on a port nothing listens on until `open()`: Kafka unreachable, then back."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))
        self._server: asyncio.Server | None = None
        with contextlib.closing(socket.socket()) as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await splice(reader, writer, self._target)


async def test_a_batch_claimed_before_a_delete_and_held_through_an_outage_publishes_no_personal_data(
    scim: httpx.AsyncClient, tenant: Any, db: Any, database_url: str, stack: Any, topic: str
) -> None:
    personal = {"userName": "held.batch@example.com", "name": {"givenName": "Heldbatch", "familyName": "Secretname"}}
    user = (await scim.post("/Users", json=personal)).json()
    created = await db.fetchval("SELECT sequence FROM events WHERE subject = $1", uuid.UUID(user["id"]))
    ahead = await db.fetchval("SELECT count(*) FROM events WHERE published_at IS NULL AND sequence <= $1", created)
    assert ahead <= 500, "the relay's first batch must hold the user's event"
    proxy = Proxy(stack.kafka)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{proxy.port}",  # nobody listens yet: Kafka is "down"
        "SCIMSYNC_USER_TOPIC": topic,
        "SCIMSYNC_GROUP_TOPIC": f"{topic}-groups",
        "SCIMSYNC_LOG_LEVEL": "info",
    }
    relay = RelayProcess(env, f"{topic}-held")
    try:
        await relay.wait_for("relay.kafka_unavailable")  # the batch with user.created is claimed and held
        assert (await scim.delete(f"/Users/{user['id']}")).status_code == 204
        await proxy.open()
        key = f"{tenant.id}:{user['id']}"
        records = await read_topic(stack.kafka, topic, versions_seen(tenant.id, {key: 2}), within=60)
    finally:
        relay.stop()
        await proxy.close()
    mine = [r for r in records if r.key == key]
    assert [r.value["type"] for r in mine] == ["user.created", "user.deleted"]
    assert mine[0].value["data"] == {"id": user["id"], "erased": True}
    raw = json.dumps([r.value for r in mine])
    for secret in ("held.batch", "Heldbatch", "Secretname"):
        assert secret not in raw, secret
