"""Workspace teams from the group topic over real Kafka and Postgres, and repair events on both topics."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from consumers.samples import group_event, produce, user_event
from tests.integration.conftest import Stack
from tests.integration.test_consumers_helpers import ConsumerEnv, db_connect, new_env, running, until_idle

REPAIR = [("scimsync_repair", b"1")]


@pytest.fixture
async def env(database_url: str, stack: Stack) -> ConsumerEnv:
    return await new_env(database_url, stack.kafka)


async def teams(conn: Any, tenant: str) -> dict[str, dict[str, Any]]:
    """Each team of the tenant: its row (without the tenant) and its members."""
    rows = await conn.fetch("SELECT * FROM workspace.teams WHERE tenant_id = $1", tenant)
    members = await conn.fetch("SELECT group_id, user_id FROM workspace.team_members WHERE tenant_id = $1", tenant)
    state = {str(r["group_id"]): {**dict(r), "members": set()} for r in rows}
    orphans = set()
    for m in members:
        if str(m["group_id"]) in state:
            state[str(m["group_id"])]["members"].add(str(m["user_id"]))
        else:
            orphans.add(str(m["group_id"]))
    assert not orphans, f"team_members rows of teams that don't exist: {orphans}"
    return state


async def test_teams_equal_the_final_state_of_the_group_events(env: ConsumerEnv) -> None:
    tenant = str(uuid.uuid4())
    ada, bob, cy, dee = (str(uuid.uuid4()) for _ in range(4))
    floor3, temp = str(uuid.uuid4()), str(uuid.uuid4())
    group_events = [
        group_event("group.created", tenant, floor3, 1, display_name="Floor 3", members=[ada, bob]),
        group_event("group.membership_changed", tenant, floor3, 2, added=[cy], removed=[ada]),
        group_event("group.updated", tenant, floor3, 3, display_name="Floor Three", external_id="00g1"),
        # dee isn't known to the directory (yet, or ever): a team may still name them.
        group_event("group.membership_changed", tenant, floor3, 4, added=[dee, ada], removed=[]),
        group_event("group.created", tenant, temp, 1, display_name="Temp", members=[ada, cy]),
        group_event("group.membership_changed", tenant, temp, 2, added=[bob], removed=[]),
        group_event("group.deleted", tenant, temp, 3),
        # bob is deleted: SCIM removes them from every group in the same transaction.
        group_event("group.membership_changed", tenant, floor3, 5, added=[], removed=[bob]),
    ]
    user_events = [user_event("user.created", tenant, u, 1) for u in (ada, bob, cy)]
    user_events.append(user_event("user.deleted", tenant, bob, 2))
    await produce(env.kafka, env.topic, user_events)
    await produce(env.kafka, env.group_topic, group_events)
    async with running("workspace", env.settings()) as consumer:
        await until_idle(consumer, len(group_events) + len(user_events))
        conn = await db_connect(env)
        try:
            state = await teams(conn, tenant)
            assert set(state) == {floor3}
            team = state[floor3]
            assert (team["display_name"], team["external_id"], team["version"]) == ("Floor Three", "00g1", 5)
            assert team["members"] == {cy, dee, ada}
            assert team["updated_at"].isoformat().startswith(group_events[7]["time"][:19])
            versions = await conn.fetch(
                "SELECT group_id, version FROM workspace.group_versions WHERE tenant_id = $1", tenant
            )
            assert {str(r["group_id"]): r["version"] for r in versions} == {floor3: 5, temp: 3}
            applied = consumer.metrics.counts["applied"]

            # Duplicates and replays (the relay re-sending, an SRE re-delivering a range) change nothing, and a stale
            # event of the deleted team doesn't bring it back.
            replayed = [*group_events, {**group_events[4], "id": str(uuid.uuid4())}]
            await produce(env.kafka, env.group_topic, replayed)
            await until_idle(consumer, len(group_events) + len(user_events) + len(replayed))
            assert await teams(conn, tenant) == state
            assert consumer.metrics.counts["applied"] == applied
            assert consumer.metrics.by_topic[env.group_topic]["skipped_duplicate"] == len(replayed)
        finally:
            await conn.close()


async def test_a_deleted_user_leaves_its_teams_whichever_topic_is_read_first(env: ConsumerEnv) -> None:
    """user.deleted removes the user's team memberships even before the group topic's `removed` arrives."""
    tenant, ada, bob, team = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    await produce(env.kafka, env.group_topic, [group_event("group.created", tenant, team, 1, members=[ada, bob])])
    async with running("workspace", env.settings()) as consumer:
        await until_idle(consumer, 1)
        await produce(
            env.kafka,
            env.topic,
            [user_event("user.created", tenant, ada, 1), user_event("user.deleted", tenant, ada, 2)],
        )
        await until_idle(consumer, 3)
        conn = await db_connect(env)
        try:
            assert (await teams(conn, tenant))[team]["members"] == {bob}
            # Then the group topic's own removal: nothing left to do, the team is the same.
            removal = group_event("group.membership_changed", tenant, team, 2, removed=[ada])
            await produce(env.kafka, env.group_topic, [removal])
            await until_idle(consumer, 4)
            state = await teams(conn, tenant)
            assert (state[team]["members"], state[team]["version"]) == ({bob}, 2)
        finally:
            await conn.close()


async def test_a_repair_event_reapplies_the_current_version_and_fixes_drift(env: ConsumerEnv) -> None:
    tenant, user, team, other = (str(uuid.uuid4()) for _ in range(4))
    latest_user = user_event("user.deactivated", tenant, user, 2)
    created = group_event("group.created", tenant, team, 1, display_name="Desk crew", members=[user])
    latest_group = group_event("group.updated", tenant, team, 2, display_name="Desk Crew")
    await produce(env.kafka, env.topic, [user_event("user.created", tenant, user, 1), latest_user])
    await produce(env.kafka, env.group_topic, [created, latest_group])
    async with running("workspace", env.settings()) as consumer:
        await until_idle(consumer, 4)
        conn = await db_connect(env)
        try:
            # Drift, injected behind the consumer's back.
            await conn.execute("UPDATE workspace.members SET active = true WHERE user_id = $1", user)
            await conn.execute("UPDATE workspace.teams SET display_name = 'wrong' WHERE group_id = $1", team)

            # The same latest events without the header are duplicates: skipped, the drift stays.
            await produce(env.kafka, env.topic, [latest_user])
            await produce(env.kafka, env.group_topic, [latest_group])
            await until_idle(consumer, 6)
            assert await conn.fetchval("SELECT active FROM workspace.members WHERE user_id = $1", user) is True
            assert consumer.metrics.counts["skipped_duplicate"] == 2

            # With `scimsync_repair: 1` (what `reconcile --fix` sends) they are applied again: drift repaired.
            await produce(env.kafka, env.topic, [latest_user], extra_headers=REPAIR)
            await produce(env.kafka, env.group_topic, [latest_group], extra_headers=REPAIR)
            await until_idle(consumer, 8)
            member = await conn.fetchrow("SELECT active, version FROM workspace.members WHERE user_id = $1", user)
            assert (member["active"], member["version"]) == (False, 2)
            assert (await teams(conn, tenant))[team]["display_name"] == "Desk Crew"
            assert consumer.metrics.counts["applied"] == 6

            # A repair never goes backwards: an older version is skipped even with the header. And a re-applied
            # group.created sets the team to exactly what it lists.
            await produce(env.kafka, env.topic, [user_event("user.created", tenant, user, 1)], extra_headers=REPAIR)
            await until_idle(consumer, 9)
            assert await conn.fetchval("SELECT active FROM workspace.members WHERE user_id = $1", user) is False
            await conn.execute("INSERT INTO workspace.team_members VALUES ($1, $2, $3)", tenant, team, other)
            await conn.execute("UPDATE workspace.group_versions SET version = 1 WHERE group_id = $1", team)
            await produce(env.kafka, env.group_topic, [created], extra_headers=REPAIR)
            await until_idle(consumer, 10)
            state = (await teams(conn, tenant))[team]
            assert (state["members"], state["display_name"], state["version"]) == ({user}, "Desk crew", 1)
        finally:
            await conn.close()


async def test_a_repair_event_makes_booking_cancel_what_drifted(env: ConsumerEnv) -> None:
    """booking: a deactivated user's eligibility corrupted by SQL; the repaired deactivation takes it away again."""
    tenant, user = str(uuid.uuid4()), str(uuid.uuid4())
    latest = user_event("user.deactivated", tenant, user, 2)
    await produce(env.kafka, env.topic, [user_event("user.created", tenant, user, 1), latest])
    async with running("booking", env.settings()) as consumer:
        await until_idle(consumer, 2)
        conn = await db_connect(env)
        try:
            await conn.execute("UPDATE booking.users SET eligible = true WHERE user_id = $1", user)
            await produce(env.kafka, env.topic, [latest], extra_headers=REPAIR)
            await until_idle(consumer, 3)
            row = await conn.fetchrow("SELECT eligible, version FROM booking.users WHERE user_id = $1", user)
            assert (row["eligible"], row["version"]) == (False, 2)
        finally:
            await conn.close()


async def test_a_repaired_history_rebuilds_a_team_but_never_rewinds_a_newer_one(env: ConsumerEnv) -> None:
    """What `reconcile --fix` sends for a drifted group: its whole history, `scimsync_repair_through: N`."""
    tenant, ada, bob, cy, team = (str(uuid.uuid4()) for _ in range(5))
    history = [
        group_event("group.created", tenant, team, 1, display_name="Crew", members=[ada]),
        group_event("group.membership_changed", tenant, team, 2, added=[bob], removed=[]),
    ]
    await produce(env.kafka, env.group_topic, history)
    async with running("workspace", env.settings()) as consumer:
        await until_idle(consumer, 2)
        conn = await db_connect(env)
        try:
            # Drift: bob lost, a stranger added, behind the consumer's back.
            await conn.execute("DELETE FROM workspace.team_members WHERE group_id = $1 AND user_id = $2", team, bob)
            await conn.execute("INSERT INTO workspace.team_members VALUES ($1, $2, $3)", tenant, team, cy)
            through = [*REPAIR, ("scimsync_repair_through", b"2")]
            await produce(env.kafka, env.group_topic, history, extra_headers=through)
            await until_idle(consumer, 4)
            state = (await teams(conn, tenant))[team]
            assert (state["members"], state["version"]) == ({ada, bob}, 2)

            # A live change (v3) arrived before a stale repair of v1..v2: the repair must not rewind it.
            await produce(
                env.kafka,
                env.group_topic,
                [group_event("group.membership_changed", tenant, team, 3, added=[cy], removed=[])],
            )
            await until_idle(consumer, 5)
            await produce(env.kafka, env.group_topic, history, extra_headers=through)
            await until_idle(consumer, 7)
            state = (await teams(conn, tenant))[team]
            assert (state["members"], state["version"]) == ({ada, bob, cy}, 3)
        finally:
            await conn.close()
