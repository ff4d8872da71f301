"""Protocol behaviour an identity provider relies on: errors, auth, tenants, versions, races, audit."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from service.store import tenants

from .conftest import TenantInfo
from .rawhttp import RawClient

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def assert_scim_error(response: httpx.Response, status: int, scim_type: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    body = response.json()
    assert body["schemas"] == [ERROR] and body["status"] == str(status) and body["detail"]
    assert body.get("scimType") == scim_type
    assert "Traceback" not in response.text


async def user_count(db: Any, tenant_id: str) -> int:
    return int(await db.fetchval("SELECT count(*) FROM users WHERE tenant_id = $1", uuid.UUID(tenant_id)))


async def test_missing_or_wrong_token_is_401_and_writes_nothing(tenant: TenantInfo, db: Any) -> None:
    async with httpx.AsyncClient(base_url=tenant.base_url) as client:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {tenant.token}"}):
            response = await client.post("/Users", json={"userName": "x@example.com"}, headers=headers)
            assert_scim_error(response, 401)
            assert response.headers["www-authenticate"].startswith("Bearer")
    assert await user_count(db, tenant.id) == 0


async def test_a_token_works_only_on_its_own_tenant(tenant: TenantInfo, db: Any, api_url: str) -> None:
    other, other_token = await tenants.create(db, "other")
    async with httpx.AsyncClient(base_url=f"{api_url}/scim/v2/{other.id}") as client:
        created = await client.post("/Users", json={"userName": "same@example.com"}, headers=tenant.headers)
        assert_scim_error(created, 401)
        own = {"Authorization": f"Bearer {other_token}"}
        assert (await client.post("/Users", json={"userName": "same@example.com"}, headers=own)).status_code == 201
    # Same userName in two tenants is fine; neither sees the other's users.
    async with httpx.AsyncClient(base_url=tenant.base_url, headers=tenant.headers) as client:
        assert (await client.post("/Users", json={"userName": "same@example.com"})).status_code == 201
        listed = (await client.get("/Users")).json()
        assert listed["totalResults"] == 1
        foreign_id = (await db.fetchval("SELECT id FROM users WHERE tenant_id = $1", uuid.UUID(other.id))).hex
        assert_scim_error(await client.get(f"/Users/{uuid.UUID(foreign_id)}"), 404)
        assert_scim_error(await client.delete(f"/Users/{uuid.UUID(foreign_id)}"), 404)
    assert await user_count(db, other.id) == 1


async def test_disabled_provisioning_is_403_and_rotation_revokes_the_old_token(
    tenant: TenantInfo, scim: httpx.AsyncClient, db: Any
) -> None:
    await tenants.set_enabled(db, tenant.id, False)
    await asyncio.sleep(0.2)  # NOTIFY reaches the API's tenant cache
    assert_scim_error(await scim.post("/Users", json={"userName": "off@example.com"}), 403)
    assert await user_count(db, tenant.id) == 0
    await tenants.set_enabled(db, tenant.id, True)
    await asyncio.sleep(0.2)
    assert (await scim.get("/Users")).status_code == 200

    new_token = await tenants.rotate_token(db, tenant.id)
    await asyncio.sleep(0.2)
    assert_scim_error(await scim.get("/Users"), 401)
    assert (await scim.get("/Users", headers={"Authorization": f"Bearer {new_token}"})).status_code == 200


async def test_bad_requests_get_scim_errors(scim: httpx.AsyncClient, tenant: TenantInfo, db: Any) -> None:
    assert_scim_error(await scim.post("/Users", content=b"{not json"), 400, "invalidSyntax")
    assert_scim_error(await scim.post("/Users", content=b"[1, 2]"), 400, "invalidSyntax")
    assert_scim_error(await scim.post("/Users", json={"displayName": "no userName"}), 400, "invalidValue")
    assert_scim_error(await scim.post("/Users", json={"userName": "   "}), 400, "invalidValue")
    assert_scim_error(await scim.post("/Users", json={"userName": ["a"]}), 400, "invalidValue")
    assert_scim_error(
        await scim.post("/Users", json={"userName": "x@example.com", "active": "maybe"}), 400, "invalidValue"
    )
    assert_scim_error(
        await scim.post("/Users", content=b'{"userName":"a"}', headers={"Content-Type": "text/plain"}), 415
    )
    big = {"userName": "big@example.com", "displayName": "x" * 2_000_000}
    assert_scim_error(await scim.post("/Users", json=big), 413)
    assert_scim_error(await scim.get("/Users", params={"filter": 'userName eq "unterminated'}), 400, "invalidFilter")
    assert_scim_error(await scim.get("/Users", params={"filter": 'noSuchAttribute eq "x"'}), 400, "invalidFilter")
    assert_scim_error(await scim.get("/Users", params={"filter": 'userName eq "x") or (1'}), 400, "invalidFilter")
    assert_scim_error(await scim.get("/Users", params={"count": "ten"}), 400, "invalidValue")
    assert_scim_error(await scim.get("/Users/not-a-uuid"), 404)
    assert_scim_error(await scim.get("/Nothing"), 404)
    assert_scim_error(await scim.delete("/Users"), 405)
    for path in ("/ServiceProviderConfig", "/ResourceTypes", "/Schemas"):
        assert_scim_error(await scim.post(path, json={}), 405)
        assert_scim_error(await scim.delete(path), 405)
    assert await user_count(db, tenant.id) == 0  # nothing half-written


async def test_accepts_json_media_types_with_or_without_charset(scim: httpx.AsyncClient) -> None:
    for i, media_type in enumerate(
        (
            "application/scim+json",
            "application/json",
            "application/json; charset=utf-8",
            "application/scim+json;charset=UTF-8",
        )
    ):
        body = f'{{"userName": "mt{i}@example.com"}}'.encode()
        response = await scim.post("/Users", content=body, headers={"Content-Type": media_type})
        assert response.status_code == 201
        assert response.headers["content-type"] == "application/scim+json"


async def test_bad_patches_change_nothing(scim: httpx.AsyncClient) -> None:
    user = (await scim.post("/Users", json={"userName": "p@example.com", "displayName": "P"})).json()
    url = f"/Users/{user['id']}"
    cases = [
        ({"Operations": [{"op": "replace", "value": {"active": False}}]}, "invalidSyntax"),  # no schemas
        ({"schemas": [PATCH_OP], "Operations": []}, "invalidSyntax"),
        (
            {"schemas": [PATCH_OP], "Operations": [{"op": "frobnicate", "path": "displayName", "value": "x"}]},
            "invalidSyntax",
        ),
        ({"schemas": [PATCH_OP], "Operations": [{"op": "remove"}]}, "noTarget"),
        ({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "id", "value": "x"}]}, "mutability"),
        ({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "nope", "value": "x"}]}, "invalidPath"),
        ({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "userName"}]}, "invalidValue"),
        # All or nothing: the first operation is valid, the second is not.
        (
            {
                "schemas": [PATCH_OP],
                "Operations": [
                    {"op": "replace", "value": {"active": False}},
                    {"op": "replace", "path": "emails[type eq", "value": "x"},
                ],
            },
            "invalidPath",
        ),
    ]
    for body, scim_type in cases:
        assert_scim_error(await scim.patch(url, json=body), 400, scim_type)
    after = (await scim.get(url)).json()
    assert after["active"] is True and after["meta"]["version"] == user["meta"]["version"]


async def test_etag_and_if_match(scim: httpx.AsyncClient) -> None:
    created = await scim.post("/Users", json={"userName": "etag@example.com"})
    url, etag = f"/Users/{created.json()['id']}", created.headers["etag"]
    assert (await scim.get(url)).headers["etag"] == etag == 'W/"1"'
    body = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "displayName", "value": "E"}]}
    ok = await scim.patch(url, json=body, headers={"If-Match": etag})
    assert ok.status_code == 200 and ok.headers["etag"] == 'W/"2"'
    stale = await scim.put(url, json={"userName": "etag@example.com"}, headers={"If-Match": etag})
    assert_scim_error(stale, 412)
    assert_scim_error(await scim.delete(url, headers={"If-Match": etag}), 412)
    assert (await scim.get(url)).json()["displayName"] == "E"
    # A PATCH that changes nothing makes no new version.
    assert (await scim.patch(url, json=body)).headers["etag"] == 'W/"2"'
    assert (await scim.delete(url, headers={"If-Match": 'W/"2"'})).status_code == 204


async def test_fifty_identical_creates_race_to_one_201(tenant: TenantInfo, db: Any) -> None:
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=tenant.base_url, headers=tenant.headers, limits=limits, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post("/Users", json={"userName": "race@example.com"}) for _ in range(50))
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 49
    for response in responses:
        if response.status_code == 409:
            assert response.json()["scimType"] == "uniqueness"
    assert await user_count(db, tenant.id) == 1


async def test_thirty_concurrent_patches_of_one_user_lose_nothing(tenant: TenantInfo, db: Any) -> None:
    limits = httpx.Limits(max_connections=30)
    async with httpx.AsyncClient(base_url=tenant.base_url, headers=tenant.headers, limits=limits, timeout=30) as client:
        user = (await client.post("/Users", json={"userName": "crowd@example.com"})).json()["id"]
        emails = [f"crowd{n}@example.com" for n in range(30)]
        responses = await asyncio.gather(
            *(
                client.patch(
                    f"/Users/{user}",
                    json={
                        "schemas": [PATCH_OP],
                        "Operations": [{"op": "add", "path": "emails", "value": [{"value": e, "type": "other"}]}],
                    },
                )
                for e in emails
            )
        )
        assert [r.status_code for r in responses] == [200] * 30
        after = await client.get(f"/Users/{user}")
    assert sorted(e["value"] for e in after.json()["emails"]) == sorted(emails)  # every PATCH saw the one before
    assert after.headers["etag"] == 'W/"31"'
    versions = await db.fetch(
        "SELECT version FROM events WHERE tenant_id = $1 AND subject = $2 ORDER BY sequence",
        uuid.UUID(tenant.id),
        uuid.UUID(user),
    )
    assert [r["version"] for r in versions] == list(range(1, 32))  # one event per PATCH, in commit order


async def test_sort_and_search_endpoint(scim: httpx.AsyncClient) -> None:
    for name in ("carol", "alice", "bob"):
        await scim.post("/Users", json={"userName": f"{name}@example.com", "name": {"familyName": name.title()}})
    listed = await scim.get("/Users", params={"sortBy": "name.familyName", "sortOrder": "descending"})
    assert [r["userName"] for r in listed.json()["Resources"]] == [
        "carol@example.com",
        "bob@example.com",
        "alice@example.com",
    ]
    search = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": 'userName sw "a" or userName sw "b"',
        "sortBy": "userName",
        "attributes": ["userName"],
        "startIndex": 2,
        "count": 5,
    }
    found = (await scim.post("/Users/.search", json=search)).json()
    assert found["totalResults"] == 2 and found["startIndex"] == 2
    assert [r["userName"] for r in found["Resources"]] == ["bob@example.com"]
    assert (await scim.get("/Users", params={"count": 0})).json() == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 3,
        "startIndex": 1,
        "itemsPerPage": 0,
        "Resources": [],
    }


async def test_discovery_endpoints(scim: httpx.AsyncClient) -> None:
    config = (await scim.get("/ServiceProviderConfig")).json()
    assert config["patch"]["supported"] is True
    assert config["bulk"] == {"supported": True, "maxOperations": 1000, "maxPayloadSize": 1048576}
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    types = (await scim.get("/ResourceTypes")).json()
    assert [t["name"] for t in types["Resources"]] == ["User", "Group"]
    schemas = (await scim.get("/Schemas")).json()
    ids = {s["id"] for s in schemas["Resources"]}
    assert "urn:ietf:params:scim:schemas:core:2.0:User" in ids
    user_schema = (await scim.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User")).json()
    assert any(a["name"] == "userName" and a["uniqueness"] == "server" for a in user_schema["attributes"])


async def test_every_request_is_audited_without_secrets(scim: httpx.AsyncClient, tenant: TenantInfo, db: Any) -> None:
    created = await scim.post("/Users", json={"userName": "audit@example.com"}, headers={"X-Request-Id": "req-audit-1"})
    assert created.headers["x-request-id"] == "req-audit-1"
    await scim.get("/Users/not-a-uuid")
    for _ in range(50):
        rows = await db.fetch("SELECT * FROM scim_requests WHERE tenant_id = $1 ORDER BY id", uuid.UUID(tenant.id))
        if len(rows) >= 2:
            break
        await asyncio.sleep(0.1)
    assert [(r["method"], r["status"]) for r in rows] == [("POST", 201), ("GET", 404)]
    assert rows[0]["request_id"] == "req-audit-1" and rows[0]["duration_ms"] > 0
    assert rows[0]["path"] == f"/scim/v2/{tenant.id}/Users"
    dumped = " ".join(str(dict(r)) for r in rows)
    assert tenant.token not in dumped and "audit@example.com" not in dumped


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_health_endpoints(api_url: str, path: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{api_url}{path}")
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"]


async def test_an_idle_keep_alive_connection_stays_open_past_uvicorns_5_s_default(api_url: str) -> None:
    """Behind a load balancer or ingress that keeps upstream connections idle for up to 60 s, a server that closes
    them sooner races the proxy's next request on them (the proxy answers 502). scimsync keeps them 75 s."""
    host, port = api_url.removeprefix("http://").split(":")
    client = await RawClient.open(host, int(port))
    try:
        assert (await client.request("GET", "/healthz")).status == 200
        await asyncio.sleep(6)
        assert (await client.request("GET", "/healthz")).status == 200  # the same connection, still open
    finally:
        await client.close()
