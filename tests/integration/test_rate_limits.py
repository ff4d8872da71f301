"""Per-tenant rate limits: a flooding tenant gets 429 + Retry-After, the others don't notice; limits are per process."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from service.store import tenants
from tests.integration.conftest import Stack
from tests.integration.processes import running_api
from tests.integration.rawhttp import RawClient

ROOT = Path(__file__).resolve().parents[2]
HEADERS = "application/scim+json"


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


async def _client(base_url: str) -> RawClient:
    url = urlsplit(base_url)
    return await RawClient.open(url.hostname or "", url.port or 80)


async def _create_user(client: RawClient, path: str, token: str) -> str:
    body = orjson.dumps({"userName": f"rl-{uuid.uuid4().hex[:8]}@example.com"})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": HEADERS}
    created = await client.request("POST", f"{path}/Users", headers, body)
    assert created.status == 201, created.body
    return str(orjson.loads(created.body)["id"])


@dataclass
class Attempt:
    summary: dict[str, Any]
    idle_p99: float
    during_p99: float
    idle_median: float
    during_median: float


async def _burst_while_measuring(database_url: str, stack: Stack, db: Any) -> Attempt:
    """Tenant A sends 2,000 requests over 200 connections while tenant B's calls are timed; B also idle, around it."""
    noisy, noisy_token = await tenants.create(db, f"noisy-{uuid.uuid4().hex[:6]}")
    quiet, quiet_token = await tenants.create(db, f"quiet-{uuid.uuid4().hex[:6]}")
    # The quiet tenant's sequential calls on loopback run at ~300/s: above the default; its own limit is off.
    await tenants.set_rate_limit(db, quiet.id, 0, None)
    with running_api(database_url, stack.kafka) as api:  # the default limits
        quiet_path = f"/scim/v2/{quiet.id}"
        client = await _client(api.url)
        user = await _create_user(client, quiet_path, quiet_token)
        headers = {"Authorization": f"Bearer {quiet_token}"}

        async def quiet_call() -> float:
            response = await client.request("GET", f"{quiet_path}/Users/{user}", headers)
            assert response.status == 200, response.body
            return response.seconds

        async def idle_window() -> list[float]:
            samples, until = [], time.perf_counter() + 4
            while time.perf_counter() < until:
                samples.append(await quiet_call())
            return samples

        for _ in range(50):  # warm up: prepared statements, caches
            await quiet_call()
        # Idle before and after the burst, together about as long as the burst: on a shared machine the baseline
        # must sample the same background noise as the burst window does.
        idle_before = await idle_window()
        burst = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.integration.burst",
            f"{api.url}/scim/v2/{noisy.id}",
            noisy_token,
            "2000",
            "200",  # connections: Okta and Entra use far fewer; a flood is whatever the client can open
            cwd=ROOT,
            env=os.environ.copy(),
            stdout=subprocess.PIPE,
        )
        assert burst.stdout is not None
        assert (await burst.stdout.readline()).strip() == b"started"
        during = []
        while burst.returncode is None:
            during.append(await quiet_call())
            if len(during) % 20 == 0:
                await asyncio.sleep(0)  # let the subprocess watcher notice the exit
        summary = orjson.loads(await burst.stdout.read())
        idle_after = await idle_window()
        await client.close()
    idle = idle_before + idle_after
    return Attempt(
        summary,
        max(p99(idle_before), p99(idle_after)),
        p99(during),
        statistics.median(idle),
        statistics.median(during) if during else 0.0,
    )


async def test_a_bursting_tenant_gets_429s_while_another_tenant_keeps_its_latency(
    database_url: str, stack: Stack, db: Any
) -> None:
    """On a shared 2-core machine one window's p99 is mostly scheduler noise, so up to three attempts; and when the
    machine is saturated (load > 2 per core) the p99 comparison is skipped, not failed. Without the hold and the
    concurrency cap the quiet tenant's p99 was 140-590 ms against 5-25 ms idle, every time."""
    attempts = []
    for _ in range(3):
        attempt = await _burst_while_measuring(database_url, stack, db)
        attempts.append(attempt)
        summary = attempt.summary
        statuses = {int(k): v for k, v in summary["statuses"].items()}
        assert set(statuses) <= {200, 429} and sum(statuses.values()) == 2000, statuses
        # The default limit: 200 at once, then 100/s for as long as the burst lasted.
        assert 200 <= statuses.get(200, 0) <= 200 + 100 * summary["seconds"] + 10, summary
        assert statuses.get(429, 0) >= 1000, statuses
        assert "missing" not in summary["retry_after"] and summary["bad_429_bodies"] == 0, summary
        assert attempt.during_median <= 2 * attempt.idle_median, attempt
        print(
            f"quiet tenant p99: idle {attempt.idle_p99 * 1000:.2f} ms, during the burst {attempt.during_p99 * 1000:.2f}"
            f" ms; median {attempt.idle_median * 1000:.2f} / {attempt.during_median * 1000:.2f} ms; {summary}"
        )
        if attempt.during_p99 <= 2 * attempt.idle_p99:
            return
    per_core = os.getloadavg()[0] / (os.cpu_count() or 1)
    if per_core > 2:  # the 429s and the medians were checked; a p99 on a saturated machine measures the machine
        pytest.skip(f"p99 over 2x idle in every attempt with {per_core:.1f} runnable processes per core: {attempts}")
    raise AssertionError(f"p99 over 2x idle in every attempt: {attempts}")


def _cli(database_url: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = orjson.loads(done.stdout)
    return result


async def test_a_cli_override_applies_at_once_and_each_api_process_keeps_its_own_bucket(
    database_url: str, stack: Stack, db: Any
) -> None:
    tenant, token = await tenants.create(db, f"limited-{uuid.uuid4().hex[:6]}")
    headers = {"Authorization": f"Bearer {token}"}
    path = f"/scim/v2/{tenant.id}/Users?count=1"
    no_hold = {"SCIMSYNC_RATE_LIMIT_HOLD_MS": "0"}
    with running_api(database_url, stack.kafka, no_hold) as one, running_api(database_url, stack.kafka, no_hold) as two:

        async def statuses(url: str, n: int) -> list[int]:
            client = await _client(url)  # a new connection: the CLI may take longer than uvicorn's keep-alive
            try:
                return [(await client.request("GET", path, headers)).status for _ in range(n)]
            finally:
                await client.close()

        for url in (one.url, two.url):  # both processes have the tenant cached, with the default limit
            assert await statuses(url, 1) == [200]
        shown = _cli(database_url, "tenants", "rate-limit", tenant.id, "--per-second", "0.01", "--burst", "10")
        assert shown["rate_limit"] == {"per_second": 0.01, "burst": 10}

        first, second = await statuses(one.url, 30), await statuses(two.url, 30)
        # Each process allows the burst on its own: two replicas let about twice the limit through.
        assert first.count(200) == 10 and second.count(200) == 10, (first, second)
        assert set(first[10:]) == set(second[10:]) == {429}
        client = await _client(one.url)
        refused = await client.request("GET", path, headers)
        await client.close()
        assert refused.status == 429 and int(refused.headers["retry-after"]) >= 1
        assert orjson.loads(refused.body)["status"] == "429"

        _cli(database_url, "tenants", "rate-limit", tenant.id, "--default")
        for url in (one.url, two.url):
            assert await statuses(url, 5) == [200] * 5
