"""Replay throughput: 100k events of one tenant from the Postgres event log to fresh Kafka topics.

.venv/bin/python -m bench.replay [--events 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid

from bench.harness import KAFKA, fresh_database, new_tenant
from service.relay.replay import ReplayOptions, replay
from service.settings import Settings
from service.store import outbox
from service.store.pool import connect

_FILL = """
INSERT INTO events (id, tenant_id, aggregate, subject, type, version, occurred_at, data)
SELECT gen_random_uuid(), $1, 'user', u, CASE WHEN v = 1 THEN 'user.created' ELSE 'user.updated' END, v, now(),
       jsonb_build_object('id', u::text, 'userName', 'u' || v || '@example.com', 'active', true,
                          'name', jsonb_build_object('givenName', 'Given', 'familyName', 'Family'))
FROM (SELECT gen_random_uuid() AS u FROM generate_series(1, $2 / 10)) AS users, generate_series(1, 10) AS v
"""


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    url = await fresh_database("scimsync_bench_replay")
    tenant_id, _ = await new_tenant(url)
    conn = await connect(url)
    await conn.execute(_FILL, uuid.UUID(tenant_id), args.events)
    await conn.close()
    # Fresh topics as the events' own (a replay to one `--topic` takes one aggregate only, to keep its order).
    run = uuid.uuid4().hex[:8]
    settings = Settings(
        database_url=url,
        kafka_bootstrap_servers=KAFKA,
        user_topic=f"scimsync-bench-replay-users-{run}",
        group_topic=f"scimsync-bench-replay-groups-{run}",
    )
    summary = await replay(settings, ReplayOptions(outbox.Selection(tenant_id=tenant_id)))
    print(json.dumps({"bench": "replay", **summary}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
