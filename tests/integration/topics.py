"""Reading a Kafka topic back in tests: every record from the earliest offset, decoded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition


@dataclass(frozen=True)
class Record:
    key: str
    value: dict[str, Any]
    headers: dict[str, bytes]
    partition: int
    offset: int

    @property
    def version(self) -> int:
        return int(self.value.get("userversion") or self.value["groupversion"])


class TopicReader:
    """Reads the whole topic from the earliest offset in the background; `records` grows as events arrive."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._bootstrap = bootstrap
        self.records: list[Record] = []
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=100)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TopicReader:
        await self._consumer.start()
        deadline = time.monotonic() + 30
        while not self._consumer.partitions_for_topic(self.topic):  # the relay creates it
            assert time.monotonic() < deadline, f"topic {self.topic} never appeared"
            await self._consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        partitions = [TopicPartition(self.topic, p) for p in sorted(self._consumer.partitions_for_topic(self.topic))]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        await self._consumer.stop()

    async def _read(self) -> None:
        while True:
            for batch in (await self._consumer.getmany(timeout_ms=100, max_records=5000)).values():
                self.records.extend(
                    Record(r.key.decode(), orjson.loads(r.value), dict(r.headers), r.partition, r.offset) for r in batch
                )

    async def to_the_end(self, within: float = 30) -> list[Record]:
        """Every record up to the topic's end offsets as they are now (what a finished producer wrote is there)."""
        probe = AIOKafkaConsumer(bootstrap_servers=self._bootstrap)
        await probe.start()
        try:
            partitions = sorted(self._consumer.assignment())  # every partition of the topic (__aenter__)
            assert partitions
            ends = {tp.partition: end for tp, end in (await probe.end_offsets(partitions)).items() if end}
        finally:
            await probe.stop()
        return await self.wait_until(
            lambda rs: all(any(r.partition == p and r.offset >= end - 1 for r in rs) for p, end in ends.items()),
            within,
        )

    def count(self, tenant_id: str) -> int:
        return sum(1 for r in self.records if r.key.startswith(f"{tenant_id}:"))

    async def wait_until(self, done: Callable[[list[Record]], bool], within: float = 30) -> list[Record]:
        deadline = time.monotonic() + within
        while not done(self.records):
            assert self._task is not None and not self._task.done(), "the reader failed"
            assert time.monotonic() < deadline, f"not there within {within} s ({len(self.records)} records read)"
            await asyncio.sleep(0.05)
        return list(self.records)


async def read_to_the_end(bootstrap: str, topic: str, within: float = 30) -> list[Record]:
    """Every record the topic holds now."""
    async with TopicReader(bootstrap, topic) as reader:
        return await reader.to_the_end(within)


async def read_topic(
    bootstrap: str, topic: str, done: Callable[[list[Record]], bool], within: float = 30
) -> list[Record]:
    """Every record of the topic from the earliest offset, until `done(records)`."""
    async with TopicReader(bootstrap, topic) as reader:
        return await reader.wait_until(done, within)
