"""A big group's read side over HTTP: the whole group is streamed (chunked), equal to what it was, and every way a
streamed answer can end gives its connection back to the pool."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from service.api.group_stream import CHUNK
from tests.integration.conftest import TenantInfo

_SEED = """
INSERT INTO users (tenant_id, id, user_name, active, version, resource, created_at, updated_at)
SELECT $1, gen_random_uuid(), $3 || g || '@example.com', true, 1,
       jsonb_build_object('userName', $3 || g || '@example.com', 'active', true), now(), now()
FROM generate_series(1, $2) AS g
RETURNING id::text
"""


async def _group(db: Any, scim: httpx.AsyncClient, tenant: TenantInfo, members: int) -> tuple[str, list[str]]:
    ids = [r[0] for r in await db.fetch(_SEED, uuid.UUID(tenant.id), members, uuid.uuid4().hex[:8])]
    body = {"displayName": f"big-{uuid.uuid4().hex[:6]}", "members": [{"value": i} for i in ids]}
    created = await scim.post("/Groups", json=body, params={"excludedAttributes": "members"})
    assert created.status_code == 201, created.text
    return created.json()["id"], ids


async def test_a_big_group_is_streamed_whole_and_as_before(
    db: Any, scim: httpx.AsyncClient, tenant: TenantInfo
) -> None:
    group_id, ids = await _group(db, scim, tenant, 2 * CHUNK + 5)
    answer = await scim.get(f"/Groups/{group_id}")
    assert answer.status_code == 200
    assert "content-length" not in answer.headers  # streamed: the API never held the whole body
    assert answer.headers["content-type"].startswith("application/scim+json")
    body = answer.json()
    assert answer.headers["etag"] == body["meta"]["version"]
    assert [m["value"] for m in body["members"]] == sorted(ids)
    assert body["members"][0] == {
        "value": sorted(ids)[0],
        "type": "User",
        "$ref": f"{tenant.base_url}/Users/{sorted(ids)[0]}",
    }
    # What a projection answers (not streamed) names the same members.
    projected = (await scim.get(f"/Groups/{group_id}", params={"attributes": "members"})).json()
    assert projected["members"] == body["members"]


async def test_a_small_group_is_answered_whole(db: Any, scim: httpx.AsyncClient, tenant: TenantInfo) -> None:
    group_id, ids = await _group(db, scim, tenant, 3)
    answer = await scim.get(f"/Groups/{group_id}")
    assert answer.headers["content-length"] == str(len(answer.content))
    assert sorted(m["value"] for m in answer.json()["members"]) == sorted(ids)
    empty = (await scim.post("/Groups", json={"displayName": f"empty-{uuid.uuid4().hex[:6]}"})).json()
    assert "members" not in (await scim.get(f"/Groups/{empty['id']}")).json()


async def test_abandoned_and_missing_streams_give_their_connections_back(
    db: Any, scim: httpx.AsyncClient, tenant: TenantInfo
) -> None:
    group_id, _ = await _group(db, scim, tenant, CHUNK + 1)
    small_id, _ = await _group(db, scim, tenant, 2)
    for _ in range(30):
        assert (
            (await scim.get(f"/Groups/{small_id}", timeout=10)).status_code == 200
        )  # read whole, not streamed  # more than the API's pool (20): a leak would leave it without connections
        async with (
            httpx.AsyncClient(base_url=tenant.base_url, headers=tenant.headers, timeout=10) as client,
            client.stream("GET", f"/Groups/{group_id}") as answer,
        ):
            assert answer.status_code == 200
            async for _chunk in answer.aiter_bytes():
                break  # the client goes away mid-body
        assert (await scim.get(f"/Groups/{uuid.uuid4()}")).status_code == 404
    answers = await asyncio.gather(*(scim.get(f"/Groups/{group_id}") for _ in range(25)))
    assert {a.status_code for a in answers} == {200}
    assert all(len(a.json()["members"]) == CHUNK + 1 for a in answers)
