"""End to end: a SCIM write committed → the event applied by the workspace consumer, under a steady load.

    .venv/bin/python -m bench.e2e [--rate 500] [--seconds 20]

The API, the relay and the workspace consumer run as processes (as deployed) on fresh topics; wrk sends
PATCHes at about `--rate` per second (10 connections, each pausing between requests). A trigger in the
bench database stamps every upsert of workspace.members with clock_timestamp(); the latency is that stamp
minus the event's occurred_at (the moment the API committed it, just before it answered).
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

from bench.harness import KAFKA, api_process, fresh_database, new_tenant, wrk
from service.store.pool import connect

ROOT = Path(__file__).resolve().parents[1]
CONNECTIONS = 10

_SEED = """
INSERT INTO users (tenant_id, id, user_name, active, version, resource, created_at, updated_at)
SELECT $1, gen_random_uuid(), 'e2e' || g || '@example.com', true, 1,
       jsonb_build_object('userName', 'e2e' || g || '@example.com', 'active', true), now(), now()
FROM generate_series(1, $2) AS g
"""

_STAMP = """
CREATE TABLE IF NOT EXISTS bench_applied (user_id uuid, version bigint, at timestamptz);
CREATE OR REPLACE FUNCTION bench_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_applied VALUES (NEW.user_id, NEW.version, clock_timestamp());
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS bench_stamp ON workspace.members;
CREATE TRIGGER bench_stamp AFTER INSERT OR UPDATE ON workspace.members FOR EACH ROW EXECUTE FUNCTION bench_stamp();
"""

_LATENCY = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99,
       max(ms) AS max, count(*) AS n
FROM (SELECT extract(epoch FROM a.at - e.occurred_at) * 1000 AS ms
      FROM events e JOIN bench_applied a ON a.user_id = e.subject AND a.version = e.version
      WHERE e.type <> 'user.created') AS t
"""

_PATCH = """
math.randomseed(os.time())
local ids = {ids}
wrk.method = "PATCH"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "application/scim+json"
local n = 0
request = function()
  n = n + 1
  local body = '{{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":' ..
    '[{{"op":"replace","path":"title","value":"t' .. n .. '"}}]}}'
  return wrk.format(nil, "{base}/Users/" .. ids[math.random(1, #ids)], nil, body)
end
delay = function() return {delay_ms} end
"""


def spawn(args: list[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
    with open(f"/tmp/scimsync-bench-{log}.log", "wb") as out:
        return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=500.0, help="PATCHes per second, about")
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
    procs = [spawn(["service.cli", "relay"], env, "e2e-relay"), spawn(["consumers", "workspace"], env, "e2e-ws")]
    try:
        deadline = time.monotonic() + 60
        while not await conn.fetchval("SELECT to_regclass('workspace.members') IS NOT NULL"):
            assert time.monotonic() < deadline, "the workspace consumer did not start"
            await asyncio.sleep(0.2)
        await conn.execute(_STAMP)
        await asyncio.sleep(3)  # the consumer joins its group
        delay_ms = max(0, int(CONNECTIONS * 1000 / args.rate) - 2)  # minus about one request's own time
        lua = _PATCH.format(ids=json.dumps(ids).replace("[", "{").replace("]", "}"), token=token,
                            base=f"/scim/v2/{tenant_id}", delay_ms=delay_ms)  # fmt: skip
        with api_process(url, env) as api:
            load = wrk(api, lua, args.seconds, connections=CONNECTIONS)
        written = await conn.fetchval("SELECT count(*) FROM events WHERE type <> 'user.created'")
        deadline = time.monotonic() + 60
        while await conn.fetchval("SELECT count(*) FROM bench_applied") < written:
            assert time.monotonic() < deadline, "not every event was applied within 60 s"
            await asyncio.sleep(0.2)
        row = await conn.fetchrow(_LATENCY)
        print(json.dumps({
            "bench": "scim_write_to_consumer_applied",
            "writes_per_s": round(load["requests_per_s"]),
            "scim_p99_ms": load["p99_ms"],
            "events": row["n"],
            "p50_ms": round(float(row["p50"]), 1),
            "p99_ms": round(float(row["p99"]), 1),
            "max_ms": round(float(row["max"]), 1),
        }), flush=True)  # fmt: skip
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
