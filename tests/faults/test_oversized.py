"""Changes too large for one Kafka record: a user a few hundred bytes under the body limit, and a 30,000-member
group emptied in one PATCH. The user is refused at the SCIM door with the limit named; the group's change is
published split into ordered events. Neither stops any other user's or group's events."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from tests.faults.conftest import Figures
from tests.faults.load import PATCH, Load, Tenant
from tests.faults.pipeline import Pipeline
from tests.faults.verdict import settle

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
BODY_LIMIT = 1_048_576  # SCIMSYNC_MAX_BODY_BYTES' default
MEMBERS = 30_000


def scim_headers(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.token}", "Content-Type": "application/scim+json"}


async def test_oversized_user_is_refused_naming_the_limit_and_blocks_nothing(
    pipeline: Pipeline, figures: Figures
) -> None:
    await pipeline.start()
    tenants = await pipeline.tenants(2)
    load = await Load(pipeline.api_url, tenants, rate=60, max_seconds=90).start()
    await load.wait_for_writes(60)

    # Every value within the 4,096-character limit, the body a few hundred bytes under the 1 MiB body limit: only
    # the size of the whole resource can refuse it (a stored user is at most 256 KiB).
    address = {"type": "work", "formatted": "x" * 4000}
    body: dict[str, Any] = {"userName": "big@example.com", "addresses": []}
    while len(orjson.dumps(body)) + len(orjson.dumps(address)) < BODY_LIMIT - 300:
        body["addresses"].append(address)
    body["displayName"] = "x" * (BODY_LIMIT - 256 - len(orjson.dumps(body)) - 20)
    raw = orjson.dumps(body)
    assert BODY_LIMIT - 300 < len(raw) < BODY_LIMIT
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{tenants[0].base_url}/Users", content=raw, headers=scim_headers(tenants[0]))
    # Refused at the door: a stored resource is at most 256 KiB (service/domain/limits.py), so no event of it can
    # reach Kafka's 1 MiB record limit. (A record Kafka still refuses is parked: tests/integration/test_relay_gate.py.)
    assert response.status_code == 400, f"answered {response.status_code}: {response.text[:300]}"
    error = response.json()
    assert error["schemas"] == [ERROR] and error["status"] == "400" and error["scimType"] == "invalidValue", error
    assert "262,144 bytes" in error["detail"], "the refusal names the limit"
    conn = await pipeline.connect()
    try:
        assert not await conn.fetchval("SELECT count(*) FROM users WHERE user_name = 'big@example.com'")
    finally:
        await conn.close()
    await load.wait_for_writes(load.writes + 200)  # writes after it, of every tenant, must still flow
    verdict = await settle(pipeline, load, time.monotonic(), within=45)
    figures(body_bytes=len(raw), answered=response.status_code, **verdict)


async def test_30000_member_group_emptied_in_one_patch_reaches_the_consumers(
    pipeline: Pipeline, figures: Figures
) -> None:
    await pipeline.start()
    tenant, other = await pipeline.tenants(2)
    conn = await pipeline.connect()
    try:
        members = await add_users(conn, tenant.id, MEMBERS)
    finally:
        await conn.close()
    async with httpx.AsyncClient(timeout=60, base_url=tenant.base_url, headers=scim_headers(tenant)) as client:
        chunks = [members[n : n + 10_000] for n in range(0, MEMBERS, 10_000)]  # a request body stays under 1 MiB
        created = await client.post("/Groups", json={"displayName": "Everyone", "members": refs(chunks[0])})
        assert created.status_code == 201, created.text[:300]
        group = created.json()["id"]
        for chunk in chunks[1:]:
            add = {"op": "add", "path": "members", "value": refs(chunk)}
            added = await client.patch(f"/Groups/{group}", json=ops(add))
            assert added.status_code == 204, added.text[:300]
        filled = await settle(pipeline, None, time.monotonic(), within=120)  # the team has all 30,000 members

        started = time.monotonic()
        emptied = await client.patch(f"/Groups/{group}", json=ops({"op": "replace", "path": "members", "value": []}))
        patch_s = time.monotonic() - started
        assert emptied.status_code == 204, emptied.text[:300]
    load = await Load(pipeline.api_url, [tenant, other], rate=60, max_seconds=60).start()
    await load.wait_for_writes(150)  # other users' and groups' events after it must flow too
    verdict = await settle(pipeline, load, started, within=60)
    conn = await pipeline.connect()
    try:
        left = await conn.fetchval("SELECT count(*) FROM workspace.team_members WHERE group_id = $1", group)
        events = await conn.fetchval("SELECT count(*) FROM events WHERE subject = $1", group)
    finally:
        await conn.close()
    assert left == 0
    figures(
        members=MEMBERS,
        filled_after_s=filled["projections_equal_after_s"],
        empty_patch_s=patch_s,
        group_events=events,
        **verdict,
    )


def refs(ids: list[str]) -> list[dict[str, str]]:
    return [{"value": i} for i in ids]


def ops(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(operations)}


async def add_users(conn: Any, tenant_id: str, count: int) -> list[str]:
    """`count` users provisioned (and consumed) long ago: their rows, and the rows both consumers made of them.

    Their user.created events are left out: 60,000 more records to apply would only slow the test down, and the
    subject here is the group. The projections are what the consumers write for such a user (checks.py compares).
    """
    await conn.execute(
        """
        WITH u AS (
            INSERT INTO users (tenant_id, id, user_name, active, version, resource, created_at, updated_at)
            SELECT $1, gen_random_uuid(), 'member.' || n || '@example.com', true, 1,
                   jsonb_build_object('userName', 'member.' || n || '@example.com', 'active', true), now(), now()
            FROM generate_series(1, $2) AS n
            RETURNING id, user_name
        ), m AS (
            INSERT INTO workspace.members (tenant_id, user_id, user_name, active, version, updated_at)
            SELECT $1, id, user_name, true, 1, now() FROM u
        ), v AS (
            INSERT INTO workspace.versions (tenant_id, user_id, version) SELECT $1, id, 1 FROM u
        )
        INSERT INTO booking.users (tenant_id, user_id, eligible, version) SELECT $1, id, true, 1 FROM u
        """,
        tenant_id,
        count,
    )
    rows = await conn.fetch("SELECT id FROM users WHERE tenant_id = $1 ORDER BY seq", tenant_id)
    return [str(r["id"]) for r in rows]
