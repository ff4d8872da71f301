"""The consumer loop: fetch, decode, apply in a transaction (version-gated), dead-letter poison, commit offsets.

One loop reads all of a domain's topics (its streams, runtime/domain.py) in one consumer group; each record is
decoded, gated and handled by the stream of the topic it came from.

Per partition, records are applied in order, a fetched batch in one database transaction (a small fetch spread
over several partitions, the steady state, shares one transaction: one commit per fetch); offsets (+1) are
committed only after that transaction commits. A crash between the two re-delivers the batch, and the version
gate turns the re-delivery into skips. The lock makes a rebalance wait for the batch in flight, which then
commits before the partitions go. (getmany() itself never returns records fetched under an older assignment,
and nothing can run between it returning and the lock being taken, since taking a free lock doesn't yield.)

With tracing on (runtime/tracing.py), each record gets a CONSUMER span once its outcome is final (applied,
skipped, held, dead-lettered), timed as the transaction (or decoding) that decided it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from consumers.runtime import gaps, tracing
from consumers.runtime.database import FATAL_ERRORS, TRANSIENT_ERRORS
from consumers.runtime.deadletter import DeadLetters
from consumers.runtime.domain import REPAIR_HEADER, REPAIR_THROUGH_HEADER, Domain, Stream, advance_version
from consumers.runtime.envelope import Event, decode
from consumers.runtime.errors import InvalidEvent
from consumers.runtime.metrics import Metrics
from consumers.runtime.schemas import SchemaRegistry
from consumers.runtime.settings import ConsumerSettings

APPLIED, DUPLICATE, UNKNOWN, DEAD = "applied", "skipped_duplicate", "skipped_unknown_type", "dead_lettered"
HELD = "held"
# A fetch of at most this many records over several partitions is applied in one transaction; a bigger one (a
# backlog) applies its partitions in parallel, one transaction each.
SMALL_FETCH = 200
HELD_MEASURE_INTERVAL_S = 5.0  # how often the held-streams gauges are read from the database (and after a change)


class ConsumerLoop:
    def __init__(
        self,
        domain: Domain,
        settings: ConsumerSettings,
        pool: Any,
        registry: SchemaRegistry,
        dead_letters: DeadLetters,
        metrics: Metrics,
        log: Any,
    ) -> None:
        self.domain = domain
        self.settings = settings
        self._pool = pool
        self._registry = registry
        self._dead_letters = dead_letters
        self.metrics = metrics
        self._log = log
        self.streams: dict[str, Stream] = {settings.topic(name): s for name, s in domain.streams.items()}
        self._lock = asyncio.Lock()  # held while a batch is applied and committed; revocation waits for it
        self._transient_streak = 0
        self._held_measured_at = -HELD_MEASURE_INTERVAL_S
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        """Stop taking work: the batch in flight is finished and committed, then the loop returns."""
        self.stopping.set()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=self.settings.group_id(self.domain.name),
            client_id=f"scimsync-{self.domain.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # a new group (a rebuilt domain) starts from the oldest event kept
            isolation_level="read_committed",
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=self.settings.heartbeat_interval_ms,
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            fetch_min_bytes=self.settings.fetch_min_bytes,
            **self.settings.kafka.client_options(),
        )
        consumer.subscribe(list(self.streams), listener=_Rebalance(self))
        await consumer.start()
        self._log.info("consumer.started", group=self.settings.group_id(self.domain.name))
        try:
            while not self.stopping.is_set():
                fetched = await consumer.getmany(timeout_ms=250, max_records=self.settings.batch_size)
                async with self._lock:
                    assigned = consumer.assignment()
                    fetched = {tp: records for tp, records in fetched.items() if tp in assigned}
                    if fetched:
                        await self.process(consumer, fetched)
                    await self._measure_lag(consumer)
                await self._measure_held()
                if self._transient_streak:
                    await self.stopping_or(min(0.1 * 2**self._transient_streak, 5.0))
        finally:
            await consumer.stop()
            self._log.info("consumer.stopped", **self.metrics.counts)

    async def stopping_or(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    async def process(self, consumer: AIOKafkaConsumer, fetched: dict[TopicPartition, list[Any]]) -> bool:
        """Apply a fetched batch and commit; False if some must be read again."""
        items = list(fetched.items())
        if len(items) > 1 and sum(len(records) for _, records in items) <= SMALL_FETCH:
            done = await self._together(items)
        else:
            done = await asyncio.gather(*(self._partition(tp, records) for tp, records in items))
        offsets: dict[TopicPartition, int] = {}
        for (tp, records), ok in zip(items, done, strict=True):
            if ok:
                offsets[tp] = records[-1].offset + 1
            else:  # the database is away: read these again next round
                consumer.seek(tp, records[0].offset)
        self._transient_streak = 0 if all(done) else self._transient_streak + 1
        if offsets:
            try:
                await consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError, KafkaError) as exc:
                # The group moved on without us (or Kafka is away): these records come again and are skipped.
                for topic in {tp.topic for tp in offsets}:
                    self.metrics.add("commit_failures", topic=topic)
                self._log.warning("consumer.commit_failed", error=type(exc).__name__)
        return all(done)

    async def _together(self, items: list[tuple[TopicPartition, list[Any]]]) -> list[bool]:
        """A small fetch (the steady state: a few events on each of several partitions) in one transaction: one
        commit instead of one per partition. If it fails for another reason than the database being away, each
        partition goes its own way (its batch, then event by event), so a poison event holds back only its own."""
        decoded = [await self._decode(tp, records) for tp, records in items]
        started = time.time_ns()
        outcomes: list[list[str]] = []
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                for (tp, _), events in zip(items, decoded, strict=True):
                    stream = self.streams[tp.topic]
                    outcomes.append([await self._apply(conn, stream, r, e) for r, e in events or ()])
        except TRANSIENT_ERRORS as exc:
            for tp, _ in items:
                self._deferred(tp, exc)
            return [False] * len(items)
        except FATAL_ERRORS:
            raise
        except Exception as exc:
            self._log.warning("consumer.batch_failed", partitions=len(items), error=type(exc).__name__)
            return [
                events is not None and await self._apply_partition(tp, records, events)
                for (tp, records), events in zip(items, decoded, strict=True)
            ]
        for (tp, records), events, done in zip(items, decoded, outcomes, strict=True):
            if events is not None:
                self._applied(tp, records, events, done, started)
        return [events is not None for events in decoded]

    async def _partition(self, tp: TopicPartition, records: list[Any]) -> bool:
        """Apply one partition's records in order; False when they must be read again (database unavailable)."""
        events = await self._decode(tp, records)
        return events is not None and await self._apply_partition(tp, records, events)

    async def _decode(self, tp: TopicPartition, records: list[Any]) -> list[tuple[Any, Event]] | None:
        """The records' events; invalid ones dead-lettered. None if the DLQ can't be written (read them again)."""
        stream = self.streams[tp.topic]
        events: list[tuple[Any, Event]] = []
        started = time.time_ns()
        try:
            for record in records:
                try:
                    event = decode(record.value, self._registry, stream.version_attribute, *_repair(record))
                    events.append((record, event))
                except InvalidEvent as exc:
                    await self._dead_letter(record, str(exc), kind=exc.kind, attempts=1)
                    if tracing.enabled():
                        self._traced(record, None, DEAD, started)
        except KafkaError as exc:
            self._log.warning(
                "consumer.dead_letter_failed", topic=tp.topic, partition=tp.partition, error=type(exc).__name__
            )
            return None
        return events

    async def _apply_partition(self, tp: TopicPartition, records: list[Any], events: list[tuple[Any, Event]]) -> bool:
        """One partition's events in one transaction, or one by one after it failed; False: read them again."""
        if not events:
            return True
        stream = self.streams[tp.topic]
        started = time.time_ns()
        try:
            try:
                outcomes = await self._apply_batch(stream, events)
            except (*TRANSIENT_ERRORS, *FATAL_ERRORS):
                raise
            except Exception as exc:
                self._log.warning(
                    "consumer.batch_failed", topic=tp.topic, partition=tp.partition, error=type(exc).__name__
                )
                outcomes = await self._apply_each(stream, events)
        except (*TRANSIENT_ERRORS, KafkaError) as exc:
            self._deferred(tp, exc)
            return False
        self._applied(tp, records, events, outcomes, started)
        return True

    def _deferred(self, tp: TopicPartition, exc: BaseException) -> None:
        self.metrics.add("transient_failures", topic=tp.topic)
        self._log.warning("consumer.batch_deferred", topic=tp.topic, partition=tp.partition, error=type(exc).__name__)

    def _applied(
        self,
        tp: TopicPartition,
        records: list[Any],
        events: list[tuple[Any, Event]],
        outcomes: list[str],
        started: int,
    ) -> None:
        """Count, trace and log what a partition's batch did."""
        if not events:
            return
        stream = self.streams[tp.topic]
        if tracing.enabled():
            for (record, event), outcome in zip(events, outcomes, strict=True):
                self._traced(record, event, outcome, started)
        counts = Counter(outcomes)
        for outcome in (APPLIED, DUPLICATE, UNKNOWN, HELD):
            self.metrics.add(outcome, counts[outcome], topic=tp.topic)
        if counts[HELD] or (stream.held_table is not None and counts[APPLIED]):
            self._held_measured_at = -HELD_MEASURE_INTERVAL_S  # a stream may have been held or released: look now
        self._log.info(
            "consumer.applied",
            topic=tp.topic,
            partition=tp.partition,
            first_offset=records[0].offset,
            last_offset=records[-1].offset,
            applied=counts[APPLIED],
            skipped_duplicate=counts[DUPLICATE],
            skipped_unknown_type=counts[UNKNOWN],
            held=counts[HELD],
            dead_lettered=counts[DEAD] + len(records) - len(events),
        )

    def _traced(self, record: Any, event: Event | None, outcome: str, started_ns: int) -> None:
        tracing.consumed(
            domain=self.domain.name,
            group=self.settings.group_id(self.domain.name),
            record=record,
            event=event,
            outcome=outcome,
            started_ns=started_ns,
            ended_ns=time.time_ns(),
        )

    async def _apply(self, conn: Any, stream: Stream, record: Any, event: Event) -> str:
        handler = stream.handlers.get(event.type)
        if handler is None and stream.held_table is None:
            return UNKNOWN  # a delta stream's unknown types still take their place in the order (runtime/gaps.py)
        verdict = await advance_version(conn, stream, event)
        if verdict == gaps.DUPLICATE:
            return DUPLICATE
        if verdict == gaps.GAP:
            await self._hold(conn, stream, record, event)
            return HELD
        if handler is not None and not event.erased:  # an erased snapshot (user deleted since): only the version
            await handler(conn, event)
        if stream.held_table is not None:
            await self._release(conn, stream, record, event)
        return APPLIED if handler is not None else UNKNOWN

    async def _hold(self, conn: Any, stream: Stream, record: Any, event: Event) -> None:
        assert stream.held_table is not None
        if await gaps.hold(conn, stream.held_table, stream.id_column, event, record):
            have = await gaps.stored_version(conn, stream.versions_table, stream.id_column, event)
            self._log.warning(
                "consumer.stream_held",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                tenant_id=event.tenant_id,
                **{stream.id_column: event.subject},
                stored_version=have,
                version=event.version,
                missing=[have + 1, event.version - 1],
            )

    async def _release(self, conn: Any, stream: Stream, record: Any, event: Event) -> None:
        """After `event` moved its entity's version: apply the held events that now follow it, in order."""
        assert stream.held_table is not None
        version, released = event.version, 0
        while True:
            held = await gaps.next_held(
                conn, stream.held_table, stream.id_column, event, version, self._registry, stream.version_attribute
            )
            if held is None:
                break
            await conn.execute(stream.advance_sql, held.tenant_id, held.subject, held.version, False)
            handler = stream.handlers.get(held.type)
            if handler is not None:
                await handler(conn, held)
            version, released = held.version, released + 1
        if released:
            self.metrics.add("released", released, topic=record.topic)
            self._log.info(
                "consumer.stream_released",
                tenant_id=event.tenant_id,
                **{stream.id_column: event.subject},
                released=released,
                version=version,
                still_held=await gaps.still_held(conn, stream.held_table, stream.id_column, event),
            )

    async def _measure_held(self) -> None:
        """Refresh the held-streams gauges from the database (whole group), every few seconds or after a change."""
        if time.monotonic() - self._held_measured_at < HELD_MEASURE_INTERVAL_S:
            return
        self._held_measured_at = time.monotonic()
        for topic, stream in self.streams.items():
            if stream.held_table is None:
                continue
            try:
                held = await gaps.measure(self._pool, stream.held_table, stream.id_column)
            except TRANSIENT_ERRORS:
                return  # the database is away: the batches say so (consumer.batch_deferred)
            self.metrics.held_streams[topic] = held.streams
            self.metrics.oldest_held_age[topic] = held.oldest_age_seconds

    async def _apply_batch(self, stream: Stream, events: list[tuple[Any, Event]]) -> list[str]:
        async with self._pool.acquire() as conn, conn.transaction():
            return [await self._apply(conn, stream, record, event) for record, event in events]

    async def _apply_each(self, stream: Stream, events: list[tuple[Any, Event]]) -> list[str]:
        """After a failed batch: one transaction per event, so only the event that keeps failing is dead-lettered."""
        outcomes = []
        attempts = self.settings.max_attempts
        for record, event in events:
            for attempt in range(1, attempts + 1):
                try:
                    async with self._pool.acquire() as conn, conn.transaction():
                        outcomes.append(await self._apply(conn, stream, record, event))
                    break
                except (*TRANSIENT_ERRORS, *FATAL_ERRORS):
                    raise
                except Exception as exc:
                    self._log.warning(
                        "consumer.handler_failed",
                        event_id=event.id,
                        type=event.type,
                        userversion=event.version,
                        attempt=attempt,
                        error=type(exc).__name__,
                    )
                    if attempt == attempts:
                        error = f"handler: {type(exc).__name__}: {exc}"
                        await self._dead_letter(record, error, kind="handler", attempts=attempt)
                        outcomes.append(DEAD)
                    else:
                        self.metrics.add("handler_retries", topic=record.topic)
                        await asyncio.sleep(self.settings.retry_backoff_s * 2 ** (attempt - 1))
        return outcomes

    async def _dead_letter(self, record: Any, error: str, kind: str, attempts: int) -> None:
        await self._dead_letters.send(record, error, attempts)
        self.metrics.add(DEAD, topic=record.topic)
        self._log.warning(
            "consumer.dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=kind,
            attempts=attempts,
        )

    async def _measure_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in list(consumer.assignment()):
            # A partition can go while we wait on another's position (the group dropped this member after a
            # stall longer than the session timeout): aiokafka asserts on an unassigned partition; skip it.
            try:
                highwater = consumer.highwater(tp)
                if highwater is None:
                    continue
                position = await asyncio.wait_for(consumer.position(tp), timeout=1)
            except (TimeoutError, IllegalStateError, AssertionError):
                continue
            self.metrics.lag[tp.topic, tp.partition] = max(highwater - position, 0)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:  # the batch in flight is applied and committed before the partitions go
            for tp in revoked:
                self.metrics.lag.pop((tp.topic, tp.partition), None)
        if revoked:
            self._log.info("consumer.partitions_revoked", partitions=_names(revoked))

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._log.info("consumer.partitions_assigned", partitions=_names(assigned))


def _names(partitions: set[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}/{tp.partition}" for tp in partitions)


def _repair(record: Any) -> tuple[bool, int | None]:
    """The record's repair headers (runtime/domain.py): `scimsync_repair: 1`, and `scimsync_repair_through: N`
    when it is part of an entity's history re-sent up to version N."""
    headers = dict(record.headers or ())
    through = headers.get(REPAIR_THROUGH_HEADER, b"")
    return headers.get(REPAIR_HEADER) == b"1", int(through) if through.isdigit() else None


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: ConsumerLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._loop.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._loop.on_assigned(assigned)
