"""Fixtures for tests against the real Postgres and Kafka.

Where they come from, in order: DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS from the environment; else
containers (testcontainers) when a Docker engine answers; else the local stack (`make stack-up`).
Each session gets its own freshly migrated database; each test makes its own tenant, so tests never
see each other's users.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from service.settings import LOCAL_DATABASE_URL, LOCAL_KAFKA
from service.store import migrator, tenants
from service.store.pool import connect
from tests.integration.test_consumers_helpers import ConsumerEnv, new_env, spawn

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_KEY = "test-operator-key-" + "0" * 32  # the admin console's operator API key in the test API process


@dataclass(frozen=True)
class Stack:
    database_url: str  # the server's admin database; tests use their own database on it
    kafka: str


def _docker_engine() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _reachable(url: str) -> bool:
    host, _, port = url.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    if "DATABASE_URL" in os.environ and "KAFKA_BOOTSTRAP_SERVERS" in os.environ:
        yield Stack(os.environ["DATABASE_URL"], os.environ["KAFKA_BOOTSTRAP_SERVERS"])
        return
    if not _reachable("127.0.0.1:55432") and _docker_engine():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as pg, KafkaContainer("apache/kafka:4.1.1") as kafka:
            yield Stack(pg.get_connection_url(), kafka.get_bootstrap_server())
        return
    if not _reachable("127.0.0.1:55432"):
        pytest.exit("No Postgres: run `make stack-up` (or set DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS)", returncode=3)
    yield Stack(LOCAL_DATABASE_URL, LOCAL_KAFKA)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
async def database_url(stack: Stack) -> AsyncIterator[str]:
    """A new database for this test session, migrated; dropped at the end."""
    name = f"scimsync_test_{uuid.uuid4().hex[:8]}"
    admin = await connect(stack.database_url)
    await admin.execute(f"CREATE DATABASE {name}")
    url = _with_database(stack.database_url, name)
    conn = await connect(url)
    await migrator.migrate(conn)
    await conn.close()
    yield url
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.close()


@pytest.fixture(scope="session")
async def db(database_url: str) -> AsyncIterator[Any]:
    """One connection to the session database, for setting up and checking state."""
    conn = await connect(database_url)
    yield conn
    await conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def api_url(database_url: str, stack: Stack) -> Iterator[str]:
    """The real API process (uvicorn) on a free loopback port, against the session database."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": stack.kafka,
        "SCIMSYNC_PUBLIC_URL": url,
        "SCIMSYNC_LOG_LEVEL": "warning",
        "SCIMSYNC_OPERATOR_KEY": OPERATOR_KEY,
        # Tests drive one tenant far faster than an identity provider does; the per-tenant limit has its own
        # tests (test_rate_limits.py) with API processes of their own.
        "SCIMSYNC_RATE_LIMIT_PER_SECOND": "0",
    }
    (ROOT / ".pytest_cache").mkdir(exist_ok=True)
    with open(ROOT / ".pytest_cache" / f"api-{port}.log", "wb") as log:  # the API's own log, for debugging
        proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"API exited with {proc.returncode}")
        time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("API did not start within 30 s")
    yield url
    proc.terminate()
    proc.wait(timeout=15)


@dataclass(frozen=True)
class TenantInfo:
    id: str
    token: str
    base_url: str  # the SCIM base URL, as Okta would be given it

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/scim+json; charset=utf-8"}


@pytest.fixture
async def tenant(db: Any, api_url: str) -> TenantInfo:
    created, token = await tenants.create(db, f"test-{uuid.uuid4().hex[:6]}")
    return TenantInfo(created.id, token, f"{api_url}/scim/v2/{created.id}")


@pytest.fixture
async def scim(tenant: TenantInfo) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client pointed at a fresh tenant's SCIM base URL, with its bearer token."""
    async with httpx.AsyncClient(base_url=tenant.base_url, headers=tenant.headers, timeout=30) as client:
        yield client


# --- the whole pipeline: relay and both consumers as processes, on a test's own topics ---------------------


@pytest.fixture
async def env(database_url: str, stack: Stack) -> ConsumerEnv:
    return await new_env(database_url, stack.kafka)


@pytest.fixture
def pipeline(env: ConsumerEnv) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The relay and both consumers, on this test's topic; SIGTERM at the end (they must exit cleanly)."""
    (ROOT / ".pytest_cache").mkdir(exist_ok=True)
    with open(ROOT / ".pytest_cache" / f"e2e-relay-{env.topic}.log", "wb") as log:
        relay = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "relay"],
            cwd=ROOT,
            env={**env.environ(), "SCIMSYNC_LOG_LEVEL": "info"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    procs = [
        relay,
        spawn("booking", env, f"e2e-booking-{env.topic}"),
        spawn("workspace", env, f"e2e-workspace-{env.topic}"),
    ]
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
    codes = [proc.wait(timeout=20) for proc in procs]
    assert codes[1:] == [0, 0], f"consumers exited with {codes[1:]}"
