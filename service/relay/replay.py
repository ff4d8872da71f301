"""`scimsync replay`: re-publish a range of the Postgres event log to Kafka.

For SREs after an incident: re-deliver what a consumer missed, or feed a new consumer. Replayed events
are the same events (same `id`, `sequence`, `userversion`/`groupversion`, built from the same row), so
consumers that dedupe by version apply each change at most once. Replay doesn't touch `published_at`:
the relay's own progress is unaffected. Each record carries the Kafka header `scimsync_replay: 1` and its event's
stored `traceparent`, so a traced consumer's span joins the trace of the original change, marked as a replay.
Events the outbox's gate keeps back (held by the deprovisioning brake, parked, or behind one of those in their
stream) are not replayed, only counted (`gated`): they go out when their gate opens.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, TextIO

import orjson

from service.domain import events
from service.relay.publisher import KafkaUnavailable, Publisher
from service.settings import Settings
from service.store import outbox
from service.store.pool import connect

_PAGE = 1000


@dataclass(frozen=True)
class ReplayOptions:
    selection: outbox.Selection
    topic: str | None = None  # None: each event's own topic (user-lifecycle.v1 / group-lifecycle.v1)
    dry_run: bool = False
    rate: float | None = None  # events per second at most
    replication_factor: int = 1


async def replay(settings: Settings, options: ReplayOptions, out: TextIO = sys.stdout) -> dict[str, Any]:
    """Publish (or with dry_run, list) the selected events in sequence order; returns a summary.

    A `topic` takes one aggregate's events only: user and group events have their own consumers and dead-letter
    topics, and a mixed topic would send each to the other's.
    """
    if options.topic is not None and options.selection.aggregate is None:
        raise ValueError("replay to one topic needs a selection of one aggregate (user or group)")
    topics = settings.topics() if options.topic is None else dict.fromkeys(settings.topics(), options.topic)
    conn = await connect(settings.database_url)
    publisher = (
        None
        if options.dry_run
        else Publisher(
            settings.kafka_bootstrap_servers,
            topics,
            settings.topic_partitions,
            options.replication_factor,
            security=settings.kafka.client_options(),
            replay=True,  # marked `scimsync_replay: 1`; each event keeps its stored traceparent
        )
    )
    progress = _Progress(await outbox.count_selected(conn, options.selection), enabled=sys.stderr.isatty())
    gated = await outbox.count_selected(conn, options.selection, blocked=True)
    types: Counter[str] = Counter()
    used: set[str] = set()
    last, first = 0, None
    page = min(_PAGE, max(1, int(options.rate))) if options.rate else _PAGE
    started = time.perf_counter()
    try:
        while batch := await outbox.read_selected(conn, options.selection, last, page):
            if options.dry_run:
                for event in batch:
                    line = {
                        "sequence": event.sequence,
                        "id": event.id,
                        "type": event.type,
                        "topic": topics[event.aggregate],
                    }
                    out.write(orjson.dumps({**line, "key": events.key(event).decode()}).decode() + "\n")
            else:
                assert publisher is not None
                await _publish(publisher, conn, batch)
            first = first or batch[0].sequence
            last = batch[-1].sequence
            types.update(event.type for event in batch)
            used.update(topics[event.aggregate] for event in batch)
            progress.advance(len(batch))
            if options.rate:
                # Stay under the rate: the batch may not finish before `done / rate` seconds have passed.
                ahead = progress.done / options.rate - (time.perf_counter() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
    finally:
        progress.finish()
        if publisher is not None:
            await publisher.close()
        await conn.close()
    elapsed = time.perf_counter() - started
    return {
        "dry_run": options.dry_run,
        "events": progress.done,
        "gated": gated,  # selected but kept back by a gate: not replayed
        "first_sequence": first,
        "last_sequence": last or None,
        "types": dict(sorted(types.items())),
        "topics": sorted(used),
        "seconds": round(elapsed, 3),
        "events_per_second": round(progress.done / elapsed) if elapsed > 0 else None,
    }


async def _publish(publisher: Publisher, conn: Any, batch: list[events.StoredEvent]) -> None:
    """Kafka down: retry the same batch a few times, then give up with the error (the SRE re-runs from here).
    An event Kafka refuses for good stops the replay (RecordRefused): it would break its stream's order.
    Before each retry the batch's erasures are read again: a user deleted while Kafka was away goes out erased."""
    for attempt in range(5):
        try:
            (await publisher.publish(batch)).require_all()
            return
        except KafkaUnavailable:
            if attempt == 4:
                raise
            await asyncio.sleep(0.5 * 2**attempt)
        batch = await outbox.erase_deleted(conn, batch)


class _Progress:
    """`replayed 41,500 / 100,000 (41%) 20,311 ev/s` on stderr when it is a terminal."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self._enabled = total, 0, enabled
        self._started = time.perf_counter()

    def advance(self, n: int) -> None:
        self.done += n
        if self._enabled:
            rate = self.done / max(time.perf_counter() - self._started, 1e-6)
            pct = 100 * self.done // max(self.total, 1)
            sys.stderr.write(f"\rreplayed {self.done:,} / {self.total:,} ({pct}%) {rate:,.0f} ev/s ")
            sys.stderr.flush()

    def finish(self) -> None:
        if self._enabled:
            sys.stderr.write("\n")
