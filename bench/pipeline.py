"""The whole pipeline's cost per change: API + relay + both consumers as processes, against scim2-server 0.8.3.

    .venv/bin/python -m bench.pipeline [--seconds 50] [--connections 32] [--no-peer]

Phases `create` (Okta's full create body) and `patch` (every PATCH changes the user's title), each driven by wrk
(32 connections, closed loop, full speed) after an unmeasured warm-up whose events the consumers finish first.
Per phase it prints: SCIM throughput and latency; the seconds from the last SCIM answer until both consumers
finished with the phase's last event; CPU-milliseconds per change of each process (API, relay, booking,
workspace, the Postgres backends of the bench database, and the Kafka broker, which other clients of the shared
broker also load), counted from the start of the measured run until both consumers caught up, so the
background work of every change is inside the window; and each process's peak RSS. After each of our phases,
the same wrk script against scim2-server 0.8.3 (in memory, under uvicorn: bench/peer.py), then the ratios, all
in one run. Any non-2xx voids the run. The targets need >= 20,000 requests per phase (`requests_ok`): on a slow
2-core machine that takes the default 50 s.
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
PEER = "scim2-server 0.8.3 (in memory, uvicorn)"


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


class Peer:
    """scim2-server 0.8.3 under uvicorn (bench/peer.py), started once and measured between our phases."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = spawn_peer(self.port)

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as client:
            while True:
                try:
                    (await client.get(f"{self.base}/v2/ServiceProviderConfig")).raise_for_status()
                    return
                except httpx.HTTPError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise RuntimeError("scim2-server did not start") from None
                    await asyncio.sleep(0.2)

    async def phase(self, phase: str, template: str, seconds: int, connections: int) -> dict[str, Any]:
        lua = template.replace("{base}", "/v2")
        if phase == "patch":
            async with httpx.AsyncClient(base_url=self.base) as client:
                lua = lua.replace("{ids}", _lua(await _ids(client, "/v2/Users")))
        wrk(self.base, lua, 2, connections, warmup=0)
        cpu = cpu_seconds([self.proc.pid])
        load = wrk(self.base, lua, seconds, connections, warmup=0)
        return {
            "requests": load["requests"],
            "per_s": round(load["requests_per_s"]),
            "p50_ms": load["p50_ms"],
            "p99_ms": load["p99_ms"],
            "cpu_ms_per_change": round((cpu_seconds([self.proc.pid]) - cpu) * 1000 / load["requests"], 3),
            "peak_rss_mb": peak_rss_mb(self.proc.pid),
        }

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=15)


def _lua(ids: list[str]) -> str:
    return "{" + ",".join(orjson.dumps(i).decode() for i in ids) + "}"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=50, help="each measured wrk run (>= 20,000 requests)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-peer", action="store_true", help="only our pipeline (quick A/B of a change)")
    args = parser.parse_args()
    url = await fresh_database(DB, schemas=tuple(d.schema_sql for d in DOMAINS.values()))
    tenant_id, token = await new_tenant(url)
    # Templates with {base} and {ids} left for later: ours and the peer's paths differ.
    create = _CREATE.replace("{token}", token).replace("{run}", "p")
    patch = _PATCH.replace("{token}", token)
    create, patch = create.replace("{{", "{").replace("}}", "}"), patch.replace("{{", "{").replace("}}", "}")
    ours: dict[str, dict[str, Any]] = {}
    peer: dict[str, dict[str, Any]] = {}
    others = None if args.no_peer else Peer()
    try:
        if others is not None:
            await others.wait_ready()
        with Pipeline(url).running() as pipe:
            await pipe.wait_ready()
            base = f"/scim/v2/{tenant_id}"
            # Each of our phases, then the peer's same phase right after: a machine that slows down during the
            # run moves both sides of a ratio alike.
            for phase in ("create", "patch"):
                if phase == "create":
                    lua = create.replace("{base}", base)
                else:
                    headers = {"Authorization": f"Bearer {token}"}
                    async with httpx.AsyncClient(base_url=pipe.api, headers=headers) as client:
                        ids = await _ids(client, f"{base}/Users")
                    lua = patch.replace("{base}", base).replace("{ids}", _lua(ids))
                ours[phase] = await measure_phase(pipe, url, phase, lua, args.seconds, args.connections)
                emit("pipeline", system="scimsync", **ours[phase])
                if others is not None:
                    peer[phase] = await others.phase(
                        phase, create if phase == "create" else patch, args.seconds, args.connections
                    )
                    emit("pipeline", system=PEER, phase=phase, **peer[phase])
    finally:
        if others is not None:
            others.stop()
    if not peer:
        return
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
