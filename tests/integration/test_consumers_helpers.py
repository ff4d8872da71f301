"""Shared pieces of the consumer tests (no tests here): a topic per test, consumers in-process or as processes.

Every test gets its own topic (and DLQ, and consumer groups named after it), so tests never read each other's
events; they share the session database, where each test uses its own tenant ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from consumers.domains import DOMAINS
from consumers.runtime.database import apply_schema, connect
from consumers.runtime.process import ConsumerProcess
from consumers.runtime.settings import ConsumerSettings
from consumers.runtime.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 3


@dataclass(frozen=True)
class ConsumerEnv:
    database_url: str
    kafka: str
    topic: str  # the user topic

    @property
    def dlq(self) -> str:
        return f"{self.topic}.dlq"

    @property
    def group_topic(self) -> str:
        return self.topic.replace("test-users-", "test-groups-", 1)

    def settings(self, **overrides: Any) -> ConsumerSettings:
        base = ConsumerSettings(
            database_url=self.database_url,
            kafka_bootstrap_servers=self.kafka,
            user_topic=self.topic,
            group_topic=self.group_topic,
            topic_partitions=PARTITIONS,
            group_prefix=f"{self.topic}.",
            retry_backoff_s=0.05,
        )
        return replace(base, **overrides)

    def environ(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka,
            "SCIMSYNC_USER_TOPIC": self.topic,
            "SCIMSYNC_GROUP_TOPIC": self.group_topic,
            "SCIMSYNC_TOPIC_PARTITIONS": str(PARTITIONS),
            "SCIMSYNC_CONSUMER_GROUP_PREFIX": f"{self.topic}.",
            **extra,
        }


async def new_env(database_url: str, kafka: str) -> ConsumerEnv:
    env = ConsumerEnv(database_url, kafka, f"test-users-{uuid.uuid4().hex[:10]}")
    await ensure_topics(kafka, [env.topic, env.dlq, env.group_topic, f"{env.group_topic}.dlq"], PARTITIONS, 1)
    conn = await connect(database_url)
    try:
        for domain in DOMAINS.values():
            await apply_schema(conn, domain.schema_sql)
    finally:
        await conn.close()
    return env


@contextlib.asynccontextmanager
async def running(domain: str, settings: ConsumerSettings) -> AsyncIterator[ConsumerProcess]:
    """A consumer in this process; on exit it stops the way SIGTERM would (finish the batch, commit, close)."""
    process = ConsumerProcess(DOMAINS[domain], settings)
    await process.start()
    task = asyncio.create_task(process.run())
    try:
        yield process
    finally:
        process.stop()
        await asyncio.wait_for(task, timeout=30)
        await process.close()


def spawn(domain: str, env: ConsumerEnv, log_name: str, **extra: str) -> subprocess.Popen[bytes]:
    """`python -m consumers <domain>` as a real process, its log in .pytest_cache/."""
    (ROOT / ".pytest_cache").mkdir(exist_ok=True)
    with open(ROOT / ".pytest_cache" / f"{log_name}.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "consumers", domain],
            cwd=ROOT,
            env=env.environ(**extra),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.1)


async def until_idle(process: ConsumerProcess, processed: int, within: float = 30) -> None:
    """Wait until the consumer has handled `processed` records in total and its lag is zero."""

    async def done() -> bool:
        return process.metrics.handled >= processed and process.metrics.total_lag == 0

    await eventually(done, within, f"{processed} records handled by {process.domain.name}")


async def read_topic(kafka: str, topic: str, expected: int, within: float = 20) -> list[Any]:
    """Every record of a topic from the beginning (stops once `expected` have arrived)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + within
        while len(records) < expected and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def db_connect(env: ConsumerEnv) -> Any:
    return await connect(env.database_url)
