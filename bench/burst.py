"""Onboarding burst: N users created as fast as the API accepts them, with the relay and both consumers running.

    .venv/bin/python -m bench.burst [--users 100000] [--connections 32]

API, relay, booking and workspace run as processes (bench/procs.py). wrk sends Okta's full create body on 32
connections (closed loop, full speed) and stops after N answers (the burst ends when the Nth user is committed);
any non-2xx voids the run. Every 200 ms this
process samples the relay's lag (outbox rows not yet published) and each consumer's lag (its /metrics). Prints
the SCIM throughput, the peak lags, and the seconds from the last SCIM answer until both projections
(booking.users, workspace.members) hold every user of the users table, plus CPU-ms per user and peak RSS of
each process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from bench.api import _CREATE
from bench.harness import fresh_database, new_tenant, parse_wrk, start_wrk
from bench.procs import Pipeline, cpu_seconds, peak_rss_mb
from consumers.domains import DOMAINS
from service.store.pool import connect

DB = "scimsync_bench_burst"

# Stop sending after `n` answers: the burst is a number of users (wrk then idles until SIGINT).
_STOP = """
local answers = 0
response = function(status, headers, body)
  answers = answers + 1
  if answers >= {n} then wrk.thread:stop() end
end
"""

_PROJECTED = """
SELECT (SELECT count(*) FROM users WHERE tenant_id = $1) AS users,
       (SELECT count(*) FROM booking.users WHERE tenant_id = $1) AS booking,
       (SELECT count(*) FROM workspace.members WHERE tenant_id = $1) AS workspace
"""


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    url = await fresh_database(DB, schemas=tuple(d.schema_sql for d in DOMAINS.values()))
    tenant_id, token = await new_tenant(url)
    tenant = uuid.UUID(tenant_id)
    lua = _CREATE.format(token=token, base=f"/scim/v2/{tenant_id}", run="burst", users=0)
    lua += _STOP.replace("{n}", str(args.users))
    conn, sampler_conn = await connect(url), await connect(url)
    peaks = {"relay": 0, "booking": 0, "workspace": 0}
    try:
        with Pipeline(url).running() as pipe:
            await pipe.wait_ready()
            pids = {n: [p.pid] for n, p in pipe.procs.items()}
            cpu_before = {n: cpu_seconds(p) for n, p in pids.items()}
            sampling = True

            async def sample() -> None:
                while sampling:
                    unpublished = await sampler_conn.fetchval("SELECT count(*) FROM events WHERE published_at IS NULL")
                    peaks["relay"] = max(peaks["relay"], int(unpublished))
                    for name, lag in (await pipe.lags()).items():
                        peaks[name] = max(peaks[name], lag)
                    await asyncio.sleep(0.2)

            sampler = asyncio.create_task(sample())
            started = time.monotonic()
            driver = start_wrk(pipe.api, lua, args.connections)
            while await conn.fetchval("SELECT count(*) FROM users WHERE tenant_id = $1", tenant) < args.users:
                if driver.poll() is not None:
                    raise RuntimeError(f"wrk stopped early: {driver.communicate()}")
                await asyncio.sleep(0.02)
            answered = time.monotonic()  # the Nth user committed: its answer is on its way
            driver.send_signal(signal.SIGINT)
            load = parse_wrk(driver.communicate(timeout=30)[0])
            Path(str(driver.args[-2])).unlink(missing_ok=True)  # the Lua script
            while True:
                row = await conn.fetchrow(_PROJECTED, tenant)
                if row["booking"] == row["users"] == row["workspace"] >= args.users:
                    break
                if time.monotonic() - answered > 300:
                    raise RuntimeError(f"the projections did not catch up within 300 s: {dict(row)}")
                await asyncio.sleep(0.05)
            caught_up = time.monotonic()
            sampling = False
            await sampler
            users = int(row["users"])
            cpu = {n: round((cpu_seconds(p) - cpu_before[n]) * 1000 / users, 3) for n, p in pids.items()}
            result: dict[str, Any] = {
                "bench": "burst",
                "users": users,
                "connections": args.connections,
                "scim_per_s": round(users / (answered - started)),
                "p50_ms": load["p50_ms"],
                "p99_ms": load["p99_ms"],
                "relay_peak_lag": peaks["relay"],
                "booking_peak_lag": peaks["booking"],
                "workspace_peak_lag": peaks["workspace"],
                "caught_up_s_after_last_answer": round(caught_up - answered, 2),
                "target_met": caught_up - answered <= 10,
                "cpu_ms_per_user": cpu,
                "peak_rss_mb": {n: peak_rss_mb(p.pid) for n, p in pipe.procs.items()},
                "machine": "2 cores shared with the load generator",
            }
            print(json.dumps(result), flush=True)
    finally:
        await conn.close()
        await sampler_conn.close()


if __name__ == "__main__":
    asyncio.run(main())
