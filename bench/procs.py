"""The whole pipeline as processes (API, relay, booking and workspace consumers) and what each one costs.

Shared by bench.pipeline and bench.burst. CPU is user+system time from /proc (psutil) of the process and its
children; peak RSS is the kernel's high-water mark (VmHWM), so nothing between samples is missed. Postgres is
the backends connected to the bench database (the server's own background processes are left out: they serve
every database on the shared server); Kafka is the broker process listening on the bootstrap port, which other
clients of the same broker also load.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from bench.consumers import scrape
from bench.harness import KAFKA, free_port

ROOT = Path(__file__).resolve().parents[1]
CONSUMERS = ("booking", "workspace")


def cpu_seconds(pids: list[int]) -> float:
    """User+system CPU of the processes and their children (the dead ones count once reaped)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    t = child.cpu_times()
                    total += t.user + t.system
    return total


def peak_rss_mb(pid: int) -> float:
    """The kernel's high-water mark of the resident set (VmHWM), in MB."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def listening_pid(port: int, name: str = "") -> int | None:
    """The process listening on 127.0.0.1:`port` (whose command line contains `name`)."""
    for proc in psutil.process_iter(["cmdline"]):
        if name not in " ".join(proc.info["cmdline"] or []).lower():
            continue
        with contextlib.suppress(psutil.Error):
            if any(c.laddr.port == port and c.status == "LISTEN" for c in proc.net_connections("tcp")):
                return int(proc.pid)
    return None


def kafka_broker_pid(bootstrap: str = KAFKA) -> int | None:
    return listening_pid(int(bootstrap.rsplit(":", 1)[1]), "kafka")


@dataclass
class Pipeline:
    """API, relay and both consumers on fresh topics against `url`; `api` is its base URL."""

    url: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)
    api: str = ""

    def environ(self, run: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.url,
            "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
            "SCIMSYNC_USER_TOPIC": f"bench-pipeline-users-{run}",
            "SCIMSYNC_GROUP_TOPIC": f"bench-pipeline-groups-{run}",
            "SCIMSYNC_CONSUMER_GROUP_PREFIX": f"bench-{run}.",
            "SCIMSYNC_LOG_LEVEL": "warning",
            "SCIMSYNC_DB_POOL_MAX": "32",
            "SCIMSYNC_RATE_LIMIT_PER_SECOND": "0",  # one tenant at full speed: not what a tenant limit allows
            "SCIMSYNC_TENANT_CONCURRENCY": "1000",
        }

    @contextlib.contextmanager
    def running(self) -> Iterator[Pipeline]:
        run = uuid.uuid4().hex[:8]
        env = self.environ(run)
        port = free_port()
        self.api = f"http://127.0.0.1:{port}"
        logs = ROOT / ".bench"
        logs.mkdir(exist_ok=True)
        commands = {
            "api": ["service.cli", "api", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            "relay": ["service.cli", "relay"],
        }
        try:
            for name, args in commands.items():
                self.procs[name] = _spawn(args, {**env, "SCIMSYNC_PUBLIC_URL": self.api}, logs / f"pipeline-{name}.log")
            for name in CONSUMERS:
                self.metrics_ports[name] = free_port()
                consumer_env = {**env, "SCIMSYNC_CONSUMER_METRICS_PORT": str(self.metrics_ports[name])}
                self.procs[name] = _spawn(["consumers", name], consumer_env, logs / f"pipeline-{name}.log")
            yield self
        finally:
            for proc in self.procs.values():
                if proc.poll() is None:
                    proc.terminate()
            for proc in self.procs.values():
                proc.wait(timeout=30)

    async def handled(self) -> dict[str, int]:
        """Events each consumer has finished with (applied, skipped or dead-lettered), from its /metrics."""
        out = {}
        for name, port in self.metrics_ports.items():
            try:
                metrics = await scrape(port)
            except OSError:
                out[name] = -1
                continue
            out[name] = sum(v for k, v in metrics.items() if k in ("applied", "skipped_duplicate", "dead_lettered"))
        return out

    async def lags(self) -> dict[str, int]:
        out = {}
        for name, port in self.metrics_ports.items():
            with contextlib.suppress(OSError):
                out[name] = (await scrape(port)).get("lag", 0)
        return out

    async def wait_ready(self, within: float = 90) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                for name, proc in self.procs.items():
                    if proc.poll() is not None:
                        raise RuntimeError(f"{name} exited with {proc.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    healthy = (await client.get(f"{self.api}/healthz")).status_code == 200
                    if healthy and min((await self.handled()).values()) >= 0:
                        return
                await asyncio.sleep(0.2)
        raise RuntimeError("the pipeline did not start")

    async def wait_handled(self, target: int, within: float = 120) -> float:
        """Wait until both consumers finished with `target` events; return when (monotonic)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if min((await self.handled()).values()) >= target:
                return time.monotonic()
            await asyncio.sleep(0.02)
        raise RuntimeError(f"the consumers did not reach {target} events within {within} s: {await self.handled()}")


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def spawn_peer(port: int) -> subprocess.Popen[bytes]:
    """scim2-server 0.8.3 under uvicorn (bench/peer.py)."""
    env = {**os.environ, "SCIM2_SERVER_SECRET": "bench"}
    args = ["uvicorn", "bench.peer:app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    return _spawn(args, env, ROOT / ".bench" / "peer.log")
