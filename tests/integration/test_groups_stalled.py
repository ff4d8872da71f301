"""Clients that ask for a big (streamed) group and then stop reading: the API cuts each one off after the stream's
write deadline, so its database connection goes back to the pool and every other request is served.

The API under test is a process of its own with a small pool (3 connections, one of them held by the tenant
LISTEN) and a 1 s deadline, so that two stalled readers would take every free connection."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from typing import Any

import httpx

from service.store import tenants

from .api_process import api_process
from .conftest import Stack

MEMBERS = 60_000  # ~10 MB of body: far more than the socket buffers between the API and a reader that stops
STALLED = 3
_TCP_CLOSE = 7  # tcpi_state after the peer reset the connection

_SEED = """
WITH u AS (
    INSERT INTO users (tenant_id, id, user_name, active, version, resource, created_at, updated_at)
    SELECT $1, gen_random_uuid(), 'm' || g || '@example.com', true, 1,
           jsonb_build_object('userName', 'm' || g || '@example.com', 'active', true), now(), now()
    FROM generate_series(1, $3::int) AS g
    RETURNING id
)
INSERT INTO group_members (tenant_id, group_id, user_id) SELECT $1, $2, id FROM u
"""


def _stalled_reader(url: str, path: str, token: str) -> socket.socket:
    """Sends the GET and never reads a byte of the answer (a tiny receive buffer, so the API feels it at once)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    return sock


def _hung_up(sock: socket.socket) -> bool:
    """Whether the API dropped this connection (a reset: no need to read the unread body to notice)."""
    state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    return state == _TCP_CLOSE or sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0


async def test_stalled_readers_of_a_big_group_are_cut_off_and_everyone_else_is_served(
    database_url: str, stack: Stack, db: Any
) -> None:
    big, big_token = await tenants.create(db, "stalled-readers")
    other, other_token = await tenants.create(db, "stalled-bystander")
    env = {
        "SCIMSYNC_DB_POOL_MIN": "1",
        "SCIMSYNC_DB_POOL_MAX": "3",
        "SCIMSYNC_STREAM_WRITE_TIMEOUT_MS": "1000",
        "SCIMSYNC_RATE_LIMIT_PER_SECOND": "0",
    }
    async with (
        api_process(database_url, stack.kafka, **env) as (url, log),
        httpx.AsyncClient(base_url=url, timeout=30) as plain,
    ):
        big_scim = {"Authorization": f"Bearer {big_token}"}
        created = await plain.post(f"/scim/v2/{big.id}/Groups", json={"displayName": "everyone"}, headers=big_scim)
        group_id = created.json()["id"]
        await db.execute(_SEED, uuid.UUID(big.id), uuid.UUID(group_id), MEMBERS)
        path = f"/scim/v2/{big.id}/Groups/{group_id}"

        stalled = [_stalled_reader(url, path, big_token) for _ in range(STALLED)]
        try:
            await asyncio.sleep(0.5)  # the streams have started, and stopped: nobody reads
            started = time.monotonic()
            # Another tenant's call needs a connection, which only the end of a stalled stream can give it.
            bystander = await plain.get(
                f"/scim/v2/{other.id}/Users", headers={"Authorization": f"Bearer {other_token}"}, timeout=10
            )
            assert bystander.status_code == 200, bystander.text
            print(f"a bystander was served after {time.monotonic() - started:.2f} s")

            deadline = time.monotonic() + 10
            while not all(_hung_up(s) for s in stalled):
                assert time.monotonic() < deadline, "a stalled reader is still connected"
                await asyncio.sleep(0.1)
        finally:
            for sock in stalled:
                sock.close()

        # A reader that reads gets the whole group, as before.
        whole = await plain.get(path, headers=big_scim)
        assert whole.status_code == 200 and len(whole.json()["members"]) == MEMBERS
        assert (await plain.get("/readyz?require=postgres")).status_code == 200
        metrics = (await plain.get("/metrics")).text
        assert f"scimsync_stream_stalls_total {STALLED}" in metrics.splitlines()
        logged = log.read_text()
        assert logged.count('"event":"groups.stream_stalled"') == STALLED
        assert "m1@example.com" not in logged  # ids and counts only, no personal data
        assert "Traceback" not in logged and "ASGI callable" not in logged
