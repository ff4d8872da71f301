"""`scimsync rebuild booking|workspace`: rebuild a domain's projection from its topics.

1. Refuse while the domain's consumer group has active members (another consumer would apply events into the
   tables being rebuilt), unless `--force`.
2. Move the group's committed offsets to the start: the earliest offset each partition still holds (or `--since`).
   Dying here leaves the projection as it was; a consumer started then re-reads from the start and its version
   gate skips what the projection already holds.
3. Clear the projection (`Domain.projection`) and, in the same transaction, set the domain's rebuild marker
   (`Domain.rebuild_marker`). The rest of the domain's schema is its own data and is kept (booking: desks and
   bookings). While the marker is set, `scimsync consume` waits (`consumer.rebuild_pending`) instead of applying
   the whole history into the cleared tables: running the rebuild again is the way out of a rebuild that died.
4. Take the end offsets and consume up to them with the runtime's own code: same decoding, version gate,
   handlers, dead letters, commits. Retention may delete the start of a partition meanwhile: the rebuild then
   reads from the earliest offset left (never from the end) and says so in its warnings.
5. Commit the end offsets, so the domain's consumer carries on from there, and remove the marker.

Streams whose events carry the whole entity (`Stream.snapshots`, the user topic) are read twice: once to find
each key's newest event, then applying only those. Applying the history of a user instead would replay, say, a
deactivation against bookings made after the user came back, and cancel them. The newest event is the one with
the highest version (a repair event winning a tie), not the last one in the partition: a replayed or duplicated
older event can come after newer ones (`replay --until`, a cut-off former relay leader), and applied over the
cleared projection it would make a leaver eligible again or bring back a deleted person.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, IllegalStateError

from consumers.runtime import logs
from consumers.runtime.database import apply_schema, create_pool
from consumers.runtime.deadletter import DeadLetters
from consumers.runtime.domain import REPAIR_HEADER, Domain
from consumers.runtime.errors import TransientError
from consumers.runtime.loop import ConsumerLoop
from consumers.runtime.metrics import Metrics
from consumers.runtime.schemas import SchemaRegistry
from consumers.runtime.settings import ConsumerSettings
from consumers.runtime.topics import ensure_topics

KAFKA_TIMEOUT_MS = 15_000
MAX_DEFERRED_ROUNDS = 30  # the database unavailable this many rounds in a row (with backoff): give up


class Refused(Exception):
    """The consumer group has active members."""

    def __init__(self, group: str, members: list[dict[str, str]]) -> None:
        listed = ", ".join(f"{m['client_id']} at {m['host']} ({m['member_id']})" for m in members)
        super().__init__(
            f"consumer group {group!r} has {len(members)} active member(s): {listed}. Stop them "
            "(`scimsync consume` processes) and run again, or pass --force to rebuild anyway."
        )
        self.group = group
        self.members = members


@dataclass
class Summary:
    domain: str
    group: str
    since: str | None
    cleared: list[str]
    kept: list[str]
    topics: dict[str, dict[str, Any]] = field(default_factory=dict)
    applied: int = 0
    skipped: int = 0
    superseded: int = 0
    dead_lettered: int = 0
    held: int = 0  # delta-stream events past a gap in their entity's versions (runtime/gaps.py): they wait
    offsets_committed: bool = True
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def _admin(settings: ConsumerSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id="scimsync-rebuild",
        request_timeout_ms=KAFKA_TIMEOUT_MS,
        **settings.kafka.client_options(),
    )


async def active_members(settings: ConsumerSettings, group: str) -> list[dict[str, str]]:
    admin = _admin(settings)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    members = []
    for described in response.to_object()["groups"]:
        for member in described["members"]:
            members.append(
                {"member_id": member["member_id"], "client_id": member["client_id"], "host": member["client_host"]}
            )
    return members


async def _partitions(settings: ConsumerSettings, topics: list[str]) -> list[TopicPartition]:
    admin = _admin(settings)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return [TopicPartition(t["topic"], p["partition"]) for t in described for p in sorted(t["partitions"], key=_number)]


def _number(partition: dict[str, Any]) -> int:
    return int(partition["partition"])


async def rebuild(
    domain: Domain,
    settings: ConsumerSettings,
    *,
    since: datetime | None = None,
    force: bool = False,
    warn: Callable[[str], None] = lambda message: None,
) -> Summary:
    """Rebuild `domain`'s projection; raises Refused, or KafkaError, OSError, asyncpg errors, TransientError."""
    group = settings.group_id(domain.name)
    members = await active_members(settings, group)
    if members and not force:
        raise Refused(group, members)
    started = time.monotonic()
    streams = {settings.topic(name): stream for name, stream in domain.streams.items()}
    dead_letter_topics = {settings.topic(name): settings.dead_letter_topic_for(name) for name in domain.streams}
    summary = Summary(domain.name, group, since.isoformat() if since else None, list(domain.projection), [])

    def warning(message: str) -> None:
        summary.warnings.append(message)
        warn(message)

    if members:
        warning(
            f"--force: {len(members)} member(s) of {group!r} are running; they keep applying new events and own the "
            "group's offsets (this rebuild can't commit them)"
        )
    await ensure_topics(
        settings.kafka_bootstrap_servers,
        [*dead_letter_topics, *dead_letter_topics.values()],
        settings.topic_partitions,
        settings.topic_replication,
        settings.kafka.client_options(),
    )
    partitions = await _partitions(settings, list(streams))
    registry = SchemaRegistry.load(settings.schemas_dir, settings.schema_engine)
    pool = await create_pool(settings.database_url, max_size=settings.topic_partitions + 2)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=f"scimsync-rebuild-{domain.name}-dlq",
        enable_idempotence=True,
        acks="all",
        request_timeout_ms=KAFKA_TIMEOUT_MS,
        **settings.kafka.client_options(),
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,  # for the offsets only: partitions are assigned by hand, the group is never joined
        client_id=f"scimsync-rebuild-{domain.name}",
        enable_auto_commit=False,
        # An offset retention deleted meanwhile is read from the earliest one left, never from the end.
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        request_timeout_ms=KAFKA_TIMEOUT_MS,
        **settings.kafka.client_options(),
    )
    try:
        async with pool.acquire() as conn:
            await apply_schema(conn, domain.schema_sql)
            summary.kept = await _kept_tables(conn, domain)
        await producer.start()
        await consumer.start()
        consumer.assign(partitions)
        earliest: dict[TopicPartition, int] = await consumer.beginning_offsets(partitions)
        start = await _start_offsets(consumer, partitions, earliest, await consumer.end_offsets(partitions), since)
        summary.offsets_committed = await _commit(consumer, start)  # before anything is cleared (step 2)
        async with pool.acquire() as conn:
            await _clear(conn, domain, group)
        # The end is taken after the projection was cleared: anything a --force'd running consumer applied before
        # that is below it and is applied again here.
        end: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        for topic in streams:
            tps = [tp for tp in partitions if tp.topic == topic]
            summary.topics[topic] = {
                "partitions": len(tps),
                "events_in_range": sum(end[tp] - start[tp] for tp in tps),
            }
            lost = [tp.partition for tp in tps if earliest[tp] > 0 and start[tp] == earliest[tp]]
            if lost:
                warning(
                    f"{topic}: partitions {lost} no longer start at offset 0 (retention deleted older events); this "
                    f"rebuild can't see what Kafka no longer holds. Re-publish the event log first: "
                    f"`scimsync replay --topic {topic}`, then rebuild again"
                )
        if since is not None:
            warning(
                f"--since {since.isoformat()}: the projection now holds only what events from then on say; entities "
                "whose last event is older are missing from it"
            )
        metrics = Metrics(group=group, topics=tuple(streams))
        log = logs.get("consumers").bind(domain=domain.name, rebuild=True)
        dead_letters = DeadLetters(producer, dead_letter_topics, group)
        loop = ConsumerLoop(domain, settings, pool, registry, dead_letters, metrics, log)
        keep: dict[TopicPartition, set[int]] = {}
        compacted = [tp for tp in partitions if streams[tp.topic].snapshots and end[tp] > start[tp]]
        if compacted:
            attributes = {topic: stream.version_attribute for topic, stream in streams.items()}
            keep = await _last_offsets(consumer, compacted, start, end, attributes)
        superseded = await _apply(consumer, loop, partitions, start, end, keep)
        committed = await _commit(consumer, end)
        summary.offsets_committed = summary.offsets_committed and committed
        if not summary.offsets_committed and not members:
            warning(f"the offsets of {group!r} could not be committed: the consumer will re-read (and skip) events")
        left = await consumer.beginning_offsets(partitions)
        for topic in streams:
            raced = [tp.partition for tp in partitions if tp.topic == topic and left[tp] > start[tp] < end[tp]]
            if raced:
                warning(
                    f"{topic}: retention deleted events of partitions {raced} during the rebuild; it read on from the "
                    "earliest offset left, so entities whose newest event was deleted are missing. Re-publish the "
                    f"event log (`scimsync replay --topic {topic}`), then rebuild again"
                )
        async with pool.acquire() as conn:
            await _finish(conn, domain, group)
        for topic, counts in metrics.by_topic.items():
            summary.topics[topic].update(
                applied=counts["applied"],
                skipped=counts["skipped_duplicate"] + counts["skipped_unknown_type"],
                superseded=superseded.get(topic, 0),
                dead_lettered=counts["dead_lettered"],
                held=counts["held"],
            )
            summary.held += counts["held"]
            summary.applied += counts["applied"]
            summary.skipped += counts["skipped_duplicate"] + counts["skipped_unknown_type"]
            summary.superseded += superseded.get(topic, 0)
            summary.dead_lettered += counts["dead_lettered"]
    finally:
        await consumer.stop()
        await producer.stop()
        await pool.close()
    if summary.held:
        warning(
            f"{summary.held} event(s) wait past a gap in their group's versions (the version before them is not in "
            "the topics): see `workspace.held_group_events`; `scimsync reconcile --fix` re-sends those groups' "
            "histories"
        )
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


async def _clear(conn: Any, domain: Domain, group: str) -> None:
    """Clear the projection and set the rebuild marker, together (step 3)."""
    async with conn.transaction():
        await conn.execute(f"TRUNCATE {', '.join(domain.projection)}")
        if domain.rebuild_marker is not None:
            await conn.execute(
                f"INSERT INTO {domain.rebuild_marker} (group_id) VALUES ($1) "
                "ON CONFLICT (group_id) DO UPDATE SET started_at = now()",
                group,
            )


async def _finish(conn: Any, domain: Domain, group: str) -> None:
    if domain.rebuild_marker is not None:
        await conn.execute(f"DELETE FROM {domain.rebuild_marker} WHERE group_id = $1", group)


async def _kept_tables(conn: Any, domain: Domain) -> list[str]:
    schemas = sorted({table.split(".")[0] for table in domain.projection})
    rows = await conn.fetch(
        "SELECT table_schema || '.' || table_name AS name FROM information_schema.tables "
        "WHERE table_schema = ANY ($1::text[]) AND table_type = 'BASE TABLE' ORDER BY 1",
        schemas,
    )
    internal = (*domain.projection, domain.rebuild_marker)
    return [row["name"] for row in rows if row["name"] not in internal]


async def _start_offsets(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    earliest: dict[TopicPartition, int],
    end: dict[TopicPartition, int],
    since: datetime | None,
) -> dict[TopicPartition, int]:
    if since is None:
        return dict(earliest)
    found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in partitions})
    # No event at or after `since` in a partition: nothing to read there.
    return {tp: end[tp] if found.get(tp) is None else max(found[tp].offset, earliest[tp]) for tp in partitions}


async def _commit(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> bool:
    try:
        await consumer.commit(offsets)
    except (CommitFailedError, IllegalStateError) as exc:  # the group has members (--force)
        logs.get("consumers").warning("rebuild.commit_failed", error=type(exc).__name__)
        return False
    return True


async def _read(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    start: dict[TopicPartition, int],
    end: dict[TopicPartition, int],
    batch_size: int,
) -> AsyncIterator[dict[TopicPartition, list[Any]]]:
    """Yield fetched batches of `partitions` between `start` and `end`, records at or past the end left out.

    The caller may seek a partition back (records to read again); reading stops when every position is at its end.
    """
    consumer.assign(partitions)  # all of them: only assigned partitions can be committed
    for tp in partitions:
        consumer.seek(tp, start[tp])
    todo = [tp for tp in partitions if end[tp] > start[tp]]
    consumer.pause(*(tp for tp in partitions if tp not in todo))
    while todo:
        fetched = await consumer.getmany(timeout_ms=500, max_records=batch_size)
        batch = {}
        for tp, records in fetched.items():
            inside = [r for r in records if r.offset < end[tp]]
            if inside:
                batch[tp] = inside
        yield batch
        finished = [tp for tp in todo if await consumer.position(tp) >= end[tp]]
        consumer.pause(*finished)  # fetch nothing more from them
        todo = [tp for tp in todo if tp not in finished]


async def _last_offsets(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    start: dict[TopicPartition, int],
    end: dict[TopicPartition, int],
    attributes: dict[str, str],
) -> dict[TopicPartition, set[int]]:
    """The first pass over snapshot streams: the offset of each key's newest event in the range.

    Newest: the highest version (`attributes`: topic -> the envelope's version attribute), a repair event winning
    a tie, then the later offset. Records without a key or a readable version are all kept (the second pass
    dead-letters what it can't decode, as the consumer would).
    """
    newest: dict[TopicPartition, dict[Any, tuple[int, bool, int]]] = {tp: {} for tp in partitions}
    async for batch in _read(consumer, partitions, start, end, 10_000):
        for tp, records in batch.items():
            best = newest[tp]
            for record in records:
                rank = _rank(record, attributes[tp.topic])
                if record.key is None or rank is None:
                    best[("all", record.offset)] = (0, False, record.offset)
                elif record.key not in best or rank > best[record.key]:
                    best[record.key] = rank
    return {tp: {offset for _, _, offset in best.values()} for tp, best in newest.items()}


def _rank(record: Any, attribute: str) -> tuple[int, bool, int] | None:
    """(version, is a repair, offset) of a record; None when its version can't be read."""
    try:
        version = orjson.loads(record.value)[attribute]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None
    if not isinstance(version, int) or isinstance(version, bool):
        return None
    return version, dict(record.headers or ()).get(REPAIR_HEADER) == b"1", record.offset


async def _apply(
    consumer: AIOKafkaConsumer,
    loop: ConsumerLoop,
    partitions: list[TopicPartition],
    start: dict[TopicPartition, int],
    end: dict[TopicPartition, int],
    keep: dict[TopicPartition, set[int]],
) -> dict[str, int]:
    """The second pass: every record (or, where `keep` has the partition, only those offsets) through the loop."""
    superseded: dict[str, int] = {}
    deferred = 0
    async for batch in _read(consumer, partitions, start, end, loop.settings.batch_size):
        wanted: dict[TopicPartition, list[Any]] = {}
        dropped: dict[str, int] = {}
        for tp, records in batch.items():
            kept = [r for r in records if r.offset in keep[tp]] if tp in keep else records
            dropped[tp.topic] = dropped.get(tp.topic, 0) + len(records) - len(kept)
            if kept:
                wanted[tp] = kept
        if not wanted or await loop.process(consumer, wanted):
            for topic, n in dropped.items():
                superseded[topic] = superseded.get(topic, 0) + n
            deferred = 0
            continue
        deferred += 1  # the database is away: the loop sought back; wait, then read them again
        if deferred >= MAX_DEFERRED_ROUNDS:
            raise TransientError("the database stayed unavailable")
        await asyncio.sleep(min(0.1 * 2**deferred, 5.0))
    return superseded
