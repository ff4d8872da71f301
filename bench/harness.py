"""Shared pieces of the benchmarks: a fresh database, a tenant, an API process, wrk runs."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from service.settings import LOCAL_DATABASE_URL, LOCAL_KAFKA
from service.store import migrator, tenants
from service.store.pool import connect

ADMIN_URL = os.environ.get("DATABASE_URL", LOCAL_DATABASE_URL)
KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", LOCAL_KAFKA)


def database_url(name: str) -> str:
    return urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))


async def fresh_database(name: str, migrate: bool = True, schemas: tuple[Path, ...] = ()) -> str:
    """Drop and re-create database `name`, with the service's migrations (unless not `migrate`) and the given
    schema files (e.g. the consumers' schema.sql); return its URL."""
    admin = await connect(ADMIN_URL)
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    url = database_url(name)
    conn = await connect(url)
    if migrate:
        await migrator.migrate(conn)
    for schema in schemas:
        await conn.execute(schema.read_text())
    await conn.close()
    return url


async def drop_database(name: str) -> None:
    admin = await connect(ADMIN_URL)
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.close()


async def new_tenant(url: str, name: str = "bench") -> tuple[str, str]:
    conn = await connect(url)
    tenant, token = await tenants.create(conn, name)
    await conn.close()
    return tenant.id, token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def api_process(db_url: str, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DATABASE_URL": db_url, "KAFKA_BOOTSTRAP_SERVERS": KAFKA, "SCIMSYNC_PUBLIC_URL": url}
    # The benches drive one tenant at thousands of requests/s: far over a tenant's rate limit, which is not
    # what they measure (tests/integration/test_rate_limits.py does).
    env |= {"SCIMSYNC_LOG_LEVEL": "warning", "SCIMSYNC_DB_POOL_MAX": "32", "SCIMSYNC_RATE_LIMIT_PER_SECOND": "0"}
    env |= {"SCIMSYNC_TENANT_CONCURRENCY": "1000", **(extra_env or {})}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service.cli",
            "api",
            "--port",
            str(port),
            "--workers",
            os.environ.get("BENCH_WORKERS", "1"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    url: str, lua: str, seconds: int = 10, connections: int = 32, threads: int = 1, warmup: int = 2
) -> dict[str, float]:
    """Run wrk with a Lua script: `warmup` seconds unmeasured (the API's pool grows, caches fill), then `seconds`
    measured; return requests/s and latency percentiles (ms). Any non-2xx answer or socket error in either run
    fails the benchmark (SystemExit): errors are not throughput."""
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is missing: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    try:
        if warmup > 0:
            _wrk_run(url, script.name, warmup, connections, threads)
        out = _wrk_run(url, script.name, seconds, connections, threads)
    finally:
        Path(script.name).unlink()
    return parse_wrk(out)


def parse_wrk(out: str) -> dict[str, float]:
    """requests/s, latency percentiles (ms) and requests of a wrk report; SystemExit on any non-2xx or socket
    error."""
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors and int(errors.group(1)) > 0:
        raise SystemExit(f"bench: {errors.group(1)} non-2xx answers: the run is void\n{out}")
    if "Socket errors" in out:
        raise SystemExit(f"bench: socket errors: the run is void\n{out}")
    result = {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "90", "99"):
        result[f"p{pct}_ms"] = _ms(re.search(rf"\s{pct}(?:\.000)?%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    result["requests"] = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return result


def start_wrk(url: str, lua: str, connections: int = 32, seconds: int = 3600) -> subprocess.Popen[str]:
    """wrk in the background, for a run that ends on a condition: SIGINT makes it stop and print its report
    (read it with `communicate()`, check it with `parse_wrk`)."""
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is missing: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False, dir=tempfile.gettempdir()) as script:
        script.write(lua)
    options = ["-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency", "-s", script.name]
    return subprocess.Popen(["wrk", *options, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wrk_run(url: str, script: str, seconds: int, connections: int, threads: int) -> str:
    options = [f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency", "-s", script]
    out = subprocess.run(
        ["wrk", *options, url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    parse_wrk(out)  # fails fast on errors, warm-up runs included
    return out
