"""What a platform's probes and init containers ask of the processes: readiness scopes, the migration check."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from service.store.pool import connect
from tests.integration.conftest import Stack
from tests.integration.processes import http_get, running_api

ROOT = Path(__file__).resolve().parents[2]


async def test_readyz_can_leave_kafka_out_so_a_kafka_outage_keeps_the_pods_serving(database_url: str) -> None:
    with running_api(database_url, "127.0.0.1:1") as api:  # nothing listens on port 1: Kafka is "down"
        everything = await http_get(f"{api.url}/readyz", wait=10)
        assert everything.status_code == 503 and "kafka" in everything.json()["down"]
        postgres_only = await http_get(f"{api.url}/readyz?require=postgres", wait=10)
        assert postgres_only.status_code == 200, postgres_only.text


def _migrate(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url}
    command = [sys.executable, "-m", "service.cli", "migrate", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


async def test_migrate_check_fails_until_the_migrations_are_applied(stack: Stack, db: Any) -> None:
    name = f"scimsync_check_{uuid.uuid4().hex[:8]}"
    admin = await connect(stack.database_url)
    await admin.execute(f"CREATE DATABASE {name}")
    url = urlunsplit(urlsplit(stack.database_url)._replace(path=f"/{name}"))
    try:
        before = _migrate(url, "--check")
        assert before.returncode == 1 and "0001_initial" in before.stdout
        assert _migrate(url).returncode == 0
        after = _migrate(url, "--check")
        assert after.returncode == 0, after.stdout + after.stderr
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
