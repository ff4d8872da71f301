"""Rebuild benchmark: `scimsync rebuild workspace` over the events of 100k users.

    .venv/bin/python -m bench.rebuild [--users 100000] [--versions 1] [--groups 0] [--partitions 6]

Against a fresh database (`scimsync_bench_rebuild`) and fresh topics: produces `users` x `versions` user events
(created, then updates) and `groups` group.created events of 20 members each, runs the workspace consumer once
to build the projection, then times `python -m service.cli rebuild workspace` as an SRE runs it (a process of
its own). Prints JSON lines: the produce, the first build, the rebuild (wall seconds of the command and the
seconds in its own summary), and whether the rebuilt tables hold what the first build did.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient

from bench import harness
from consumers.domains import DOMAINS
from consumers.runtime import logs
from consumers.runtime.database import connect
from consumers.runtime.process import ConsumerProcess
from consumers.runtime.settings import ConsumerSettings
from consumers.runtime.topics import ensure_topics
from consumers.samples import group_event, produce, user_event

KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:59092")
ROOT = Path(__file__).resolve().parents[1]
DB_NAME = "scimsync_bench_rebuild"
TABLES = ("members", "versions", "teams", "team_members", "group_versions")


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps({"bench": "rebuild", **record}).decode() + "\n")
    sys.stdout.flush()


async def _fresh_database() -> str:
    return await harness.fresh_database(DB_NAME, migrate=False, schemas=(DOMAINS["workspace"].schema_sql,))


async def _fingerprint(url: str) -> dict[str, Any]:
    """Row count and an order-independent digest of every projection table."""
    conn = await connect(url)
    try:
        result = {}
        for table in TABLES:
            row = await conn.fetchrow(
                f"SELECT count(*) AS n, coalesce(sum(hashtext(t::text)::bigint), 0) AS digest FROM workspace.{table} t"
            )
            result[table] = (row["n"], row["digest"])
        return result
    finally:
        await conn.close()


def _events(users: int, versions: int, groups: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tenant = str(uuid.uuid4())
    ids = [str(uuid.uuid4()) for _ in range(users)]
    user_events = [
        user_event("user.created" if v == 1 else "user.updated", tenant, user, v, family_name=f"v{v}")
        for user in ids
        for v in range(1, versions + 1)
    ]
    group_events = [
        group_event(
            "group.created", tenant, str(uuid.uuid4()), 1, display_name=f"team {n}", members=ids[n::groups][:20]
        )
        for n in range(groups)
    ]
    return user_events, group_events


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--versions", type=int, default=1, help="events per user (created, then updates)")
    parser.add_argument("--groups", type=int, default=0, help="group.created events, 20 members each")
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args()
    logs.configure("warning", stream=sys.stderr.buffer)
    url = await _fresh_database()
    run = uuid.uuid4().hex[:8]
    settings = ConsumerSettings(
        database_url=url,
        kafka_bootstrap_servers=KAFKA,
        user_topic=f"scimsync-bench-rebuild-users-{run}",
        group_topic=f"scimsync-bench-rebuild-groups-{run}",
        topic_partitions=args.partitions,
        group_prefix=f"bench-rebuild-{run}.",
    )
    topics = [settings.user_topic, settings.group_topic]
    await ensure_topics(KAFKA, [*topics, *(f"{t}.dlq" for t in topics)], args.partitions, 1)
    try:
        user_events, group_events = _events(args.users, args.versions, args.groups)
        started = time.perf_counter()
        await produce(KAFKA, settings.user_topic, user_events)
        await produce(KAFKA, settings.group_topic, group_events)
        events = len(user_events) + len(group_events)
        _emit({"step": "produce", "events": events, "seconds": round(time.perf_counter() - started, 2)})

        process = ConsumerProcess(DOMAINS["workspace"], settings)
        await process.start()
        started = time.perf_counter()
        task = asyncio.create_task(process.run())
        while process.metrics.handled < events or process.metrics.total_lag:
            if task.done():
                await task
                return 1
            await asyncio.sleep(0.05)
        built = time.perf_counter() - started
        process.stop()
        await task
        await process.close()
        _emit({"step": "consume", "events": events, "seconds": round(built, 2), "events_per_s": round(events / built)})
        before = await _fingerprint(url)

        env = {
            **os.environ,
            "DATABASE_URL": url,
            "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
            "SCIMSYNC_USER_TOPIC": settings.user_topic,
            "SCIMSYNC_GROUP_TOPIC": settings.group_topic,
            "SCIMSYNC_TOPIC_PARTITIONS": str(args.partitions),
            "SCIMSYNC_CONSUMER_GROUP_PREFIX": settings.group_prefix,
            "SCIMSYNC_LOG_LEVEL": "warning",
        }
        started = time.perf_counter()
        command = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service.cli",
            "rebuild",
            "workspace",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await command.communicate()
        wall = time.perf_counter() - started
        if command.returncode != 0:
            _emit({"step": "rebuild", "exit_code": command.returncode})
            return 1
        summary = orjson.loads(out)
        after = await _fingerprint(url)
        _emit(
            {
                "step": "rebuild",
                "users": args.users,
                "events": events,
                "seconds": round(wall, 2),
                "seconds_in_summary": summary["seconds"],
                "events_per_s": round(events / wall),
                "applied": summary["applied"],
                "superseded": summary["superseded"],
                "equal_to_first_build": after == before,
                "members": after["members"][0],
                "command": "python -m service.cli rebuild workspace",
            }
        )
        return 0 if after == before else 1
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA)
        await admin.start()
        with contextlib.suppress(Exception):
            await admin.delete_topics([*topics, *(f"{t}.dlq" for t in topics)])
        await admin.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
