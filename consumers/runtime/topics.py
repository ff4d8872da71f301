"""Create a domain's topics and their dead-letter topics when missing, so a consumer can start before the relay."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

# The same bounded retention as the relay's topics (service/relay/publisher.py): events and dead letters hold
# personal data, which must leave Kafka within about 8 days of a user's deletion (README "Personal data").
TOPIC_CONFIG = {"retention.ms": str(7 * 24 * 3600 * 1000), "segment.ms": str(24 * 3600 * 1000)}


async def ensure_topics(
    bootstrap_servers: str,
    topics: list[str],
    partitions: int,
    replication: int,
    security: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create the topics that don't exist yet; return those this call created. Existing topics are left alone."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id="scimsync-consumer-admin", **(security or {})
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [NewTopic(t, partitions, replication, topic_configs=TOPIC_CONFIG) for t in missing]
        )
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    created = []
    for name, code, *_ in response.topic_errors:
        if code == 0:
            created.append(name)
        elif for_code(code) is not TopicAlreadyExistsError:  # a racing relay or consumer created it: fine
            raise for_code(code)(f"cannot create topic {name}")
    return created
