"""The publisher's split of Kafka's refusals (service/relay/publisher.py), with a stand-in producer: no broker."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.errors import TopicAuthorizationFailedError

from service.domain.events import StoredEvent
from service.relay.publisher import KafkaUnavailable, Publisher, ensure_topic

TENANT = str(uuid.uuid4())


def event(sequence: int, aggregate: str, subject: str, version: int) -> StoredEvent:
    kind = f"{aggregate}.created" if version == 1 else f"{aggregate}.updated"
    data = {"id": subject}
    return StoredEvent(sequence, str(uuid.uuid4()), TENANT, subject, kind, version, datetime.now(UTC), data, aggregate)


class Producer:
    """AIOKafkaProducer's `send` as it behaves for a topic whose metadata the principal may not read: aiokafka raises
    TopicAuthorizationFailedError from `send` itself, before any record is queued. Other topics are acknowledged."""

    def __init__(self, unauthorized: str) -> None:
        self.unauthorized, self.sent = unauthorized, list[str]()

    async def send(self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> Any:
        if topic == self.unauthorized:
            raise TopicAuthorizationFailedError(topic)
        self.sent.append(key.decode())
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def publisher(producer: Producer, monkeypatch: pytest.MonkeyPatch) -> Publisher:
    out = Publisher("127.0.0.1:1", {"user": "users", "group": "groups"}, 1)

    async def started() -> Producer:
        return producer

    monkeypatch.setattr(out, "_started", started)
    return out


async def test_a_topic_kafka_refuses_to_authorize_parks_its_events_and_the_other_topic_flows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ada, team = str(uuid.uuid4()), str(uuid.uuid4())
    batch = [event(1, "user", ada, 1), event(2, "group", team, 1), event(3, "user", ada, 2)]
    producer = Producer(unauthorized="users")
    outcome = await publisher(producer, monkeypatch).publish(batch)
    assert [r.event.sequence for r in outcome.refused] == [1]
    assert outcome.refused[0].reason.startswith("TopicAuthorizationFailedError")
    assert [e.sequence for e in outcome.held_back] == [3], "ada's later event waits behind the refused one"
    assert [e.sequence for e in outcome.sent] == [2] and producer.sent == [f"{TENANT}:{team}"]


async def test_a_broker_that_cannot_be_reached_still_fails_the_whole_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    class Unreachable(Producer):
        async def send(self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> Any:
            raise ConnectionRefusedError()

    with pytest.raises(KafkaUnavailable):
        await publisher(Unreachable("none"), monkeypatch).publish([event(1, "user", str(uuid.uuid4()), 1)])


class Admin:
    """AIOKafkaAdminClient as a principal with DESCRIBE and WRITE on the topics but no CREATE sees it (the platform team
    made the topics): every CreateTopics answer is TOPIC_AUTHORIZATION_FAILED (29), existing topic or not."""

    created: list[str] = []

    def __init__(self, **_: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def list_topics(self) -> list[str]:
        return ["users", "groups"]

    async def create_topics(self, topics: list[Any]) -> Any:
        Admin.created += [t.name for t in topics]

        class Response:
            topic_errors = [(t.name, 29, "Authorization failed.") for t in topics]

        return Response()


async def test_topics_the_platform_team_made_need_no_create_permission(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.relay.publisher.AIOKafkaAdminClient", Admin)
    assert await ensure_topic("127.0.0.1:1", "users", 6, 3) is False
    assert Admin.created == []
