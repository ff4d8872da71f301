"""One test's whole pipeline on the private stack: its own database (cloned from the migrated template), its own
topics, the API, relays and consumers as real processes, and the tenants the load writes to."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from consumers.runtime.topics import ensure_topics
from service.domain.brake import BrakePolicy
from service.store import holds, tenants
from service.store.pool import connect
from tests.faults.load import Tenant
from tests.faults.processes import Process, free_port, wait_healthy
from tests.faults.stack import PrivateStack

PARTITIONS = 3


class Pipeline:
    def __init__(self, stack: PrivateStack, template: str, log_dir: Path) -> None:
        self.stack = stack
        self.template = template
        self.name = f"faults_{uuid.uuid4().hex[:10]}"
        self.database_url = stack.database_url(self.name)
        self.user_topic = f"{self.name}-users"
        self.group_topic = f"{self.name}-groups"
        self.log_dir = log_dir
        self.processes: list[Process] = []
        self.api: Process | None = None
        self.api_url = ""

    @property
    def topics(self) -> dict[str, str]:
        return {"user": self.user_topic, "group": self.group_topic}

    async def create(self) -> None:
        admin = await connect(self.stack.admin_url)
        try:
            await admin.execute(f'CREATE DATABASE "{self.name}" TEMPLATE "{self.template}"')
        finally:
            await admin.close()
        topics = [self.user_topic, self.group_topic, f"{self.user_topic}.dlq", f"{self.group_topic}.dlq"]
        await ensure_topics(self.stack.kafka, topics, PARTITIONS, 1)

    async def connect(self) -> Any:
        return await connect(self.database_url)

    def environ(self, database_url: str | None = None, **extra: str) -> dict[str, str]:
        return {
            **self.stack.environ(),
            "DATABASE_URL": database_url or self.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.stack.kafka,
            "SCIMSYNC_USER_TOPIC": self.user_topic,
            "SCIMSYNC_GROUP_TOPIC": self.group_topic,
            "SCIMSYNC_TOPIC_PARTITIONS": str(PARTITIONS),
            "SCIMSYNC_CONSUMER_GROUP_PREFIX": f"{self.name}.",
            "SCIMSYNC_CONSUMER_RETRY_BACKOFF_MS": "50",
            "SCIMSYNC_LOG_LEVEL": "info",
            **extra,
        }

    def _process(self, name: str, argv: list[str], env: dict[str, str]) -> Process:
        assert all(p.name != name for p in self.processes), f"two processes named {name}"
        process = Process(name, argv, env, self.log_dir)
        self.processes.append(process)
        return process.start()

    async def start_api(self) -> str:
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        env = self.environ(SCIMSYNC_PUBLIC_URL=self.api_url)
        argv = ["-m", "service.cli", "api", "--host", "127.0.0.1", "--port", str(port)]
        self.api = self._process("api", argv, env)
        await wait_healthy(self.api_url, self.api)
        return self.api_url

    def relay(self, name: str = "relay", database_url: str | None = None, *args: str) -> Process:
        return self._process(name, ["-m", "service.cli", "relay", *args], self.environ(database_url))

    def consumer(self, domain: str, name: str | None = None) -> Process:
        return self._process(name or domain, ["-m", "consumers", domain], self.environ())

    async def start(self) -> None:
        """The API, one relay and both consumers."""
        await self.start_api()
        self.relay()
        self.consumer("booking")
        self.consumer("workspace")

    async def tenants(self, count: int) -> list[Tenant]:
        conn = await self.connect()
        try:
            made = [await tenants.create(conn, f"{self.name}-{n}") for n in range(count)]
            for tenant, _ in made:  # the load deactivates far more than an IdP's day: not a wave to hold here
                await holds.set_policy(conn, uuid.UUID(tenant.id), BrakePolicy(enabled=False))
        finally:
            await conn.close()
        return [Tenant(t.id, token, f"{self.api_url}/scim/v2/{t.id}") for t, token in made]

    def process(self, name: str) -> Process:
        return next(p for p in self.processes if p.name == name)

    async def close(self) -> None:
        for process in reversed(self.processes):
            process.stop(timeout=15)
        await self.stack.up()  # a test that failed mid-fault leaves Kafka or Postgres down: the next one needs them
        with contextlib.suppress(Exception):  # best effort: the private stack is stopped after the suite anyway
            admin = await connect(self.stack.admin_url)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            finally:
                await admin.close()
        with contextlib.suppress(Exception):
            kafka = AIOKafkaAdminClient(bootstrap_servers=self.stack.kafka)
            await kafka.start()
            try:
                await kafka.delete_topics(
                    [self.user_topic, self.group_topic, f"{self.user_topic}.dlq", f"{self.group_topic}.dlq"]
                )
            finally:
                await kafka.close()
