"""`scimsync replay` and erasure, against the real Postgres event log and Kafka."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from .proxy import splice
from .topics import read_topic

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


async def replay(database_url: str, kafka: str, *args: str) -> tuple[dict[str, Any], list[str]]:
    """Run `scimsync replay ARGS`; its summary (stderr) and stdout lines."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "SCIMSYNC_LOG_LEVEL": "warning",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "replay", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    return json.loads(err.decode().strip().splitlines()[-1]), out.decode().splitlines()


async def topic_exists(kafka: str, topic: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        return topic in await admin.list_topics()
    finally:
        await admin.close()


async def make_history(scim: httpx.AsyncClient, n: int) -> list[str]:
    ids = []
    for i in range(n):
        user = (await scim.post("/Users", json={"userName": f"r{i}@example.com", "displayName": f"R {i}"})).json()
        body = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "T"}]}
        assert (await scim.patch(f"/Users/{user['id']}", json=body)).status_code == 200
        ids.append(user["id"])
    return ids


async def test_replay_of_a_range_redelivers_exactly_that_range(
    scim: httpx.AsyncClient, tenant: Any, db: Any, database_url: str, stack: Any
) -> None:
    await make_history(scim, 20)
    rows = await db.fetch(
        "SELECT sequence, id, subject, version, type FROM events WHERE tenant_id = $1 ORDER BY sequence",
        uuid.UUID(tenant.id),
    )
    assert len(rows) == 40
    chosen = rows[5:31]  # an arbitrary range within this tenant's history
    topic = f"scimsync-replay-{uuid.uuid4().hex[:8]}"
    args = ["--tenant", tenant.id, "--from-sequence", str(chosen[0]["sequence"])]
    args += ["--to-sequence", str(chosen[-1]["sequence"]), "--aggregate", "user", "--topic", topic]

    # --dry-run lists exactly the range and sends nothing.
    summary, lines = await replay(database_url, stack.kafka, *args, "--dry-run")
    assert summary["events"] == len(chosen) and summary["dry_run"] is True
    assert [json.loads(line)["sequence"] for line in lines] == [r["sequence"] for r in chosen]
    assert not await topic_exists(stack.kafka, topic)

    summary, _ = await replay(database_url, stack.kafka, *args)
    assert summary["events"] == len(chosen) and summary["topics"] == [topic]
    records = await read_topic(stack.kafka, topic, lambda rs: len(rs) >= len(chosen))
    await asyncio.sleep(0.5)  # anything beyond the range would have arrived by now
    records = await read_topic(stack.kafka, topic, lambda rs: len(rs) >= len(chosen))
    assert len(records) == len(chosen)
    got = sorted((r.value["sequence"], r.value["id"], r.value["subject"], r.version, r.value["type"]) for r in records)
    want = [(r["sequence"], str(r["id"]), str(r["subject"]), r["version"], r["type"]) for r in chosen]
    assert got == want  # same ids, sequences and versions: consumers dedupe replays


async def test_replay_by_user_and_by_time_and_rate_limit(
    scim: httpx.AsyncClient, tenant: Any, db: Any, database_url: str, stack: Any
) -> None:
    ids = await make_history(scim, 30)
    summary, lines = await replay(database_url, stack.kafka, "--user", ids[3], "--dry-run")
    assert [json.loads(line)["type"] for line in lines] == ["user.created", "user.updated"]
    assert summary["events"] == 2
    middle = await db.fetchval("SELECT occurred_at FROM events WHERE subject = $1 AND version = 1", uuid.UUID(ids[10]))
    summary, _ = await replay(
        database_url, stack.kafka, "--tenant", tenant.id, "--since", middle.isoformat(), "--dry-run"
    )
    assert summary["events"] == 40  # users 10..29, two events each
    topic = f"scimsync-replay-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    summary, _ = await replay(
        database_url, stack.kafka, "--tenant", tenant.id, "--aggregate", "user", "--topic", topic, "--rate", "100"
    )
    assert summary["events"] == 60
    assert time.monotonic() - started >= 0.55  # 60 events at 100/s take at least 0.6 s (minus the first batch)


async def test_a_replay_after_a_delete_carries_no_personal_data(
    scim: httpx.AsyncClient, tenant: Any, db: Any, database_url: str, stack: Any
) -> None:
    personal = {
        "userName": "erase.me@example.com",
        "name": {"givenName": "Eraseme", "familyName": "Forgotten"},
        "emails": [{"value": "erase.me@private.example", "type": "home"}],
        "phoneNumbers": [{"value": "+44 7700 900123", "type": "mobile"}],
    }
    user = (await scim.post("/Users", json=personal)).json()
    body = {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False, "title": "Secret title"}}]}
    assert (await scim.patch(f"/Users/{user['id']}", json=body)).status_code == 200
    keep = (await scim.post("/Users", json={"userName": "keep@example.com"})).json()  # someone else's history stays
    assert (await scim.delete(f"/Users/{user['id']}")).status_code == 204

    stored = await db.fetch(
        "SELECT type, version, data FROM events WHERE subject = $1 ORDER BY sequence", uuid.UUID(user["id"])
    )
    assert [(r["type"], r["version"]) for r in stored] == [
        ("user.created", 1),
        ("user.deactivated", 2),
        ("user.deleted", 3),
    ]
    assert all(r["data"] == {"id": user["id"], "erased": True} for r in stored[:2])
    kept = await db.fetchval("SELECT data FROM events WHERE subject = $1", uuid.UUID(keep["id"]))
    assert kept["userName"] == "keep@example.com"

    topic = f"scimsync-replay-{uuid.uuid4().hex[:8]}"
    await replay(database_url, stack.kafka, "--tenant", tenant.id, "--aggregate", "user", "--topic", topic)
    records = await read_topic(stack.kafka, topic, lambda rs: len(rs) >= 4)
    raw = json.dumps([r.value for r in records])
    # The phone number whole: four digits alone turn up in random ids now and then.
    for secret in ("erase.me", "Eraseme", "Forgotten", "private.example", "7700 900123", "Secret title"):
        assert secret not in raw, secret
    mine = [r for r in records if r.value["subject"] == user["id"]]
    assert [r.value["type"] for r in mine] == ["user.created", "user.deactivated", "user.deleted"]


class KafkaDoor:
    """Kafka's bootstrap address behind a door. Shut: every connection is accepted and dropped at once (counted), so
    Kafka is unreachable, or with `hold` kept waiting until the door opens (a slow network); open: forwarded (the
    client then reaches the broker it is told about directly)."""

    def __init__(self, kafka: str, hold: bool = False) -> None:
        host, _, port = kafka.rpartition(":")
        self.target, self.knocks, self.hold = (host, int(port)), 0, hold
        self.knocked, self.opened = asyncio.Event(), asyncio.Event()
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def open(self) -> None:
        self.opened.set()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.opened.is_set():
            self.knocks += 1
            self.knocked.set()
            if not self.hold:
                writer.transport.abort()
                return
            await self.opened.wait()
        await splice(reader, writer, self.target)


async def test_a_replay_held_by_a_kafka_outage_publishes_no_data_of_a_user_deleted_meanwhile(
    scim: httpx.AsyncClient, tenant: Any, database_url: str, stack: Any
) -> None:
    """The replay read the user's events, then waits for Kafka; the user is deleted meanwhile: what it publishes
    once Kafka is back must be erased, as the log now has it (the relay does the same, test_relay_gate.py)."""
    personal = {"userName": "replay.held@example.com", "name": {"givenName": "Replayheld", "familyName": "Hiddenname"}}
    user = (await scim.post("/Users", json=personal)).json()
    door = KafkaDoor(stack.kafka)
    kafka = await door.start()
    topic = f"scimsync-replay-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "SCIMSYNC_LOG_LEVEL": "warning",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "replay", "--user", user["id"], "--topic", topic, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await asyncio.wait_for(door.knocked.wait(), 30)  # the replay has read the events and tries to send them
        assert (await scim.delete(f"/Users/{user['id']}")).status_code == 204
        door.open()
        _, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
        door.close()
    records = await read_topic(stack.kafka, topic, lambda rs: len(rs) >= 1)
    created = records[0].value  # then the deletion, which the replay's next page found
    assert created["type"] == "user.created" and created["data"] == {"id": user["id"], "erased": True}
    for secret in ("replay.held", "Replayheld", "Hiddenname"):
        assert secret not in json.dumps([r.value for r in records]), secret


@pytest.mark.parametrize("bad", [["--user", "nope"], ["--since", "yesterday"], ["--from-sequence", "x"]])
async def test_bad_replay_arguments_are_one_line_errors(bad: list[str], database_url: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "replay", *bad, env={**os.environ, "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 2 and "Traceback" not in err.decode()


async def test_replay_to_one_topic_refuses_to_mix_user_and_group_events(
    scim: httpx.AsyncClient, tenant: Any, database_url: str, stack: Any
) -> None:
    """Group events in a user topic flood its consumers' DLQ; user events with personal data land in the group DLQ."""
    user = (await scim.post("/Users", json={"userName": "mixed@example.com"})).json()
    group = {"displayName": "Mixed", "members": [{"value": user["id"]}]}
    assert (await scim.post("/Groups", json=group)).status_code == 201
    topic = f"scimsync-replay-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DATABASE_URL": database_url, "KAFKA_BOOTSTRAP_SERVERS": stack.kafka}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "replay", "--tenant", tenant.id, "--topic", topic, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 2, (out, err)
    assert "--aggregate" in err.decode() and len(err.decode().strip().splitlines()) == 1
    assert not await topic_exists(stack.kafka, topic), "nothing may be published"

    # One aggregate per topic is what it takes.
    summary, _ = await replay(
        database_url, stack.kafka, "--tenant", tenant.id, "--aggregate", "group", "--topic", topic
    )
    assert summary["types"] == {"group.created": 1} and summary["topics"] == [topic]
