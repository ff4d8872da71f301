"""A consumer killed with kill -9: how long its partitions wait before another member of the group takes them.

Measured here (the figure is printed): from the SIGKILL to the moment an event produced to each partition right
after it is applied by the surviving consumer. Repeat with
`.venv/bin/pytest tests/integration/test_consumers_takeover.py -q -s`.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Any

import orjson
import pytest

from consumers.samples import produce, user_event
from tests.integration.conftest import Stack
from tests.integration.test_consumers_helpers import (
    PARTITIONS,
    ROOT,
    ConsumerEnv,
    db_connect,
    eventually,
    new_env,
    spawn,
)

TAKEOVER_BUDGET_S = 10.0


@pytest.fixture
async def env(database_url: str, stack: Stack) -> ConsumerEnv:
    return await new_env(database_url, stack.kafka)


def assigned(log_name: str) -> list[str]:
    """The partitions a spawned consumer holds now, from its last `consumer.partitions_assigned` log line."""
    held: list[str] = []
    for line in (ROOT / ".pytest_cache" / f"{log_name}.log").read_text().splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if entry.get("event") == "consumer.partitions_assigned":
            held = entry["partitions"]
        elif entry.get("event") == "consumer.partitions_revoked":
            held = []
    return held


async def test_a_killed_consumers_partitions_are_taken_over_within_10_s(env: ConsumerEnv) -> None:
    tenant = str(uuid.uuid4())
    names = [f"takeover-{env.topic}-{n}" for n in range(2)]
    procs = [spawn("workspace", env, name) for name in names]
    conn = await db_connect(env)
    try:

        async def members(n: int) -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM workspace.members WHERE tenant_id = $1", tenant) >= n)

        async def both_hold_user_partitions() -> bool:
            return all(any(p.startswith(f"{env.topic}/") for p in assigned(name)) for name in names)

        await eventually(both_hold_user_partitions, 120, "both consumers to hold partitions of the user topic")
        warm = [user_event("user.created", tenant, str(uuid.uuid4()), 1) for _ in range(PARTITIONS)]
        for partition, event in enumerate(warm):
            await produce(env.kafka, env.topic, [event], partition=partition)
        await eventually(lambda: members(PARTITIONS), 60, "the first events applied")
        # A settled group (no assignment change for 3 s, both holding user partitions): else the kill may land in
        # a rebalance and measure that instead.
        seen: list[Any] = [None, 0.0]

        async def settled() -> bool:
            now = ([assigned(name) for name in names], time.monotonic())
            if now[0] != seen[0]:
                seen[:] = now
                return False
            return await both_hold_user_partitions() and now[1] - seen[1] >= 3

        await eventually(settled, 120, "the group to settle")

        victim = procs[0]
        assert all(proc.poll() is None for proc in procs), "a consumer stopped before the kill (see its log)"
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        victim.wait()
        after = [user_event("user.created", tenant, str(uuid.uuid4()), 1) for _ in range(PARTITIONS)]
        for partition, event in enumerate(after):
            await produce(env.kafka, env.topic, [event], partition=partition)
        await eventually(lambda: members(2 * PARTITIONS), 60, "the events after the kill applied")
        takeover = time.monotonic() - killed_at
    finally:
        await conn.close()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    print(f"\nconsumer takeover after kill -9: {takeover:.1f} s")
    assert takeover <= TAKEOVER_BUDGET_S, f"the killed consumer's partitions waited {takeover:.1f} s"
