"""Consumer benchmark: a burst of events (default 1,000 users x 10 versions = 10,000) on a fresh topic.

    .venv/bin/python -m bench.consumers [--users 1000] [--versions 10] [--partitions 6] [--modes burst,backlog]

Each consumer runs as deployed (`python -m consumers <domain>`, its own process, /metrics on a free port),
against a fresh database. Mode `burst`: the consumers are caught up and idle when the burst is produced (as
fast as one producer can); mode `backlog`: the burst is already on the topic when they start (catch-up speed).
For each run (booking alone, workspace alone, then both at once as in production) it prints one JSON line per
consumer:
- events_per_s: burst: events / seconds from the first event produced to the last one applied (bounded by how
  fast the burst is produced, `produce_seconds`); backlog: events / seconds from the consumers' start (process
  start-up, group join and first batch included) to the last one applied;
- apply_events_per_s: events / seconds from the consumer's first to its last applied batch (leaves out start-up:
  not the rate to quote);
- max_lag: the largest total lag of the group during the burst (records produced but not yet committed,
  from the group's committed offsets, sampled every 50 ms), and max_lag_reported: the same from its /metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from bench import harness
from consumers.domains import DOMAINS
from consumers.runtime.database import connect
from consumers.runtime.topics import ensure_topics
from consumers.samples import headers, key, user_event

KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:59092")
ROOT = Path(__file__).resolve().parents[1]
DB_NAME = "scimsync_bench_consumers"
METRIC = re.compile(r'^scimsync_consumer_(\w+?)(?:_total)?\{[^}]*?(?:partition="(\d+)")?\} (\d+)$')


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(record).decode() + "\n")
    sys.stdout.flush()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def burst(users: int, versions: int) -> list[dict[str, Any]]:
    """Per user: created, then updates, a deactivation and a reactivation, then updates (version 1..n)."""
    tenant = str(uuid.uuid4())
    events = []
    for _ in range(users):
        user = str(uuid.uuid4())
        for version in range(1, versions + 1):
            kind = "user.created" if version == 1 else "user.updated"
            if version == versions // 2:
                kind = "user.deactivated"
            elif version == versions // 2 + 1:
                kind = "user.reactivated"
            events.append(user_event(kind, tenant, user, version, family_name=f"v{version}"))
    return events


async def scrape(port: int) -> dict[str, int]:
    """applied/skipped/... counters (summed over topics) and `lag` (summed over partitions) from /metrics."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    body = (await reader.read()).decode()
    writer.close()
    out = {"lag": 0}
    for line in body.split("\r\n\r\n", 1)[-1].splitlines():
        match = METRIC.match(line)
        if match:
            name, _, value = match.groups()
            out[name] = out.get(name, 0) + int(value)
    return out


class Consumer:
    def __init__(self, domain: str, topic: str, database_url: str, log: Path) -> None:
        self.domain = domain
        self.group = f"{topic}.{domain}"
        self.port = _free_port()
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
            "SCIMSYNC_USER_TOPIC": topic,
            "SCIMSYNC_GROUP_TOPIC": f"{topic}.groups",  # workspace reads it too; empty here
            "SCIMSYNC_CONSUMER_GROUP_PREFIX": f"{topic}.",
            "SCIMSYNC_CONSUMER_METRICS_PORT": str(self.port),
            "SCIMSYNC_LOG_LEVEL": "warning",
        }
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "consumers", domain], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.max_lag = 0
        self.max_lag_reported = 0
        self.first_applied: float | None = None
        self.last_applied: float | None = None
        self.handled = 0

    async def ready(self, partitions: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.domain} consumer exited with {self.proc.returncode}")
            with contextlib.suppress(OSError):
                text = await scrape(self.port)
                if text is not None:
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.domain} consumer did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


async def committed(admin: AIOKafkaAdminClient, group: str, topic: str) -> int:
    offsets = await admin.list_consumer_group_offsets(group)
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


async def run(mode: str, domains: list[str], users: int, versions: int, partitions: int, database_url: str) -> None:
    topic = f"bench-users-{uuid.uuid4().hex[:10]}"
    await ensure_topics(KAFKA, [topic, f"{topic}.dlq", f"{topic}.groups", f"{topic}.groups.dlq"], partitions, 1)
    events = burst(users, versions)
    # One future booking per user, so deactivations have something to cancel.
    conn = await connect(database_url)
    try:
        tenant = events[0]["tenantid"]
        desk = await conn.fetchval(
            "INSERT INTO booking.desks (tenant_id, name) VALUES ($1, $2) RETURNING id", tenant, topic
        )
        start = datetime.now(UTC) + timedelta(days=7)
        await conn.executemany(
            "INSERT INTO booking.bookings (tenant_id, user_id, desk_id, starts_at, ends_at) "
            "VALUES ($1, $2, $3, $4, $5)",
            [
                (tenant, e["subject"], desk, start + timedelta(hours=i), start + timedelta(hours=i, minutes=30))
                for i, e in enumerate(events[::versions])
            ],
        )
    finally:
        await conn.close()
    logs = ROOT / ".bench"
    logs.mkdir(exist_ok=True)
    consumers: list[Consumer] = []
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
    await admin.start()
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, enable_idempotence=True, acks="all", linger_ms=5)
    await producer.start()
    try:

        async def start_consumers() -> None:
            consumers.extend(Consumer(d, topic, database_url, logs / f"consumer-{d}.log") for d in domains)
            for consumer in consumers:
                await consumer.ready(partitions)

        if mode == "burst":
            await start_consumers()
            await asyncio.sleep(3)  # let the groups settle (assignment) before the burst
        records = [(key(e), orjson.dumps(e), headers(e)) for e in events]
        acked = 0

        def on_ack(_: Any) -> None:
            nonlocal acked
            acked += 1

        started = time.monotonic()
        futures = []
        for k, v, h in records:
            future = await producer.send(topic, value=v, key=k, headers=h)
            future.add_done_callback(on_ack)
            futures.append(future)
        await asyncio.gather(*futures)
        produced_s = time.monotonic() - started
        if mode == "backlog":  # the whole burst is waiting when the consumers start; the clock runs from their
            started = time.monotonic()  # start: process start-up, group join and the first batch count
            await start_consumers()
        total = len(records)
        while True:
            now = time.monotonic()
            pending = False
            for consumer in consumers:
                if consumer.handled >= total:
                    continue
                pending = True
                metrics = await scrape(consumer.port)
                handled = sum(metrics.get(n, 0) for n in ("applied", "skipped_duplicate", "dead_lettered"))
                if handled and consumer.first_applied is None:
                    consumer.first_applied = now
                if handled > consumer.handled:
                    consumer.last_applied = now
                consumer.handled = handled
                consumer.max_lag_reported = max(consumer.max_lag_reported, metrics["lag"])
                consumer.max_lag = max(consumer.max_lag, acked - await committed(admin, consumer.group, topic))
            if not pending:
                break
            if now - started > 300:
                raise RuntimeError("consumers did not finish within 300 s")
            await asyncio.sleep(0.05)
        for consumer in consumers:
            assert consumer.first_applied is not None and consumer.last_applied is not None
            busy = max(consumer.last_applied - consumer.first_applied, 1e-3)
            drained = consumer.last_applied - started
            _emit(
                {
                    "bench": "consumers",
                    "mode": mode,
                    "domain": consumer.domain,
                    "running_together": domains,
                    "events": total,
                    "users": users,
                    "partitions": partitions,
                    "produce_seconds": round(produced_s, 3),
                    "seconds": round(drained, 3),
                    "events_per_s": round(total / drained),
                    "apply_events_per_s": round(total / busy),
                    "max_lag": consumer.max_lag,
                    "max_lag_reported": consumer.max_lag_reported,
                }
            )
    finally:
        await producer.stop()
        await admin.close()
        for consumer in consumers:
            consumer.stop()


async def fresh_database() -> str:
    return await harness.fresh_database(DB_NAME, migrate=False, schemas=tuple(d.schema_sql for d in DOMAINS.values()))


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.consumers", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--runs", default="booking;workspace;booking,workspace", help="';'-separated domain sets")
    parser.add_argument(
        "--modes", default="burst,backlog", help="burst: consumers running when it comes; backlog: started after"
    )
    args = parser.parse_args(argv)
    url = await fresh_database()
    for mode in args.modes.split(","):
        for run_domains in args.runs.split(";"):
            await run(mode, run_domains.split(","), args.users, args.versions, args.partitions, url)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
