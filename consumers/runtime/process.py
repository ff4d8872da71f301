"""One consumer process: the composition root that wires settings, Postgres, Kafka, schemas and a domain."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from consumers.runtime import logs
from consumers.runtime.database import TRANSIENT_ERRORS, apply_schema, create_pool
from consumers.runtime.deadletter import DeadLetters
from consumers.runtime.domain import Domain
from consumers.runtime.loop import ConsumerLoop
from consumers.runtime.metrics import Metrics, serve
from consumers.runtime.schemas import SchemaRegistry
from consumers.runtime.settings import ConsumerSettings
from consumers.runtime.topics import ensure_topics

_T = TypeVar("_T")
REBUILD_POLL_S = 2.0
REBUILD_LOG_EVERY_S = 60.0


class ConsumerProcess:
    """`await start()`, then `await run()` until `stop()`; `close()` releases everything (also after a failure)."""

    def __init__(self, domain: Domain, settings: ConsumerSettings) -> None:
        self.domain = domain
        self.settings = settings
        self.topics = {settings.topic(name): settings.dead_letter_topic_for(name) for name in domain.streams}
        self.metrics = Metrics(group=settings.group_id(domain.name), topics=tuple(self.topics))
        self.metrics_port: int | None = None
        self._log = logs.get("consumers").bind(domain=domain.name)
        self._pool: Any = None
        self._producer: Any = None
        self._server: asyncio.Server | None = None
        self._loop: ConsumerLoop | None = None
        self._stop_requested = asyncio.Event()
        self.rebuild_pending = False  # waiting for an unfinished `scimsync rebuild` (rebuild.py) to be run again

    async def start(self) -> None:
        settings = self.settings
        registry = SchemaRegistry.load(settings.schemas_dir, settings.schema_engine)
        self._log.info("consumer.schemas_loaded", engine=registry.engine, types=sorted(registry.types))
        missing = registry.missing(self.domain.handled_types)
        if missing:
            self._log.warning("consumer.schemas_missing", types=missing, folder=str(settings.schemas_dir))
        created = await self._patiently(
            "kafka",
            lambda: ensure_topics(
                settings.kafka_bootstrap_servers,
                [*self.topics, *self.topics.values()],
                settings.topic_partitions,
                settings.topic_replication,
                settings.kafka.client_options(),
            ),
        )
        if created:
            self._log.info("topic.created", topics=created, partitions=settings.topic_partitions)
        self._pool = await self._patiently(
            "postgres", lambda: create_pool(settings.database_url, max_size=settings.topic_partitions + 2)
        )
        async with self._pool.acquire() as conn:
            await apply_schema(conn, self.domain.schema_sql)
        self._producer = await self._patiently("kafka", self._start_producer)
        if settings.metrics_port:
            self._server = await serve(self.metrics.render, settings.metrics_port, settings.metrics_host)
            self.metrics_port = self._server.sockets[0].getsockname()[1]
            self._log.info("metrics.serving", port=self.metrics_port)
        dead_letters = DeadLetters(self._producer, self.topics, settings.group_id(self.domain.name))
        self._loop = ConsumerLoop(self.domain, settings, self._pool, registry, dead_letters, self.metrics, self._log)
        if self._stop_requested.is_set():
            self._loop.stop()

    async def _start_producer(self) -> Any:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            client_id=f"scimsync-{self.domain.name}-dlq",
            enable_idempotence=True,
            acks="all",
            **self.settings.kafka.client_options(),
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def _patiently(self, what: str, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """Start-up waits for Kafka and Postgres (started together with `make run`, or restarting), until stopped."""
        delay = 0.5
        while True:
            try:
                return await attempt()
            except (KafkaError, *TRANSIENT_ERRORS) as exc:
                if self._stop_requested.is_set():
                    raise
                self._log.warning(f"{what}.unavailable", error=type(exc).__name__, retry_in_s=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_requested.wait(), timeout=delay)
                delay = min(delay * 2, 10.0)

    async def run(self) -> None:
        assert self._loop is not None, "start() first"
        await self._wait_for_rebuild()
        if not self._stop_requested.is_set():
            await self._loop.run()

    async def _wait_for_rebuild(self) -> None:
        """Don't join the group while a rebuild that cleared the projection hasn't finished.

        The group's offsets then point at the start of the topics (or, after a crash of an older rebuild, anywhere):
        applying from there would replay each user's whole history into the cleared tables (an old deactivation
        cancelling bookings made since), or leave them empty. Running the rebuild again finishes it.
        """
        marker = self.domain.rebuild_marker
        if marker is None:
            return
        group = self.settings.group_id(self.domain.name)
        logged = -REBUILD_LOG_EVERY_S
        while not self._stop_requested.is_set():
            async with self._pool.acquire() as conn:
                started = await conn.fetchval(f"SELECT started_at FROM {marker} WHERE group_id = $1", group)
            if started is None:
                if self.rebuild_pending:
                    self._log.info("consumer.rebuild_finished", group=group)
                self.rebuild_pending, self.metrics.rebuild_pending = False, 0
                return
            self.rebuild_pending, self.metrics.rebuild_pending = True, 1
            if time.monotonic() - logged >= REBUILD_LOG_EVERY_S:
                logged = time.monotonic()
                self._log.error(
                    "consumer.rebuild_pending",
                    group=group,
                    rebuild_started_at=started.isoformat(),
                    action=f"a rebuild cleared the projection and did not finish: run `scimsync rebuild "
                    f"{self.domain.name}` again; this consumer waits until it has",
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), timeout=REBUILD_POLL_S)

    @property
    def stopping(self) -> bool:
        return self._stop_requested.is_set()

    def stop(self) -> None:
        self._stop_requested.set()
        if self._loop is not None:
            self._loop.stop()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._producer is not None:
            await self._producer.stop()
        if self._pool is not None:
            await self._pool.close()


async def run_until_signalled(domain: Domain, settings: ConsumerSettings) -> int:
    """The process entry point: SIGTERM/SIGINT finish the batch in flight, commit, and close."""
    process = ConsumerProcess(domain, settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, process.stop)
    try:
        await process.start()
        await process.run()
    except (KafkaError, *TRANSIENT_ERRORS):
        if not process.stopping:  # stopped while still waiting for Kafka or Postgres: a clean stop
            raise
    finally:
        await process.close()
    return 0
