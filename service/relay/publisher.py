"""The Kafka side of the relay: one idempotent producer, the topic created if missing, a batch sent in order.

`publish` sends every event of a batch (in sequence order, so each key's events queue in order on its
partition), then waits for every acknowledgement. A transient failure — broker down, timeout, an unexpected
error from the client — raises `KafkaUnavailable` and drops the producer: the next `publish` starts a fresh one
(a new producer id, so no idempotence state of a half-failed batch is carried over) and the relay re-sends
the whole batch. That can duplicate events, never lose or skip them.

A record Kafka refuses for good (`PERMANENT`: too large, invalid, not authorised) is not retried: `publish`
returns it as refused, with the reason, and does not send the later events of its stream (user or group) in
the batch, so the relay can park it and keep that stream's order. A record over `max_request_size`, or one for a
topic the principal may not describe, is refused by the client before anything is sent. A refusal by the broker
fails the whole producer batch it was in (other keys of its partition too), so after one the records that failed
are sent again one at a time, each alone in its request, to learn which of them Kafka really refuses.

Tracing (service/tracing.py): every record carries a `traceparent` header when its event has one: the stored one,
or with tracing on that of the record's own PRODUCER span (a child of the stored one), ended when Kafka answers.
A publisher made with `replay=True` (`scimsync replay`, `reconcile --fix`) also sets `scimsync_replay: 1`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CorruptRecordException,
    InvalidMessageError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    PolicyViolationError,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
    for_code,
)
from opentelemetry import trace

from service import logs, tracing
from service.domain import events
from service.domain.events import StoredEvent

log = logs.get(__name__)

_CLOSE_TIMEOUT = 3.0
MAX_REQUEST_BYTES = 1_048_576  # the producer's max_request_size: aiokafka's default, and Kafka's default record limit

# Errors about the record itself (or the topic's rules for it): sending it again can't succeed.
PERMANENT: tuple[type[Exception], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidMessageError,
    CorruptRecordException,
    UnsupportedForMessageFormatError,
    InvalidTopicError,
    PolicyViolationError,
    TopicAuthorizationFailedError,
)


class KafkaUnavailable(Exception):
    """Kafka could not take a batch now; the message names the underlying error type."""


class RecordRefused(Exception):
    """Kafka refused an event for good where the caller can't park it (replay, reconcile): the message says which."""


@dataclass(frozen=True)
class Refused:
    event: StoredEvent
    reason: str  # the error's type and message, e.g. "MessageSizeTooLargeError: ..."


@dataclass
class Outcome:
    """What became of a batch: acknowledged, refused for good, or not sent because its stream had a refusal."""

    sent: list[StoredEvent] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    held_back: list[StoredEvent] = field(default_factory=list)

    def require_all(self) -> None:
        """Raise RecordRefused unless every event was taken."""
        if self.refused:
            first = self.refused[0]
            raise RecordRefused(f"Kafka refused event {first.event.sequence} for good ({first.reason})")


def _failure(done: asyncio.Future[Any]) -> BaseException | None:
    if done.cancelled():
        return asyncio.CancelledError()
    return done.exception()


def _end_span(span: trace.Span, error: BaseException | None) -> None:
    if error is not None:
        span.set_status(trace.StatusCode.ERROR, type(error).__name__)
    span.end()


def _stream(event: StoredEvent) -> tuple[str, str, str]:
    return event.aggregate, event.tenant_id, event.subject


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Publisher:
    def __init__(
        self,
        bootstrap_servers: str,
        topics: dict[str, str],
        partitions: int,
        replication_factor: int = 1,
        linger_ms: int = 5,
        delivery_timeout: float = 10.0,
        security: Mapping[str, Any] | None = None,
        replay: bool = False,
    ) -> None:
        self.topics = topics  # aggregate ("user", "group") → topic
        self._replay = replay  # re-publishing from the log: marked on every record and span
        self._bootstrap = bootstrap_servers
        self._partitions = partitions
        self._replication = replication_factor
        self._linger_ms = linger_ms
        self._delivery_timeout = delivery_timeout
        self._security = dict(security or {})  # TLS/SASL options (Settings.kafka.client_options())
        self._producer: AIOKafkaProducer | None = None
        self._topic_ready = False

    async def connect(self) -> None:
        """Connect now rather than on the first publish (raises KafkaUnavailable like it): for a caller that wants
        its last read of what it sends to come after a slow connection, not before it."""
        await self.publish([])

    async def publish(
        self,
        batch: Sequence[StoredEvent],
        extra_headers: Sequence[tuple[str, bytes]] = (),
        deadline: float | None = None,
    ) -> Outcome:
        """Send the batch, wait for Kafka's acknowledgements (acks=all); what Kafka refused for good is returned,
        any other failure raises KafkaUnavailable (nothing of the outcome is known then: re-send it all).

        `deadline` (event-loop time): give up then at the latest, the sends not yet done aborted (the relay's
        lease, lease.py)."""
        latest = asyncio.get_running_loop().time() + self._delivery_timeout
        outcome, blocked = Outcome(), set[tuple[str, str, str]]()
        try:
            async with asyncio.timeout_at(latest if deadline is None else min(latest, deadline)):
                producer = await self._started()
                pending: list[tuple[StoredEvent, Any]] = []
                for event in batch:
                    if _stream(event) in blocked:
                        outcome.held_back.append(event)
                        continue
                    try:
                        pending.append((event, await self._send(producer, event, extra_headers)))
                    # Refused before anything was sent: over max_request_size, or a topic whose metadata the
                    # principal may not read (aiokafka raises TopicAuthorizationFailedError from send itself).
                    except PERMANENT as exc:
                        outcome.refused.append(Refused(event, _reason(exc)))
                        blocked.add(_stream(event))
                results = await asyncio.gather(*(future for _, future in pending), return_exceptions=True)
        except (KafkaError, TimeoutError, OSError) as exc:
            await self._abort()
            raise KafkaUnavailable(type(exc).__name__) from exc
        failed = [
            event for (event, _), result in zip(pending, results, strict=True) if isinstance(result, BaseException)
        ]
        outcome.sent = [
            event for (event, _), result in zip(pending, results, strict=True) if not isinstance(result, BaseException)
        ]
        if not failed:
            return outcome
        await self._abort()
        errors = [r for r in results if isinstance(r, BaseException)]
        if not any(isinstance(e, PERMANENT) for e in errors):
            raise KafkaUnavailable(type(errors[0]).__name__) from errors[0]
        await self._isolate(failed, outcome, blocked, extra_headers, deadline)
        return outcome

    async def _isolate(
        self,
        failed: list[StoredEvent],
        outcome: Outcome,
        blocked: set[tuple[str, str, str]],
        extra_headers: Sequence[tuple[str, bytes]],
        deadline: float | None,
    ) -> None:
        """Send each failed record alone, in order, so a refusal names its record; transient errors still raise."""
        for event in failed:
            if _stream(event) in blocked:
                outcome.held_back.append(event)
                continue
            try:
                latest = asyncio.get_running_loop().time() + self._delivery_timeout
                async with asyncio.timeout_at(latest if deadline is None else min(latest, deadline)):
                    await (await self._send(await self._started(), event, extra_headers))
            except PERMANENT as exc:
                outcome.refused.append(Refused(event, _reason(exc)))
                blocked.add(_stream(event))
                await self._abort()  # its sequence numbers were spent on a refused record: start a fresh producer
            except (KafkaError, TimeoutError, OSError) as exc:
                await self._abort()
                raise KafkaUnavailable(type(exc).__name__) from exc
            else:
                outcome.sent.append(event)
        outcome.sent.sort(key=lambda e: e.sequence)

    async def _send(
        self, producer: AIOKafkaProducer, event: StoredEvent, extra_headers: Sequence[tuple[str, bytes]]
    ) -> Any:
        """Queue the record; the future of Kafka's answer. A span (tracing on) ends with that answer."""
        topic = self.topics[event.aggregate]
        headers = [*events.headers(event), *extra_headers]
        if self._replay:
            headers.append((tracing.REPLAY_HEADER, b"1"))
        span = tracing.publishing(event, topic, self._replay) if tracing.enabled() else None
        if span is not None:
            headers.append((tracing.TRACEPARENT, tracing.format_traceparent(span.get_span_context()).encode()))
        elif event.traceparent is not None:
            headers.append((tracing.TRACEPARENT, event.traceparent.encode()))
        try:
            future = await producer.send(
                topic, value=orjson.dumps(events.envelope(event)), key=events.key(event), headers=headers
            )
        except BaseException as exc:
            if span is not None:
                _end_span(span, exc)
            raise
        if span is not None:
            future.add_done_callback(lambda done: _end_span(span, _failure(done)))
        return future

    async def close(self) -> None:
        """Stop the producer after the relay's last batch (nothing is pending then)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):  # a producer that can't reach Kafka may fail to stop cleanly
                await asyncio.wait_for(producer.stop(), _CLOSE_TIMEOUT)

    async def _abort(self) -> None:
        """Drop a failed producer without flushing: its batch will be re-sent by a new one.

        A plain `stop()` would wait for the pending batch (until Kafka returns), and a cancelled `stop()`
        would leave its background sender retrying — and delivering that batch late. So cancel the sender
        first (aiokafka has no public abort), then stop.
        """
        producer, self._producer = self._producer, None
        if producer is None:
            return
        sender = getattr(getattr(producer, "_sender", None), "sender_task", None)
        if sender is not None and not sender.done():
            sender.cancel()
            await asyncio.wait([sender], timeout=_CLOSE_TIMEOUT)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), _CLOSE_TIMEOUT)

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        if not self._topic_ready:
            for topic in self.topics.values():
                await ensure_topic(self._bootstrap, topic, self._partitions, self._replication, self._security)
            self._topic_ready = True
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id="scimsync-relay",
            enable_idempotence=True,  # no duplicates from the client's own retries, order kept per partition
            acks="all",
            linger_ms=self._linger_ms,
            max_batch_size=256 * 1024,
            max_request_size=MAX_REQUEST_BYTES,
            request_timeout_ms=int(self._delivery_timeout * 1000),
            **self._security,
        )
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), _CLOSE_TIMEOUT)
            raise
        self._producer = producer
        log.info("kafka.connected", topics=sorted(set(self.topics.values())))
        return producer


# Events hold personal data until Kafka deletes them: a week, in segments of a day, so a deleted user's data
# is gone from Kafka at most 8 days later (the Postgres log is erased at once; see README "Personal data").
TOPIC_CONFIG = {"retention.ms": str(7 * 24 * 3600 * 1000), "segment.ms": str(24 * 3600 * 1000)}


async def ensure_topic(
    bootstrap_servers: str,
    topic: str,
    partitions: int,
    replication_factor: int,
    security: Mapping[str, Any] | None = None,
) -> bool:
    """Create the topic if it doesn't exist; True when this call created it. Existing topics are left as they are,
    and not asked for: a principal without CREATE (the platform team made the topics) is refused even for an
    existing topic, and would then never publish."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="scimsync-relay", **(security or {}))
    await admin.start()
    try:
        if topic in await admin.list_topics():
            return False
        response = await admin.create_topics(
            [NewTopic(topic, partitions, replication_factor, topic_configs=TOPIC_CONFIG)]
        )
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    for _name, code, *_ in response.topic_errors:
        if code == 0:
            log.info("topic.created", topic=topic, partitions=partitions, replication_factor=replication_factor)
            return True
        error = for_code(code)
        if error is not TopicAlreadyExistsError:
            raise error()
    return False
