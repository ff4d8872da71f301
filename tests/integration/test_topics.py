"""Topics the relay creates keep personal data for a bounded time (README: "Personal data")."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from consumers.runtime.topics import ensure_topics
from service.relay.publisher import ensure_topic


async def retention(kafka: str, topic: str) -> tuple[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        for _ in range(50):  # a broker that just started may not describe a topic it just created yet
            response = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            configs = {e[0]: e[1] for result in response for resource in result.resources for e in resource[4]}
            if "retention.ms" in configs:
                break
            await asyncio.sleep(0.1)
        await admin.delete_topics([topic])
    finally:
        await admin.close()
    return configs["retention.ms"], configs["segment.ms"]


async def test_a_topic_the_relay_creates_has_a_week_of_retention_in_daily_segments(stack: Any) -> None:
    topic = f"scimsync-retention-{uuid.uuid4().hex[:8]}"
    assert await ensure_topic(stack.kafka, topic, 2, 1) is True
    assert await ensure_topic(stack.kafka, topic, 2, 1) is False  # exists: left as it is
    assert await retention(stack.kafka, topic) == (str(7 * 24 * 3600 * 1000), str(24 * 3600 * 1000))


async def test_a_topic_or_dead_letter_topic_a_consumer_creates_has_the_same(stack: Any) -> None:
    topic = f"scimsync-retention-{uuid.uuid4().hex[:8]}.dlq"
    assert await ensure_topics(stack.kafka, [topic], 2, 1) == [topic]
    assert await retention(stack.kafka, topic) == (str(7 * 24 * 3600 * 1000), str(24 * 3600 * 1000))
