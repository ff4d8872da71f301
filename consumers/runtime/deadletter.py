"""Dead letters: the original record (key, value, headers) on the DLQ topic, with why and where it came from."""

from __future__ import annotations

from typing import Any

MAX_ERROR_BYTES = 2000


def dead_letter_headers(record: Any, error: str, group: str, attempts: int) -> list[tuple[str, bytes]]:
    original = [(k, v) for k, v in (record.headers or ()) if not k.startswith("dlq_")]
    return [
        *original,
        ("dlq_error", error.encode()[:MAX_ERROR_BYTES]),
        ("dlq_topic", record.topic.encode()),
        ("dlq_partition", str(record.partition).encode()),
        ("dlq_offset", str(record.offset).encode()),
        ("dlq_group", group.encode()),
        ("dlq_attempts", str(attempts).encode()),
    ]


class DeadLetters:
    def __init__(self, producer: Any, topics: dict[str, str], group: str) -> None:
        self._producer = producer
        self.topics = topics  # source topic -> its dead-letter topic
        self._group = group

    async def send(self, record: Any, error: str, attempts: int) -> None:
        """Publish and wait for the broker's ack: the offset is committed only after this returns."""
        await self._producer.send_and_wait(
            self.topics[record.topic],
            value=record.value,
            key=record.key,
            headers=dead_letter_headers(record, error, self._group, attempts),
        )
