"""Smoke test for the local stack (deploy/local/stack up): real PostgreSQL + real Kafka.

    python deploy/local/smoke.py          # needs aiokafka and asyncpg installed

Checks, against DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS (defaults: the local stack):
  * Postgres answers `select 1` and has the stack's tuning (max_connections=200, shared_buffers=256MB);
  * a topic can be created with AIOKafkaAdminClient (3 partitions, replication 1);
  * an idempotent producer (enable_idempotence=True, acks="all") can write keyed messages;
  * a consumer group with enable_auto_commit=False reads them all, commits offset+1 per partition;
  * a new consumer in the same group sees exactly those committed offsets and resumes after them
    (reads only a message produced afterwards).
The topic is deleted at the end. Exit code 0 on success; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://scimsync:scimsync@127.0.0.1:55432/scimsync")
BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:59092")
N_MESSAGES = 30
PARTITIONS = 3
TIMEOUT = 30.0


def step(msg: str, t0: float) -> None:
    print(f"  ok  {msg} ({time.monotonic() - t0:.2f}s)", flush=True)


async def check_postgres() -> None:
    t0 = time.monotonic()
    conn = await asyncio.wait_for(asyncpg.connect(DATABASE_URL), TIMEOUT)
    try:
        assert await conn.fetchval("select 1") == 1
        version = await conn.fetchval("show server_version")
        max_conn = await conn.fetchval("show max_connections")
        shared = await conn.fetchval("show shared_buffers")
        assert max_conn == "200", max_conn
        assert shared == "256MB", shared
    finally:
        await conn.close()
    step(f"postgres select 1 (server {version}, max_connections={max_conn}, shared_buffers={shared})", t0)


async def check_kafka() -> None:
    topic = f"scimsync-smoke-{uuid.uuid4().hex[:8]}"
    group = f"scimsync-smoke-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=15000)
    await asyncio.wait_for(admin.start(), TIMEOUT)
    try:
        t0 = time.monotonic()
        await asyncio.wait_for(
            admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)]), TIMEOUT
        )
        step(f"created topic {topic} ({PARTITIONS} partitions)", t0)
        try:
            await produce_consume_commit(topic, group)
        finally:
            await asyncio.wait_for(admin.delete_topics([topic]), TIMEOUT)
            print(f"  ok  deleted topic {topic}", flush=True)
    finally:
        await admin.close()


async def produce(topic: str, items: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True, acks="all")
    await asyncio.wait_for(producer.start(), TIMEOUT)
    try:
        futures = [await producer.send(topic, key=k, value=v) for k, v in items]
        await asyncio.wait_for(asyncio.gather(*futures), TIMEOUT)
    finally:
        await producer.stop()


def consumer(topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )


async def read(c: AIOKafkaConsumer, want: int) -> list:
    got: list = []
    deadline = time.monotonic() + TIMEOUT
    while len(got) < want:
        if time.monotonic() > deadline:
            raise AssertionError(f"consumed {len(got)} of {want} messages within {TIMEOUT}s")
        batches = await c.getmany(timeout_ms=500)
        for records in batches.values():
            got.extend(records)
    return got


async def produce_consume_commit(topic: str, group: str) -> None:
    t0 = time.monotonic()
    items = [(f"tenant-1:user-{i % 7}".encode(), f"event-{i}".encode()) for i in range(N_MESSAGES)]
    await produce(topic, items)
    step(f"idempotent producer (acks=all) wrote {N_MESSAGES} keyed messages", t0)

    t0 = time.monotonic()
    c = consumer(topic, group)
    await asyncio.wait_for(c.start(), TIMEOUT)
    try:
        records = await read(c, N_MESSAGES)
        assert sorted(r.value for r in records) == sorted(v for _, v in items), "payload mismatch"
        # per-key order is kept (one key -> one partition)
        for key in {k for k, _ in items}:
            seen = [r.value for r in records if r.key == key]
            assert seen == [v for k, v in items if k == key], f"order broken for {key!r}"
        expected: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            expected[tp] = max(expected.get(tp, 0), r.offset + 1)
        await asyncio.wait_for(c.commit(expected), TIMEOUT)
    finally:
        await c.stop()
    step(
        f"group {group} consumed {len(records)} messages over {len(expected)} partitions, committed {_fmt(expected)}",
        t0,
    )

    t0 = time.monotonic()
    await produce(topic, [(b"tenant-1:user-late", b"after-commit")])
    c = consumer(topic, group)
    await asyncio.wait_for(c.start(), TIMEOUT)
    try:
        for tp, off in expected.items():
            got = await asyncio.wait_for(c.committed(tp), TIMEOUT)
            assert got == off, f"committed offset for {tp} is {got}, expected {off}"
        records = await read(c, 1)
        await asyncio.sleep(1.0)
        more = await c.getmany(timeout_ms=500)
        records += [r for rs in more.values() for r in rs]
        assert [r.value for r in records] == [b"after-commit"], f"re-read after commit: {[r.value for r in records]}"
    finally:
        await c.stop()
    step("re-opened consumer in the same group: committed offsets match, resumed after them", t0)


def _fmt(offsets: dict) -> str:
    return ", ".join(f"p{tp.partition}={off}" for tp, off in sorted(offsets.items(), key=lambda kv: kv[0].partition))


async def main() -> int:
    t0 = time.monotonic()
    print(f"smoke: postgres {DATABASE_URL.split('@')[-1]}, kafka {BOOTSTRAP}", flush=True)
    await check_postgres()
    await check_kafka()
    print(f"smoke: all checks passed in {time.monotonic() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except (TimeoutError, AssertionError, OSError) as e:
        print(f"smoke: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
