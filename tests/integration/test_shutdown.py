"""SIGTERM to the API under load: every request it read is answered (no reset, no 5xx), nothing half-done, exit 0.

Which requests the server read is what it recorded: the audit log (`scim_requests`, flushed at shutdown) keeps the
X-Request-Id of every request the app handled, and every user it created is in the users table.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import orjson

from service.store import tenants
from tests.integration.conftest import Stack
from tests.integration.processes import start_api
from tests.integration.rawhttp import RawClient

CONNECTIONS = 16


async def test_sigterm_under_load_answers_every_request_it_read_and_exits_0(
    database_url: str, stack: Stack, db: Any
) -> None:
    tenant, token = await tenants.create(db, f"shutdown-{uuid.uuid4().hex[:6]}")
    await tenants.set_rate_limit(db, tenant.id, 0, None)  # this is about shutdown, not the rate limit
    api = start_api(database_url, stack.kafka)
    url = urlsplit(api.url)
    path = f"/scim/v2/{tenant.id}/Users"
    outcomes: dict[str, int | str] = {}  # request id -> status, or the client's error
    answered_after_sigterm = 0
    sigterm_at: float | None = None
    under_load = asyncio.Event()

    async def worker() -> None:
        nonlocal answered_after_sigterm
        client: RawClient | None = None
        while True:
            if client is None:
                try:
                    client = await RawClient.open(url.hostname or "", url.port or 80)
                except OSError:
                    return  # refused: the server stopped listening; nothing of ours is pending
            request_id = uuid.uuid4().hex
            body = orjson.dumps({"userName": f"{request_id}@example.com"})
            headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/scim+json",
                "X-Request-Id": request_id,
            }
            try:
                response = await client.request("POST", path, headers, body)
            except (OSError, asyncio.IncompleteReadError) as exc:
                outcomes[request_id] = type(exc).__name__
                await client.close()
                client = None
                continue
            outcomes[request_id] = response.status
            if len(outcomes) >= 300:
                under_load.set()
            if sigterm_at is not None:
                answered_after_sigterm += 1
            if response.headers.get("connection", "").lower() == "close":
                await client.close()
                client = None

    workers = [asyncio.create_task(worker()) for _ in range(CONNECTIONS)]
    await asyncio.wait_for(under_load.wait(), timeout=30)  # a few hundred writes done
    sigterm_at = time.monotonic()
    os.kill(api.proc.pid, signal.SIGTERM)
    await asyncio.wait_for(asyncio.gather(*workers), timeout=30)
    exit_code = await asyncio.to_thread(api.proc.wait, 30)

    answered = {rid: status for rid, status in outcomes.items() if isinstance(status, int)}
    failed = {rid: error for rid, error in outcomes.items() if isinstance(error, str)}
    audited = {
        row["request_id"]
        for row in await db.fetch("SELECT request_id FROM scim_requests WHERE tenant_id = $1", uuid.UUID(tenant.id))
    }
    created = await db.fetchval("SELECT count(*) FROM users WHERE tenant_id = $1", uuid.UUID(tenant.id))
    print(
        f"{len(answered)} answered ({answered_after_sigterm} after SIGTERM), {len(failed)} never read by the"
        f" server: {sorted(set(failed.values()))}"
    )
    assert exit_code == 0, api.log.read_text()[-3000:]
    assert answered_after_sigterm > 0  # requests were in flight when SIGTERM came
    assert {s for s in answered.values() if s >= 500} == set(), answered
    assert set(answered.values()) == {201}
    assert audited - answered.keys() == set(), "read by the server, never answered"
    assert failed.keys() & audited == set()
    assert created == len(answered), "a user created without its 201, or a 201 without its user"
