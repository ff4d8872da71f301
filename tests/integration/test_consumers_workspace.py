"""The workspace consumer over real Kafka and Postgres: the member directory equals the users' final state."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from consumers.samples import produce, user_event
from tests.integration.conftest import Stack
from tests.integration.test_consumers_helpers import ConsumerEnv, db_connect, new_env, running, until_idle


@pytest.fixture
async def env(database_url: str, stack: Stack) -> ConsumerEnv:
    return await new_env(database_url, stack.kafka)


async def members(conn: Any, tenant: str) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM workspace.members WHERE tenant_id = $1", tenant)
    return {str(r["user_id"]): dict(r) for r in rows}


async def test_members_equal_the_final_state_and_deletion_removes_them(env: ConsumerEnv) -> None:
    tenant = str(uuid.uuid4())
    ada, bob, cy = (str(uuid.uuid4()) for _ in range(3))
    events = [
        user_event("user.created", tenant, ada, 1, user_name="ada@example.com", email="ada@example.com"),
        user_event("user.created", tenant, bob, 1, user_name="bob@example.com", given_name="Bob"),
        user_event("user.created", tenant, cy, 1, user_name="cy@example.com"),
        user_event("user.updated", tenant, ada, 2, user_name="ada@example.com", family_name="King", department="R&D"),
        user_event("user.deactivated", tenant, bob, 2, user_name="bob@example.com", given_name="Bob"),
        user_event("user.deleted", tenant, cy, 2),
        user_event(
            "user.deactivated", tenant, ada, 3, user_name="ada@example.com", family_name="King", department=None
        ),
        user_event(
            "user.reactivated", tenant, ada, 4, user_name="ada@example.com", family_name="King", department=None
        ),
    ]
    await produce(env.kafka, env.topic, events)
    async with running("workspace", env.settings()) as consumer:
        await until_idle(consumer, len(events))
    conn = await db_connect(env)
    try:
        state = await members(conn, tenant)
    finally:
        await conn.close()
    assert set(state) == {ada, bob}
    assert {k: state[ada][k] for k in ("user_name", "given_name", "family_name", "display_name", "email")} == {
        "user_name": "ada@example.com",
        "given_name": "Ada",
        "family_name": "King",
        "display_name": "Ada King",
        "email": "ada@example.com",
    }
    assert state[ada]["active"] is True and state[ada]["version"] == 4 and state[ada]["department"] is None
    assert state[bob]["active"] is False and state[bob]["version"] == 2 and state[bob]["given_name"] == "Bob"
    assert consumer.metrics.counts["applied"] == len(events)


async def test_a_stale_update_after_delete_does_not_resurrect_the_member(env: ConsumerEnv) -> None:
    tenant, user = str(uuid.uuid4()), str(uuid.uuid4())
    created = user_event("user.created", tenant, user, 1)
    updated = user_event("user.updated", tenant, user, 2, family_name="Byron")
    deleted = user_event("user.deleted", tenant, user, 3)
    await produce(env.kafka, env.topic, [created, updated, deleted])
    async with running("workspace", env.settings()) as consumer:
        await until_idle(consumer, 3)
        # A replay of older events (an SRE re-delivering a range, or the relay re-sending after a crash).
        await produce(env.kafka, env.topic, [updated, {**created, "id": str(uuid.uuid4())}])
        await until_idle(consumer, 5)
    conn = await db_connect(env)
    try:
        assert await members(conn, tenant) == {}
        version = await conn.fetchval("SELECT version FROM workspace.versions WHERE tenant_id = $1", tenant)
    finally:
        await conn.close()
    assert version == 3
    assert consumer.metrics.counts["applied"] == 3
    assert consumer.metrics.counts["skipped_duplicate"] == 2


async def test_events_published_after_the_erasure_move_only_the_version(env: ConsumerEnv) -> None:
    """The relay publishes a deleted user's earlier events erased (`{"id", "erased": true}`): nothing to apply."""
    tenant, user = str(uuid.uuid4()), str(uuid.uuid4())
    events = [
        user_event("user.created", tenant, user, 1, erased=True),
        user_event("user.deactivated", tenant, user, 2, erased=True),
    ]
    async with running("workspace", env.settings()) as workspace, running("booking", env.settings()) as booking:
        await produce(env.kafka, env.topic, events)
        await until_idle(workspace, 2)
        await until_idle(booking, 2)
        conn = await db_connect(env)
        try:
            assert await members(conn, tenant) == {}
            assert await conn.fetchval("SELECT version FROM workspace.versions WHERE user_id = $1", user) == 2
            row = await conn.fetchrow("SELECT * FROM booking.users WHERE user_id = $1", user)
            assert (row["version"], row["eligible"], row["display_name"]) == (2, False, None)
            await produce(env.kafka, env.topic, [user_event("user.deleted", tenant, user, 3)])
            await until_idle(workspace, 3)
            await until_idle(booking, 3)
            row = await conn.fetchrow("SELECT * FROM booking.users WHERE user_id = $1", user)
            assert (row["version"], row["deleted"], row["eligible"]) == (3, True, False)
            assert await members(conn, tenant) == {}
        finally:
            await conn.close()
