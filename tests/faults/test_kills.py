"""kill -9 of the relay and of each consumer in the middle of a batch, under SCIM load; then restarted.

"In the middle" is made certain, not left to timing: the test holds row locks that the batch's last statement
needs (the relay's mark, a consumer's version gate), waits until that statement blocks, then kills the process
and ends its database session as a crash would. The batch is then on Kafka but not marked (relay), or applied
but neither committed nor acknowledged (consumer): it must come again, and be harmless.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.faults.conftest import Figures
from tests.faults.load import PATCH, Load
from tests.faults.pipeline import Pipeline
from tests.faults.processes import Process
from tests.faults.verdict import settle

TAKEOVER_S = 10


async def blocked_backend(conn: Any, query_start: str, within: float = 30) -> int:
    """The backend pid of the session whose `query_start…` statement waits for a lock."""
    deadline = time.monotonic() + within
    sql = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        " AND query LIKE $1 || '%'"
    )
    while (pid := await conn.fetchval(sql, query_start)) is None:
        assert time.monotonic() < deadline, f"no {query_start!r} blocked within {within} s"
        await asyncio.sleep(0.01)
    return int(pid)


async def kill_while_blocked(
    conn: Any,
    locker: Any,
    victims: dict[str, Process],
    trigger: Callable[[], Awaitable[Any]],
    locks: list[tuple[str, tuple[Any, ...]]],
) -> None:
    """Take the row locks (`locks`: statement, arguments), `trigger()` the work that needs them, and once each
    victim's statement (`victims`: statement start → process) waits for them, kill -9 the victims.
    (`conn` watches: inside the locking transaction pg_stat_activity is a snapshot, so that is a second session.)"""
    async with locker.transaction():
        for sql, args in locks:
            await locker.execute(sql, *args)
        await trigger()
        backends = [await blocked_backend(conn, query_start) for query_start in victims]
        for process in victims.values():
            process.kill()
        # A killed client's statement would still finish once unblocked: end its session as a crash would.
        for backend in backends:
            await conn.execute("SELECT pg_terminate_backend($1)", backend)


async def applied_everywhere(conn: Any, tenant_id: str, user: str, within: float = 30) -> None:
    sql = (
        "SELECT (SELECT count(*) FROM booking.users WHERE tenant_id = $1 AND user_id = $2)"
        " + (SELECT count(*) FROM workspace.versions WHERE tenant_id = $1 AND user_id = $2)"
    )
    deadline = time.monotonic() + within
    while await conn.fetchval(sql, tenant_id, user) < 2:
        assert time.monotonic() < deadline, f"user {user} not applied by both consumers within {within} s"
        await asyncio.sleep(0.05)


async def patch_title(client: httpx.AsyncClient, tenant: Any, user: str, title: str) -> None:
    headers = {"Authorization": f"Bearer {tenant.token}", "Content-Type": "application/scim+json"}
    body = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": title}]}
    response = await client.patch(f"{tenant.base_url}/Users/{user}", json=body, headers=headers)
    assert response.status_code == 200, response.text


def redelivered(process: Process, run: int) -> int:
    lines = process.lines(run)
    return sum(int(line.get("skipped_duplicate", 0)) for line in lines if line["event"] == "consumer.applied")


async def test_relay_and_consumers_killed_mid_batch_lose_nothing(pipeline: Pipeline, figures: Figures) -> None:
    await pipeline.start()
    tenants = await pipeline.tenants(3)
    load = await Load(pipeline.api_url, tenants, rate=80, max_seconds=120).start()
    await load.wait_for_writes(150)
    conn, locker = await pipeline.connect(), await pipeline.connect()
    restarts: dict[str, float] = {}
    try:
        # The relay: its batch is on Kafka, its mark waits for our locks on the unpublished rows.
        relay = pipeline.process("relay")
        relay.kill()
        await load.wait_for_writes(load.writes + 60)  # a backlog for the next relay's first batch

        async def start_relay() -> None:
            relay.start()

        unpublished = "SELECT 1 FROM events WHERE published_at IS NULL FOR UPDATE"
        await kill_while_blocked(
            conn, locker, {"UPDATE events SET published_at": relay}, start_relay, [(unpublished, ())]
        )
        started = time.monotonic()
        relay.start()
        await relay.wait_for("relay.active")
        restarts["relay_active_after_restart_s"] = time.monotonic() - started

        # Both consumers: a batch applied up to a user whose version-gate rows we hold; then kill -9 both.
        tenant = tenants[0]
        user = load.users[tenant.id][0]
        await applied_everywhere(conn, tenant.id, user)
        gates = {"booking": "booking.users", "workspace": "workspace.versions"}
        consumers = {f"INSERT INTO {gate}": pipeline.process(domain) for domain, gate in gates.items()}
        locks = [
            (f"SELECT 1 FROM {gate} WHERE tenant_id = $1 AND user_id = $2 FOR UPDATE", (tenant.id, user))
            for gate in gates.values()
        ]
        async with httpx.AsyncClient(timeout=10) as client:

            async def change_user() -> None:
                await patch_title(client, tenant, user, "changed while its consumers die")

            await kill_while_blocked(conn, locker, consumers, change_user, locks)
        started = time.monotonic()
        for consumer in consumers.values():
            consumer.start()
        await asyncio.gather(*(consumer.wait_for("consumer.started") for consumer in consumers.values()))
        restarts["consumers_started_after_restart_s"] = time.monotonic() - started
    finally:
        await conn.close()
        await locker.close()
    await load.wait_for_writes(load.writes + 100)  # the load goes on after the last restart
    verdict = await settle(pipeline, load, time.monotonic())
    assert verdict["duplicates"] > 0, "the relay was killed after sending a batch: it must have been re-sent"
    assert all(p.alive for p in pipeline.processes)
    figures(
        **restarts,
        booking_skipped_duplicates_after_restart=redelivered(pipeline.process("booking"), 1),
        workspace_skipped_duplicates_after_restart=redelivered(pipeline.process("workspace"), 1),
        **verdict,
    )


async def test_a_killed_consumers_partitions_are_taken_over_within_10s(pipeline: Pipeline, figures: Figures) -> None:
    await pipeline.start_api()
    pipeline.relay()
    instances = {d: [pipeline.consumer(d, f"{d}-{n}") for n in "ab"] for d in ("booking", "workspace")}
    for first, second in instances.values():
        await assigned_between(first, second)
    tenants = await pipeline.tenants(2)
    load = await Load(pipeline.api_url, tenants, rate=60, max_seconds=120).start()
    await load.wait_for_writes(100)

    killed = time.monotonic()
    for first, _ in instances.values():
        first.kill()
    probes = await create_users(tenants[1], 30)  # 30 keys: every partition gets some
    conn = await pipeline.connect()
    try:
        deadline = killed + 60
        while True:
            applied = await conn.fetchval(
                "SELECT least((SELECT count(*) FROM booking.users WHERE user_id = ANY($1::uuid[])),"
                " (SELECT count(*) FROM workspace.members WHERE user_id = ANY($1::uuid[])))",
                probes,
            )
            if applied == len(probes):
                break
            assert time.monotonic() < deadline, f"{applied} of {len(probes)} users applied 60 s after the kill"
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    takeover = time.monotonic() - killed
    figures(takeover_after_kill_s=takeover)
    assert takeover <= TAKEOVER_S, f"the killed consumers' partitions were idle for {takeover:.1f} s"
    for first, _ in instances.values():
        first.start()
    verdict = await settle(pipeline, load, time.monotonic())
    figures(**verdict)


async def assigned_between(first: Process, second: Process, within: float = 60) -> None:
    """Until both instances of a group hold partitions (the group has settled after the second joined)."""
    deadline = time.monotonic() + within

    def held(process: Process) -> list[str]:
        assigned = [line for line in process.lines() if line["event"] == "consumer.partitions_assigned"]
        return list(assigned[-1]["partitions"]) if assigned else []

    while not (held(first) and held(second)):
        assert time.monotonic() < deadline, f"{first.name}/{second.name} never shared the partitions"
        await asyncio.sleep(0.1)


async def create_users(tenant: Any, count: int) -> list[str]:
    headers = {"Authorization": f"Bearer {tenant.token}", "Content-Type": "application/scim+json"}
    async with httpx.AsyncClient(timeout=10) as client:
        responses = [
            await client.post(f"{tenant.base_url}/Users", json={"userName": f"probe.{n}@example.com"}, headers=headers)
            for n in range(count)
        ]
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses if r.status_code != 201][:3]
    return [r.json()["id"] for r in responses]
