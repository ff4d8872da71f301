"""The whole pipeline's cost per change: API + relay + both consumers as processes, against scim2-server 0.8.3.

    .venv/bin/python -m bench.pipeline [--seconds 15] [--connections 32]

Phases `create` (Okta's full create body) and `patch` (every PATCH changes the user's title), each driven by wrk
(32 connections, closed loop, full speed) after an unmeasured warm-up whose events the consumers finish first.
Per phase it prints: SCIM throughput and latency; the seconds from the last SCIM answer until both consumers
finished with the phase's last event; CPU-milliseconds per change of each process (API, relay, booking,
workspace, the Postgres backends of the bench database, and the Kafka broker, which other clients of the shared
broker also load), counted from the start of the measured run until both consumers caught up, so the
background work of every change is inside the window; and each process's peak RSS. Then the same wrk scripts
against scim2-server 0.8.3 (in memory, under uvicorn: bench/peer.py) and the ratios, all in one run. Any
non-2xx voids the run. The issue's targets need >= 20,000 requests per phase (`requests_ok`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import httpx
import orjson

from bench.api import _CREATE, _PATCH
from bench.harness import free_port, fresh_database, new_tenant, wrk
from bench.procs import CONSUMERS, Pipeline, cpu_seconds, kafka_broker_pid, peak_rss_mb, spawn_peer
from consumers.domains import DOMAINS
from service.store.pool import connect

DB = "scimsync_bench_pipeline"


def emit(name: str, **values: object) -> None:
    print(json.dumps({"bench": name, **values}), flush=True)


async def _events(url: str) -> int:
    conn = await connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


async def _backends(url: str) -> list[int]:
    conn = await connect(url)
    try:
        name = url.rsplit("/", 1)[1]
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name)
        return [r["pid"] for r in rows]
    finally:
        await conn.close()


async def _ids(client: httpx.AsyncClient, path: str, n: int = 1000) -> list[str]:
    body = (await client.get(path, params={"count": n})).json()
    return [r["id"] for r in body["Resources"]]


async def measure_phase(
    pipe: Pipeline, url: str, name: str, lua: str, seconds: int, connections: int
) -> dict[str, Any]:
    # Warm up, then let the consumers finish its events, so the window holds only the measured run's work.
    wrk(pipe.api, lua, 2, connections, warmup=0)
    before = await _events(url)
    await pipe.wait_handled(before)
    pids = {n: p.pid for n, p in pipe.procs.items()}
    backends, broker = await _backends(url), kafka_broker_pid()
    groups = {**{n: [p] for n, p in pids.items()}, "postgres": backends, "kafka": [broker] if broker else []}
    cpu_before = {n: cpu_seconds(p) for n, p in groups.items()}
    load = wrk(pipe.api, lua, seconds, connections, warmup=0)
    answered = time.monotonic()
    written = await _events(url)
    caught_up = await pipe.wait_handled(written)
    changes = written - before
    cpu = {n: round((cpu_seconds(p) - cpu_before[n]) * 1000 / changes, 3) for n, p in groups.items()}
    return {
        "phase": name,
        "requests": load["requests"],
        "requests_ok": load["requests"] >= 20_000,
        "changes": changes,
        "per_s": round(load["requests_per_s"]),
        "p50_ms": load["p50_ms"],
        "p99_ms": load["p99_ms"],
        "consumers_caught_up_s": round(caught_up - answered, 2),
        "cpu_ms_per_change": cpu,
        "cpu_ms_per_change_total": round(sum(cpu.values()), 3),
        "peak_rss_mb": {n: peak_rss_mb(p) for n, p in pids.items()},
    }


async def peer_phases(lua_create: str, lua_patch: str, seconds: int, connections: int) -> dict[str, dict[str, Any]]:
    port = free_port()
    proc = spawn_peer(port)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as client:
            while True:
                try:
                    (await client.get(f"{base}/v2/ServiceProviderConfig")).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("scim2-server did not start") from None
                    await asyncio.sleep(0.2)
        out: dict[str, dict[str, Any]] = {}
        for phase, template in (("create", lua_create), ("patch", lua_patch)):
            lua = template.replace("{base}", "/v2")
            if phase == "patch":
                async with httpx.AsyncClient(base_url=base) as client:
                    lua = lua.replace("{ids}", _lua(await _ids(client, "/v2/Users")))
            wrk(base, lua, 2, connections, warmup=0)
            cpu = cpu_seconds([proc.pid])
            load = wrk(base, lua, seconds, connections, warmup=0)
            out[phase] = {
                "requests": load["requests"],
                "per_s": round(load["requests_per_s"]),
                "p50_ms": load["p50_ms"],
                "p99_ms": load["p99_ms"],
                "cpu_ms_per_change": round((cpu_seconds([proc.pid]) - cpu) * 1000 / load["requests"], 3),
                "peak_rss_mb": peak_rss_mb(proc.pid),
            }
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _lua(ids: list[str]) -> str:
    return "{" + ",".join(orjson.dumps(i).decode() for i in ids) + "}"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15, help="each measured wrk run")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    url = await fresh_database(DB, schemas=tuple(d.schema_sql for d in DOMAINS.values()))
    tenant_id, token = await new_tenant(url)
    # Templates with {base} and {ids} left for later: ours and the peer's paths differ.
    create = _CREATE.replace("{token}", token).replace("{run}", "p")
    patch = _PATCH.replace("{token}", token)
    create, patch = create.replace("{{", "{").replace("}}", "}"), patch.replace("{{", "{").replace("}}", "}")
    ours: dict[str, dict[str, Any]] = {}
    with Pipeline(url).running() as pipe:
        await pipe.wait_ready()
        base = f"/scim/v2/{tenant_id}"
        ours["create"] = await measure_phase(
            pipe, url, "create", create.replace("{base}", base), args.seconds, args.connections
        )
        emit("pipeline", system="scimsync", **ours["create"])
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=pipe.api, headers=headers) as client:
            ids = await _ids(client, f"{base}/Users")
        lua = patch.replace("{base}", base).replace("{ids}", _lua(ids))
        ours["patch"] = await measure_phase(pipe, url, "patch", lua, args.seconds, args.connections)
        emit("pipeline", system="scimsync", **ours["patch"])
    peer = await peer_phases(create, patch, args.seconds, args.connections)
    for phase, figures in peer.items():
        emit("pipeline", system="scim2-server 0.8.3 (in memory, uvicorn)", phase=phase, **figures)
    create_ratio = ours["create"]["per_s"] / peer["create"]["per_s"]
    patch_ratio = ours["patch"]["per_s"] / peer["patch"]["per_s"]
    emit(
        "summary",
        create_vs_peer=round(create_ratio, 2),
        patch_vs_peer=round(patch_ratio, 2),
        caught_up_s={p: ours[p]["consumers_caught_up_s"] for p in ours},
        cpu_ms_per_change_total={p: ours[p]["cpu_ms_per_change_total"] for p in ours},
        create_target_met=create_ratio >= 2.5,
        patch_target_met=patch_ratio >= 2.0,
        caught_up_target_met=all(ours[p]["consumers_caught_up_s"] <= 2 for p in ours),
        requests_ok=all(ours[p]["requests_ok"] for p in ours),
        consumers=list(CONSUMERS),
        machine="2 cores shared with the load generator",
    )


if __name__ == "__main__":
    asyncio.run(main())
