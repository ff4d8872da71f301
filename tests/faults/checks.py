"""What every fault test asserts once the fault is over.

- No event lost: every row of the event log is on Kafka, on its aggregate's topic, under its key.
- Order kept: per key, walking the topic in offset order and applying only what is newer (as consumers do)
  applies every event of the log, in log order, none skipped; duplicates (at-least-once) are counted.
- Projections equal the source: workspace members and booking users match the users table (userName, active,
  version), workspace teams and team members match groups and group_members.
- No 500, ever: a 5xx answer is a 503 with Retry-After, sent while Postgres was away (plus a short grace for the
  connections that died with it); every other answer is the write's success status.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.faults.load import OK, Outcome, summary

RECOVERY_GRACE_S = 5.0  # after Postgres answers again, requests already failing on dead connections may still 503


@dataclass(frozen=True)
class Row:
    sequence: int
    id: str
    tenant_id: str
    aggregate: str
    subject: str
    version: int

    @property
    def key(self) -> str:
        return f"{self.tenant_id}:{self.subject}"


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: str
    event_id: str
    version: int


async def event_log(conn: Any) -> list[Row]:
    rows = await conn.fetch("SELECT sequence, id, tenant_id, aggregate, subject, version FROM events ORDER BY sequence")
    return [
        Row(r["sequence"], str(r["id"]), str(r["tenant_id"]), r["aggregate"], str(r["subject"]), r["version"])
        for r in rows
    ]


async def read_all(kafka: str, names: Iterable[str], within: float = 60) -> list[Record]:
    """Every record of the topics, from the earliest offset to the end as it is now."""
    topics = list(names)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False, fetch_max_wait_ms=100)
    await consumer.start()
    out: list[Record] = []
    try:
        deadline = time.monotonic() + within
        while not all(consumer.partitions_for_topic(t) for t in topics):
            assert time.monotonic() < deadline, f"no metadata for {topics} within {within} s"
            await consumer._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if end[tp] > 0}
        while pending:
            assert time.monotonic() < deadline, f"could not read the topics to their end within {within} s"
            for tp, batch in (await consumer.getmany(*pending, timeout_ms=200)).items():
                for r in batch:
                    value = orjson.loads(r.value)
                    version = value.get("userversion", value.get("groupversion"))
                    out.append(Record(tp.topic, tp.partition, r.offset, r.key.decode(), value["id"], int(version)))
            pending = {tp for tp in pending if await consumer.position(tp) < end[tp]}
    finally:
        await consumer.stop()
    return out


def check_log_on_kafka(
    rows: list[Row],
    records: list[Record],
    topics: dict[str, str],
    held: set[int] = frozenset(),  # type: ignore[assignment]
) -> dict[str, int]:
    """Every event of the log (but the `held` sequences) is on Kafka, in order per key. → counts."""
    by_id: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_id[record.event_id].append(record)
    missing = [r for r in rows if r.id not in by_id and r.sequence not in held]
    assert not missing, f"{len(missing)} of {len(rows)} events never reached Kafka, e.g. {missing[:3]}"
    per_key: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        per_key[row.key].append(row)
    position: dict[str, int] = {}
    for key, history in per_key.items():
        versions = [r.version for r in history]
        assert versions == sorted(set(versions)), f"{key}: the log's versions don't increase: {versions[:20]}"
        position.update((r.id, i) for i, r in enumerate(history))
    logged = {r.id: r for r in rows}
    on_kafka: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        row = logged.get(record.event_id)
        if row is None:
            continue  # not an event of this log
        assert record.topic == topics[row.aggregate], f"{row} published to {record.topic}"
        assert (record.key, record.version) == (row.key, row.version), f"{record} does not match {row}"
        on_kafka[row.key].append(record)
    for key, items in on_kafka.items():
        assert len({r.partition for r in items}) == 1, f"{key} spread over partitions"
        applied = -1
        for record in sorted(items, key=lambda r: r.offset):
            at = position[record.event_id]
            assert at <= applied + 1, f"{key}: version {record.version} on Kafka before version(s) it follows"
            applied = max(applied, at)
        expected = [r for r in per_key[key] if r.sequence not in held]
        assert applied == len(expected) - 1, f"{key}: applies up to event {applied}, the log has {len(expected)}"
    published = sum(len(by_id[r.id]) for r in rows if r.id in by_id)
    return {"events": len(rows), "records": published, "duplicates": published - len({r.id for r in rows} & set(by_id))}


_PROJECTION_DIFF = """
SELECT 'workspace.members' AS projection, coalesce(u.id, m.user_id) AS id
FROM users u FULL JOIN workspace.members m ON m.tenant_id = u.tenant_id AND m.user_id = u.id
WHERE u.id IS NULL OR m.user_id IS NULL
   OR (m.user_name, m.active, m.version) IS DISTINCT FROM (u.user_name, u.active, u.version)
UNION ALL
SELECT 'booking.users', coalesce(u.id, b.user_id)
FROM users u FULL JOIN (SELECT * FROM booking.users WHERE NOT deleted) b
  ON b.tenant_id = u.tenant_id AND b.user_id = u.id
WHERE u.id IS NULL OR b.user_id IS NULL OR (b.eligible, b.version) IS DISTINCT FROM (u.active, u.version)
UNION ALL
SELECT 'workspace.teams', coalesce(g.id, t.group_id)
FROM groups g FULL JOIN workspace.teams t ON t.tenant_id = g.tenant_id AND t.group_id = g.id
WHERE g.id IS NULL OR t.group_id IS NULL
   OR (t.display_name, t.version) IS DISTINCT FROM (g.display_name, g.version)
UNION ALL
SELECT 'workspace.team_members', coalesce(gm.group_id, tm.group_id)
FROM group_members gm FULL JOIN workspace.team_members tm
  ON tm.tenant_id = gm.tenant_id AND tm.group_id = gm.group_id AND tm.user_id = gm.user_id
WHERE gm.user_id IS NULL OR tm.user_id IS NULL
"""


async def projection_drift(conn: Any, ignore: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(projection, user or group id) for every row where a projection and its source differ."""
    skip = set(ignore)
    return [(r["projection"], str(r["id"])) for r in await conn.fetch(_PROJECTION_DIFF) if str(r["id"]) not in skip]


async def unpublished(conn: Any, held: set[int] = frozenset()) -> int:  # type: ignore[assignment]
    rows = await conn.fetch("SELECT sequence FROM events WHERE published_at IS NULL")
    return sum(1 for r in rows if r["sequence"] not in held)


async def converge(
    connect: Any,
    since: float,
    within: float,
    held: set[int] = frozenset(),  # type: ignore[assignment]
    ignore: Iterable[str] = (),
) -> tuple[float, float]:
    """Until every event (but `held`) is published and every projection equals its source (but `ignore`d ids).

    → (seconds until all published, seconds until the projections converged), counted from `since`.
    """
    started = since
    published_at: float | None = None
    last: Any = None
    while True:
        try:
            conn = await connect()
            try:
                if published_at is None and await unpublished(conn, held) == 0:
                    published_at = time.monotonic() - started
                if published_at is not None:
                    last = await projection_drift(conn, ignore)
                    if not last:
                        return published_at, time.monotonic() - started
                else:
                    last = f"{await unpublished(conn, held)} events unpublished"
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:  # Postgres still coming back
            last = repr(exc)
        if time.monotonic() - started > within:
            drift = f"{len(last)} rows differ, e.g. {last[:10]}" if isinstance(last, list) else last
            raise AssertionError(f"not converged within {within} s: {drift}")
        # The comparison reads every projection: look often at first, then once a second, so that the check
        # doesn't compete with the consumers it waits for (the figures are then exact to about a second).
        await asyncio.sleep(0.2 if published_at is None or time.monotonic() - started < 5 else 1.0)


def check_answers(outcomes: list[Outcome], away: list[tuple[float, float]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """No 500, no request left unanswered; a 503 only with Retry-After while Postgres was `away` (start, end)."""
    bad: list[str] = []
    for o in outcomes:
        if o.status == 0:
            bad.append(f"{o.op}: no answer")
        elif o.status == 503:
            if not o.retry_after:
                bad.append(f"{o.op}: 503 without Retry-After")
            if not any(o.answered >= start and o.sent <= end + RECOVERY_GRACE_S for start, end in away):
                bad.append(f"{o.op}: 503 while Postgres was up")
        elif o.status not in OK[o.op] and not (o.op == "create" and o.status == 409 and o.retried):
            bad.append(f"{o.op}: {o.status}")
    counts = summary(outcomes)
    assert not bad, f"{len(bad)} bad answers of {len(outcomes)}: {sorted(set(bad))[:10]}; {counts}"
    return counts
