"""Membership changes too large for one Kafka record: split into ordered events that every consumer applies.

A 30,000-member group emptied by one PATCH (Okta/Entra replacing the members with `[]`) lists 1.2 MB of ids:
one event of it would be over Kafka's 1 MiB, refused, and would stop its group's stream. Through the real API,
relay, Kafka and consumers, and on the event log alone for 100,000 members.
"""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

import asyncpg
import httpx
import orjson

from service.domain.groups import MembershipDelta
from service.domain.limits import MEMBERS_PER_EVENT
from service.store import groups as store
from service.store.pool import _init as pool_init
from tests.integration.conftest import TenantInfo
from tests.integration.test_consumers_helpers import ConsumerEnv, db_connect, eventually

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

_USERS = """
INSERT INTO users (tenant_id, id, user_name, active, version, resource, created_at, updated_at)
SELECT $1, gen_random_uuid(), 'member.' || n || '@example.com', true, 1,
       jsonb_build_object('userName', 'member.' || n || '@example.com', 'active', true), now(), now()
FROM generate_series(1, $2) AS n
RETURNING id
"""


async def many_users(db: Any, tenant_id: str, n: int) -> list[str]:
    """Users straight into the table (their creation isn't what is tested, and 30,000 POSTs take a while)."""
    return [str(r["id"]) for r in await db.fetch(_USERS, uuid.UUID(tenant_id), n)]


async def group_events(db: Any, group_id: str) -> list[Any]:
    return list(
        await db.fetch(
            "SELECT type, version, data FROM events WHERE subject = $1 ORDER BY sequence", uuid.UUID(group_id)
        )
    )


async def test_a_30000_member_group_emptied_by_one_patch_and_deleted_reaches_the_consumers(
    env: ConsumerEnv, pipeline: list[subprocess.Popen[bytes]], scim: httpx.AsyncClient, tenant: TenantInfo, db: Any
) -> None:
    members = await many_users(db, tenant.id, 30_000)
    group = (await scim.post("/Groups", json={"displayName": "Everyone"})).json()
    gid = group["id"]
    for start in range(0, len(members), 10_000):  # Okta pushes a large group in pages
        ops = [{"op": "add", "path": "members", "value": [{"value": m} for m in members[start : start + 10_000]]}]
        response = await scim.patch(f"/Groups/{gid}", json={"schemas": [PATCH], "Operations": ops})
        assert response.status_code == 204, response.text
    conn = await db_connect(env)
    try:

        async def team(version: int, size: int) -> bool:
            row = await conn.fetchrow(
                "SELECT version, (SELECT count(*) FROM workspace.team_members m"
                "  WHERE m.tenant_id = t.tenant_id AND m.group_id = t.group_id) AS members"
                " FROM workspace.teams t WHERE tenant_id = $1 AND group_id = $2",
                tenant.id,
                gid,
            )
            return row is not None and (row["version"], row["members"]) == (version, size)

        await eventually(lambda: team(4, 30_000), within=90, what="a 30,000-member team")

        empty = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "members", "value": []}]}
        response = await scim.patch(f"/Groups/{gid}", json=empty)
        assert response.status_code == 204 and response.headers["ETag"] == 'W/"7"'  # three events, one version each
        events = await group_events(db, gid)
        emptied = events[4:]
        assert [(e["type"], e["version"]) for e in emptied] == [("group.membership_changed", v) for v in (5, 6, 7)]
        assert sorted(m for e in emptied for m in e["data"]["removed"]) == sorted(members)
        assert all(len(orjson.dumps(e["data"])) < 500_000 for e in events)
        await eventually(lambda: team(7, 0), within=90, what="the team emptied")

        # The stream goes on: the user topic (booking) and the group's own next events.
        late = (await scim.post("/Users", json={"userName": "after.the.big.one@example.com"})).json()
        readd = [{"op": "add", "path": "members", "value": [{"value": late["id"]}, {"value": members[0]}]}]
        assert (await scim.patch(f"/Groups/{gid}", json={"schemas": [PATCH], "Operations": readd})).status_code == 204
        await eventually(lambda: team(8, 2), within=60, what="the team re-filled")

        async def eligible() -> bool:
            return bool(
                await conn.fetchval(
                    "SELECT eligible FROM booking.users WHERE tenant_id = $1 AND user_id = $2", tenant.id, late["id"]
                )
            )

        await eventually(eligible, within=60, what="booking applying the user created after the big change")

        assert (await scim.delete(f"/Groups/{gid}")).status_code == 204

        async def gone() -> bool:
            return not await conn.fetchval(
                "SELECT count(*) FROM workspace.teams WHERE tenant_id = $1 AND group_id = $2", tenant.id, gid
            )

        await eventually(gone, within=60, what="the team deleted")
    finally:
        await conn.close()


async def test_a_100000_member_group_is_created_and_emptied_in_events_of_at_most_10000_ids(
    db: Any, database_url: str, tenant: TenantInfo
) -> None:
    members = await many_users(db, tenant.id, 100_000)
    # 100,000 foreign-key checks in one statement: seconds, and on a busy shared machine once more than the
    # API pool's 30 s statement timeout (through SCIM a body this large is over the 1 MiB limit anyway).
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2, init=pool_init, command_timeout=300)
    try:
        created = await store.create(pool, tenant.id, {"displayName": "All hands"}, members)
        assert created.version == 10
        emptied = await store.update(
            pool, tenant.id, created.id, lambda current: (current.resource, MembershipDelta(reset=True))
        )
        assert emptied.version == 20
    finally:
        await pool.close()
    events = await group_events(db, created.id)
    # Not for a relay: 4 MB of events would go to whichever test's topic publishes next.
    await db.execute("DELETE FROM events WHERE subject = $1", uuid.UUID(created.id))
    assert [(e["type"], e["version"]) for e in events] == [("group.created", 1)] + [
        ("group.membership_changed", v) for v in range(2, 21)
    ]
    assert events[0]["data"]["members"] == members[:MEMBERS_PER_EVENT]
    added = [m for e in events[:10] for m in (e["data"].get("members") or e["data"]["added"])]
    assert added == members
    removed = [m for e in events[10:] for m in e["data"]["removed"]]
    assert sorted(removed) == sorted(members) and len(removed) == len(set(removed))
    assert all(len(e["data"].get("added", [])) + len(e["data"].get("removed", [])) <= MEMBERS_PER_EVENT for e in events)
    assert all(len(orjson.dumps(e["data"])) < 500_000 for e in events)
