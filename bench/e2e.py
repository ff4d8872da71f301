"""End to end: a SCIM write committed → the event applied (and committed) by the workspace consumer, open loop.

    .venv/bin/python -m bench.e2e [--rate 500] [--seconds 20]

The API, the relay and the workspace consumer run as processes (as deployed) on fresh topics. This process sends
PATCHes open loop: one every 1/rate s whatever the answers do (a slow answer never delays the next request, so
queueing shows in the figures). A trigger on workspace.members sends a NOTIFY per applied user version;
Postgres delivers a NOTIFY only when its transaction commits, so this process stamps "applied" on receipt, after
the consumer's commit. The latency is that stamp minus the moment the PATCH was due to be sent (its slot in the
schedule), on this process's clock. Any failed PATCH or any event not applied within 60 s voids the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.harness import KAFKA, api_process, fresh_database, new_tenant
from service.store.pool import connect

ROOT = Path(__file__).resolve().parents[1]

_SEED = """
INSERT INTO users (tenant_id, id, user_name, active, version, resource, created_at, updated_at)
SELECT $1, gen_random_uuid(), 'e2e' || g || '@example.com', true, 1,
       jsonb_build_object('userName', 'e2e' || g || '@example.com', 'active', true), now(), now()
FROM generate_series(1, $2) AS g
"""

_NOTIFY = """
CREATE OR REPLACE FUNCTION bench_applied() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bench_applied', NEW.user_id::text || ' ' || NEW.version::text);
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS bench_applied ON workspace.members;
CREATE TRIGGER bench_applied AFTER INSERT OR UPDATE ON workspace.members
    FOR EACH ROW EXECUTE FUNCTION bench_applied();
"""


def spawn(args: list[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
    with open(f"/tmp/scimsync-bench-{log}.log", "wb") as out:
        return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=500.0, help="PATCHes per second, open loop")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--users", type=int, default=1000)
    args = parser.parse_args()
    url = await fresh_database("scimsync_bench_e2e")
    tenant_id, token = await new_tenant(url)
    conn = await connect(url)
    await conn.execute(_SEED, uuid.UUID(tenant_id), args.users)
    ids = [str(r[0]) for r in await conn.fetch("SELECT id FROM users")]
    run = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
        "SCIMSYNC_USER_TOPIC": f"bench-e2e-users-{run}",
        "SCIMSYNC_GROUP_TOPIC": f"bench-e2e-groups-{run}",
        "SCIMSYNC_CONSUMER_GROUP_PREFIX": f"bench-{run}.",
        "SCIMSYNC_LOG_LEVEL": "warning",
    }
    applied: dict[tuple[str, int], float] = {}

    def on_applied(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        user_id, version = payload.split()
        applied.setdefault((user_id, int(version)), time.monotonic())

    procs = [spawn(["service.cli", "relay"], env, "e2e-relay"), spawn(["consumers", "workspace"], env, "e2e-ws")]
    try:
        deadline = time.monotonic() + 60
        while not await conn.fetchval("SELECT to_regclass('workspace.members') IS NOT NULL"):
            assert time.monotonic() < deadline, "the workspace consumer did not start"
            await asyncio.sleep(0.2)
        await conn.execute(_NOTIFY)
        await conn.add_listener("bench_applied", on_applied)
        due: dict[tuple[str, int], float] = {}
        failures = 0
        with api_process(url, env) as api:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
            limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
            base = f"{api}/scim/v2/{tenant_id}"
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30, limits=limits) as client:
                # Warm up (pool, the consumer's group join): the first PATCH must be applied before measuring.
                first = await client.patch(f"/Users/{ids[0]}", json=_patch("warm-up"))
                first.raise_for_status()
                deadline = time.monotonic() + 60
                while (ids[0], 2) not in applied:
                    assert time.monotonic() < deadline, "the warm-up PATCH was not applied within 60 s"
                    await asyncio.sleep(0.05)

                async def patch(n: int, slot: float) -> None:
                    nonlocal failures
                    user_id = ids[1 + n % (len(ids) - 1)]
                    try:
                        answer = await client.patch(f"/Users/{user_id}", json=_patch(f"t{n}"))
                    except httpx.TransportError:
                        failures += 1
                        return
                    if answer.status_code != 200:
                        failures += 1
                        return
                    version = int(answer.headers["etag"].removeprefix('W/"').removesuffix('"'))
                    due[(user_id, version)] = slot

                started = time.monotonic()
                total = int(args.rate * args.seconds)
                tasks = []
                for n in range(total):  # open loop: PATCH n is due at started + n/rate, whatever came back
                    slot = started + n / args.rate
                    await asyncio.sleep(max(0.0, slot - time.monotonic()))
                    tasks.append(asyncio.create_task(patch(n, slot)))
                await asyncio.gather(*tasks)
                sent_s = time.monotonic() - started
        deadline = time.monotonic() + 60
        while not all(k in applied for k in due):
            assert time.monotonic() < deadline, "not every event was applied within 60 s"
            await asyncio.sleep(0.1)
        if failures:
            raise SystemExit(f"bench.e2e: {failures} PATCHes failed: the run is void")
        delays = [(applied[k] - slot) * 1000 for k, slot in due.items()]
        print(json.dumps({
            "bench": "scim_write_to_consumer_applied",
            "offered_per_s": args.rate,
            "completed_per_s": round(total / sent_s),
            "events": len(delays),
            "p50_ms": round(percentile(delays, 0.50), 1),
            "p99_ms": round(percentile(delays, 0.99), 1),
            "max_ms": round(max(delays), 1),
            "stamped": "after the consumer's commit (NOTIFY)",
        }), flush=True)  # fmt: skip
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        await conn.close()


def _patch(title: str) -> dict[str, Any]:
    op = {"op": "replace", "path": "title", "value": title}
    return {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [op]}


if __name__ == "__main__":
    asyncio.run(main())
