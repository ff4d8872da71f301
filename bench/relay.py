"""Relay benchmark: events/s from the outbox to Kafka, and SCIM response → event readable from Kafka.

    .venv/bin/python -m bench.relay [--events 50000] [--patches 2000] [--rate 500] [--users 200]
                                    [--only throughput|latency|notify-cost]

Needs the local stack (or DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS). Works in a fresh database (created on
the DATABASE_URL server, dropped at the end) and fresh topics, so it never touches real data. Prints one
JSON line per result.

1. throughput: N events inserted straight into the outbox (one INSERT … SELECT), then `scimsync relay`
   (a subprocess, as deployed) publishes them; the rate is taken from the relay's own `published_at`
   marks (first batch mark → last batch mark), so process start-up and topic creation don't count.
2. latency: the real API (a uvicorn subprocess) and a relay; PATCHes sent open-loop at `--rate`/s; an
   aiokafka consumer in this process timestamps each event's arrival. Latency = arrival - the PATCH's
   response (both on this process's monotonic clock), matched by key and `userversion`.
3. notify-cost: durable creates/s with and without the outbox's NOTIFY trigger (see `notify_cost`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvloop
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench import harness
from service import logs
from service.relay.publisher import ensure_topic
from service.settings import Settings
from service.store import tenants
from service.store.pool import connect, create_pool

LOGS = Path(tempfile.gettempdir()) / "scimsync-bench"  # the subprocesses' logs, for a look after a run

_FILL = """
INSERT INTO events (id, tenant_id, aggregate, subject, type, version, occurred_at, data)
SELECT gen_random_uuid(), $1, 'user', u.id,
       CASE WHEN v = 1 THEN 'user.created' ELSE 'user.updated' END, v, now(),
       jsonb_build_object(
           'id', u.id::text, 'userName', 'bench.' || u.n || '@example.com', 'active', true,
           'displayName', 'Bench User ' || u.n, 'title', 'Title ' || v,
           'name', jsonb_build_object('givenName', 'Bench', 'familyName', 'User ' || u.n),
           'emails', jsonb_build_array(jsonb_build_object('value', 'bench.' || u.n || '@example.com',
                                                          'type', 'work', 'primary', true)))
FROM (SELECT n, gen_random_uuid() AS id FROM generate_series(1, $2) AS n) AS u,
     generate_series(1, $3) AS v
ORDER BY v, u.n
"""


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str) -> AsyncIterator[str]:
    """A new migrated database for one measurement, dropped afterwards."""
    name = f"scimsync_bench_{uuid.uuid4().hex[:8]}"
    try:
        yield await harness.fresh_database(name)
    finally:
        await harness.drop_database(name)


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str], log_name: str) -> Iterator[subprocess.Popen[bytes]]:
    """A scimsync subprocess, its output in LOGS/<log_name>.log; SIGTERM (then SIGKILL) at the end."""
    LOGS.mkdir(exist_ok=True)
    with open(LOGS / f"{log_name}.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", *args], env=env, stdout=log, stderr=log)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _env(settings: Settings, database_url: str, topic: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "SCIMSYNC_USER_TOPIC": topic,
        "SCIMSYNC_LOG_LEVEL": "info",
        **extra,
    }


async def topic_size(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
        if not partitions:
            partitions = [TopicPartition(topic, p) for p in await _partitions(consumer, topic)]
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        return sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    for _ in range(50):
        found = consumer.partitions_for_topic(topic)
        if found:
            return set(found)
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {topic} has no partitions")


async def throughput(settings: Settings, events: int, batch_size: int) -> None:
    users = 1000
    versions = max(1, events // users)
    async with fresh_database(settings.database_url) as url:
        conn = await connect(url)
        started = time.perf_counter()
        await conn.execute(_FILL, uuid.uuid4(), users, versions)
        total = await conn.fetchval("SELECT count(*) FROM events")
        filled = time.perf_counter() - started
        topic = f"scimsync-bench-{uuid.uuid4().hex[:8]}"
        await ensure_topic(settings.kafka_bootstrap_servers, topic, settings.topic_partitions, 1)
        env = _env(settings, url, topic)
        started = time.perf_counter()
        with process(["relay", "--batch-size", str(batch_size)], env, "relay-throughput"):
            while True:
                if not await conn.fetchval("SELECT count(*) FROM events WHERE published_at IS NULL"):
                    break
                await asyncio.sleep(0.05)
            wall = time.perf_counter() - started
        first, last, first_batch = await conn.fetchrow(
            "SELECT min(published_at), max(published_at),"
            " count(*) FILTER (WHERE published_at = (SELECT min(published_at) FROM events)) FROM events"
        )
        await conn.close()
    span = (last - first).total_seconds()
    in_kafka = await topic_size(settings.kafka_bootstrap_servers, topic)
    emit(
        {
            "bench": "relay.throughput",
            "events": total,
            "batch_size": batch_size,
            "partitions": settings.topic_partitions,
            "events_per_second": round((total - first_batch) / span) if span > 0 else None,
            "wall_seconds_incl_startup": round(wall, 2),
            "fill_seconds": round(filled, 2),
            "messages_in_topic": in_kafka,
        }
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError(f"API exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/healthz", timeout=1)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError("API did not start")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def latency(settings: Settings, patches: int, rate: float, user_count: int) -> None:
    async with fresh_database(settings.database_url) as url:
        conn = await connect(url)
        tenant, token = await tenants.create(conn, "bench")
        topic = f"scimsync-bench-{uuid.uuid4().hex[:8]}"
        await ensure_topic(settings.kafka_bootstrap_servers, topic, settings.topic_partitions, 1)
        port = _free_port()
        api = f"http://127.0.0.1:{port}"
        env = _env(settings, url, topic, SCIMSYNC_PUBLIC_URL=api)
        api_env = {**env, "SCIMSYNC_LOG_LEVEL": "warning"}  # no access log line per request
        api_env |= {
            "SCIMSYNC_RATE_LIMIT_PER_SECOND": "0",
            "SCIMSYNC_TENANT_CONCURRENCY": "1000",
        }  # one tenant, flat out
        arrivals: dict[tuple[str, int], float] = {}
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, fetch_max_wait_ms=20)
        await consumer.start()
        partitions = [TopicPartition(topic, p) for p in await _partitions(consumer, topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)

        async def consume() -> None:
            while True:
                batches = await consumer.getmany(timeout_ms=100)
                now = time.monotonic()
                for records in batches.values():
                    for record in records:
                        arrivals.setdefault((record.key.decode(), orjson.loads(record.value)["userversion"]), now)

        reader = asyncio.create_task(consume())
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
        base = f"{api}/scim/v2/{tenant.id}"
        with (
            process(["api", "--host", "127.0.0.1", "--port", str(port)], api_env, "api-latency") as api_proc,
            process(["relay"], env, "relay-latency"),
        ):
            await _wait_healthy(api, api_proc)
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30, limits=limits) as client:
                ids = []
                for n in range(user_count):
                    body = {"userName": f"lat.{n}@example.com", "name": {"givenName": "L", "familyName": f"U{n}"}}
                    response = await client.post("/Users", json=body)
                    response.raise_for_status()
                    ids.append(response.json()["id"])
                responded: dict[tuple[str, int], float] = {}
                failures = 0
                failed: Counter[str] = Counter()

                async def patch(n: int) -> None:
                    nonlocal failures
                    user_id = ids[n % len(ids)]
                    op = {"op": "replace", "path": "title", "value": f"title {n}"}
                    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [op]}
                    try:
                        response = await client.patch(f"/Users/{user_id}", json=body)
                    except httpx.TransportError as exc:  # e.g. a keep-alive connection the server closed meanwhile
                        failures += 1
                        failed[type(exc).__name__] += 1
                        return
                    done = time.monotonic()
                    if response.status_code != 200:
                        failures += 1
                        failed[str(response.status_code)] += 1
                        return
                    version = int(response.headers["etag"].removeprefix('W/"').removesuffix('"'))
                    responded[(f"{tenant.id}:{user_id}", version)] = done

                started = time.monotonic()
                tasks = []
                for n in range(patches):  # open loop: a PATCH every 1/rate s, whatever the responses do
                    await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
                    tasks.append(asyncio.create_task(patch(n)))
                dispatched_seconds = time.monotonic() - started
                await asyncio.gather(*tasks)
                sent_seconds = time.monotonic() - started
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    if all(k in arrivals for k in responded):
                        break
                    await asyncio.sleep(0.05)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await consumer.stop()
        await conn.close()
    delays = [(arrivals[k] - t) * 1000 for k, t in responded.items() if k in arrivals]
    emit(
        {
            "bench": "relay.latency",
            "patches": patches,
            "offered_rate_per_second": rate,
            "dispatched_rate_per_second": round(patches / dispatched_seconds),
            "completed_rate_per_second": round(patches / sent_seconds),
            "users": user_count,
            "failed_requests": failures,
            "failed_by": dict(failed),
            "missing_events": len(responded) - len(delays),
            "p50_ms": round(_percentile(delays, 0.50), 1) if delays else None,
            "p99_ms": round(_percentile(delays, 0.99), 1) if delays else None,
            "max_ms": round(max(delays), 1) if delays else None,
        }
    )
    if failures or len(delays) < len(responded):  # errors are not throughput: the figures above are void
        raise SystemExit(f"bench.relay: {failures} failed PATCHes, {len(responded) - len(delays)} events missing")


_CREATE = """
WITH u AS (
    INSERT INTO users (tenant_id, id, user_name, external_id, active, version, resource, created_at, updated_at)
    VALUES ($1, $2, $3, NULL, true, 1, $4, now(), now()) RETURNING id
)
INSERT INTO events (id, tenant_id, aggregate, subject, type, version, occurred_at, data)
SELECT gen_random_uuid(), $1, 'user', u.id, 'user.created', 1, now(), $4 FROM u
"""


async def notify_cost(settings: Settings, seconds: float = 4.0, clients: int = 32) -> None:
    """What the wake-up trigger costs the API's durable create: one-statement creates (user + event), 32
    concurrent connections, with and without the NOTIFY trigger. A transaction that notified takes a
    database-wide lock at commit, so such commits serialise."""
    async with fresh_database(settings.database_url) as url:
        conn = await connect(url)
        tenant, _ = await tenants.create(conn, "bench")
        listener = await connect(url)  # a relay listens in production
        await listener.add_listener("scimsync_events", lambda *_: None)
        pool = await create_pool(url, clients, clients)

        async def rate() -> float:
            count, end = 0, time.monotonic() + seconds

            async def client() -> None:
                nonlocal count
                async with pool.acquire() as c:
                    while time.monotonic() < end:
                        user_id = uuid.uuid4()
                        resource = {"id": str(user_id), "userName": f"{user_id}@example.com", "active": True}
                        await c.execute(_CREATE, uuid.UUID(tenant.id), user_id, resource["userName"], resource)
                        count += 1

            await asyncio.gather(*(client() for _ in range(clients)))
            return count / seconds

        with_trigger = await rate()
        await conn.execute("DROP TRIGGER events_notify ON events")
        without = await rate()
        await pool.close()
        await listener.close()
        await conn.close()
    emit(
        {
            "bench": "outbox.notify_cost",
            "clients": clients,
            "creates_per_second_with_notify": round(with_trigger),
            "creates_per_second_without_notify": round(without),
        }
    )


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--patches", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=500.0, help="PATCHes per second, open loop")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--only", choices=["throughput", "latency", "notify-cost"])
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logs.configure("warning")
    if args.only in (None, "throughput"):
        await throughput(settings, args.events, args.batch_size)
    if args.only in (None, "latency"):
        await latency(settings, args.patches, args.rate, args.users)
    if args.only in (None, "notify-cost"):
        await notify_cost(settings)


if __name__ == "__main__":
    uvloop.run(main())  # the load generator shares 2 cores with everything else: every cycle counts
