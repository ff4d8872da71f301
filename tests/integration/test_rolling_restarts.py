"""A rolling restart under load loses nothing: SCIM writes keep coming while the relay, then each consumer, is
stopped with SIGTERM (as Kubernetes does), exits 0 and is replaced; every change ends up applied in both domains.
(The API's own SIGTERM is test_shutdown.py.)"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from service.domain.brake import BrakePolicy
from service.store import holds
from tests.integration.conftest import ROOT, TenantInfo
from tests.integration.test_consumers_helpers import ConsumerEnv, db_connect, eventually, spawn

MAX_USERS = 3000  # the writer goes on until every process was restarted (and a little after), at most this many
DEACTIVATE = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [{"op": "replace", "value": {"active": False}}],
}


def _relay(env: ConsumerEnv, name: str) -> subprocess.Popen[bytes]:
    with open(ROOT / ".pytest_cache" / f"{name}.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", "relay"],
            cwd=ROOT,
            env=env.environ(SCIMSYNC_LOG_LEVEL="info"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def test_restarting_the_relay_and_each_consumer_under_load_loses_nothing(
    env: ConsumerEnv, pipeline: list[subprocess.Popen[bytes]], scim: httpx.AsyncClient, tenant: TenantInfo
) -> None:
    await scim.get("/Users", params={"count": 1})
    conn = await db_connect(env)
    # Every user of the tenant is deactivated: the deprovisioning brake would rightly hold half of them.
    await holds.set_policy(conn, uuid.UUID(tenant.id), BrakePolicy(enabled=False))
    written: list[str] = []
    restarted = asyncio.Event()

    async def provision() -> None:
        """Okta at work: create a user, then deactivate them (version 2), one after another, until every process
        was restarted (a fixed count could run out before the last restart on a fast machine)."""
        for i in range(MAX_USERS):
            if restarted.is_set():
                return
            created = await scim.post("/Users", json={"userName": f"roll-{i}-{uuid.uuid4().hex[:6]}@example.com"})
            assert created.status_code == 201, created.text
            uid = created.json()["id"]
            assert (await scim.patch(f"/Users/{uid}", json=DEACTIVATE)).status_code == 200
            written.append(uid)

    async def applied(table: str, inactive: str) -> int:
        sql = f"SELECT count(*) FROM {table} WHERE tenant_id = $1 AND version = 2 AND {inactive}"
        return int(await conn.fetchval(sql, tenant.id))

    try:
        writer = asyncio.create_task(provision())
        replacements = {
            0: lambda: _relay(env, f"roll-relay-{env.topic}"),
            1: lambda: spawn("booking", env, f"roll-booking-{env.topic}"),
            2: lambda: spawn("workspace", env, f"roll-workspace-{env.topic}"),
        }
        logs = {0: "e2e-relay", 1: "e2e-booking", 2: "e2e-workspace"}  # the pipeline fixture's log files
        for index, start in replacements.items():
            before = len(written)
            await eventually(_more_than(written, before + 10, writer), 60, "writes to go on before the restart")
            # Stopped before it said it runs, a process would still be importing: no signal handler yet.
            log = ROOT / ".pytest_cache" / f"{logs[index]}-{env.topic}.log"
            await eventually(_says(log, READY[index]), 60, f"{logs[index]} to be running")
            old = pipeline[index]
            old.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(old.wait, 30) == 0, f"process {index} did not stop cleanly"
            pipeline[index] = start()  # the fixture stops it at the end
        before = len(written)
        await eventually(_more_than(written, before + 10, writer), 60, "writes to go on after the last restart")
        restarted.set()
        await writer
        users = len(written)
        assert users < MAX_USERS, "the writer ran out before the restarts were over"

        async def all_applied() -> bool:
            booking = await applied("booking.users", "NOT eligible")
            return booking == users and await applied("workspace.members", "NOT active") == users

        await eventually(all_applied, 90, "every change applied in both domains")
    finally:
        await conn.close()


READY = {0: ("relay.active", "relay.standby"), 1: ("consumer.started",), 2: ("consumer.started",)}


def _says(log: Path, events: tuple[str, ...]) -> Any:
    async def check() -> bool:
        text = log.read_text(errors="replace") if log.exists() else ""
        return any(event in text for event in events)

    return check


def _more_than(written: list[Any], n: int, writer: asyncio.Task[None]) -> Any:
    async def check() -> bool:
        if writer.done():
            writer.result()  # a failed write fails the test with its own message, not with a timeout
            raise AssertionError(f"the writer stopped early, after {len(written)} users")
        return len(written) > n

    return check
