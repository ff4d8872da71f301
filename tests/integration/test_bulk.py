"""`POST /Bulk` (RFC 7644 §3.7) over HTTP against the real API and Postgres, starting from the RFC's own examples."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from .conftest import TenantInfo

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def bulk(*operations: dict[str, Any], fail_on_errors: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"schemas": [BULK_REQUEST], "Operations": list(operations)}
    if fail_on_errors is not None:
        body["failOnErrors"] = fail_on_errors
    return body


async def post_bulk(scim: httpx.AsyncClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = await scim.post("/Bulk", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["schemas"] == [BULK_RESPONSE]
    return list(response.json()["Operations"])


async def events_of(db: Any, tenant: TenantInfo, subject: str) -> list[tuple[str, int]]:
    rows = await db.fetch(
        "SELECT type, version FROM events WHERE tenant_id = $1 AND subject = $2 ORDER BY sequence",
        uuid.UUID(tenant.id),
        uuid.UUID(subject),
    )
    return [(r["type"], r["version"]) for r in rows]


async def test_rfc_3_7_2_a_group_created_with_a_member_created_earlier_in_the_same_request(
    scim: httpx.AsyncClient, tenant: TenantInfo, db: Any
) -> None:
    ops = await post_bulk(
        scim,
        bulk(
            {"method": "POST", "path": "/Users", "bulkId": "qwerty", "data": {"schemas": [USER], "userName": "Alice"}},
            {
                "method": "POST",
                "path": "/Groups",
                "bulkId": "ytrewq",
                "data": {
                    "schemas": [GROUP],
                    "displayName": "Tour Guides",
                    "members": [{"type": "User", "value": "bulkId:qwerty"}],
                },
            },
        ),
    )
    assert [(o["method"], o["bulkId"], o["status"]) for o in ops] == [
        ("POST", "qwerty", "201"),
        ("POST", "ytrewq", "201"),
    ]
    user_id = ops[0]["location"].rsplit("/", 1)[1]
    group_id = ops[1]["location"].rsplit("/", 1)[1]
    assert ops[0]["location"] == f"{tenant.base_url}/Users/{user_id}" and ops[0]["version"] == 'W/"1"'
    assert ops[1]["location"] == f"{tenant.base_url}/Groups/{group_id}" and ops[1]["version"] == 'W/"1"'
    group = (await scim.get(f"/Groups/{group_id}")).json()
    assert [m["value"] for m in group["members"]] == [user_id]
    # Each operation committed with its own event, in order.
    assert await events_of(db, tenant, user_id) == [("user.created", 1)]
    assert await events_of(db, tenant, group_id) == [("group.created", 1)]


async def test_a_forward_reference_runs_the_referenced_operation_first(scim: httpx.AsyncClient) -> None:
    ops = await post_bulk(
        scim,
        bulk(
            {
                "method": "POST",
                "path": "/Groups",
                "bulkId": "g",
                "data": {"displayName": "Later", "members": [{"value": "bulkId:u"}]},
            },
            {"method": "POST", "path": "/Users", "bulkId": "u", "data": {"userName": "forward@example.com"}},
        ),
    )
    assert [(o["bulkId"], o["status"]) for o in ops] == [("u", "201"), ("g", "201")]


async def test_rfc_3_7_3_add_update_patch_and_delete_with_versions(scim: httpx.AsyncClient, db: Any) -> None:
    bob = (await scim.post("/Users", json={"userName": "Bob"})).json()
    dave = (await scim.post("/Users", json={"userName": "Dave", "nickName": "Davey"})).json()
    eve = (await scim.post("/Users", json={"userName": "Eve"})).json()
    ops = await post_bulk(
        scim,
        bulk(
            {"method": "POST", "path": "/Users", "bulkId": "qwerty", "data": {"schemas": [USER], "userName": "Alice"}},
            {
                "method": "PUT",
                "path": f"/Users/{bob['id']}",
                "version": bob["meta"]["version"],
                "data": {
                    "schemas": [USER],
                    "id": bob["id"],
                    "userName": "Bob",
                    "emails": [{"type": "work", "value": "bjensen@example.com"}],
                },
            },
            {
                "method": "PATCH",
                "path": f"/Users/{dave['id']}",
                "version": dave["meta"]["version"],
                "data": {
                    "schemas": [PATCH_OP],
                    "Operations": [
                        {"op": "remove", "path": "nickName"},
                        {"op": "replace", "path": "userName", "value": "Dave2"},
                    ],
                },
            },
            {"method": "DELETE", "path": f"/Users/{eve['id']}", "version": eve["meta"]["version"]},
        ),
    )
    assert [(o["method"], o["status"], o.get("version")) for o in ops] == [
        ("POST", "201", 'W/"1"'),
        ("PUT", "200", 'W/"2"'),
        ("PATCH", "200", 'W/"2"'),
        ("DELETE", "204", None),
    ]
    assert ops[1]["location"].endswith(f"/Users/{bob['id']}") and ops[3]["location"].endswith(f"/Users/{eve['id']}")
    got_bob = (await scim.get(f"/Users/{bob['id']}")).json()
    assert got_bob["emails"] == [{"type": "work", "value": "bjensen@example.com"}]
    got_dave = (await scim.get(f"/Users/{dave['id']}")).json()
    assert got_dave["userName"] == "Dave2" and "nickName" not in got_dave
    assert (await scim.get(f"/Users/{eve['id']}")).status_code == 404


async def test_rfc_3_7_3_errors_are_reported_per_operation_and_fail_on_errors_stops(scim: httpx.AsyncClient) -> None:
    await scim.post("/Users", json={"userName": "Alice"})
    bob = (await scim.post("/Users", json={"userName": "Bob"})).json()
    operations = [
        {"method": "POST", "path": "/Users", "bulkId": "qwerty", "data": {"schemas": [USER], "userName": "Alice"}},
        {
            "method": "PUT",
            "path": f"/Users/{bob['id']}",
            "version": 'W/"77"',  # stale: If-Match semantics → 412
            "data": {"schemas": [USER], "userName": "Bob"},
        },
        {"method": "POST", "path": "/Users", "bulkId": "fine", "data": {"userName": "fine@example.com"}},
    ]
    # failOnErrors 1: the first error stops the job; what didn't run isn't reported and didn't happen.
    ops = await post_bulk(scim, bulk(*operations, fail_on_errors=1))
    assert len(ops) == 1
    assert ops[0]["status"] == "409" and ops[0]["bulkId"] == "qwerty" and "location" not in ops[0]
    assert ops[0]["response"]["schemas"] == [ERROR] and ops[0]["response"]["scimType"] == "uniqueness"
    assert ops[0]["response"]["status"] == "409"
    lookup = await scim.get("/Users", params={"filter": 'userName eq "fine@example.com"'})
    assert lookup.json()["totalResults"] == 0

    # failOnErrors 2: two errors, then stop; without it, every operation runs.
    ops = await post_bulk(scim, bulk(*operations, fail_on_errors=2))
    assert [o["status"] for o in ops] == ["409", "412"]
    assert ops[1]["location"].endswith(f"/Users/{bob['id']}")
    ops = await post_bulk(scim, bulk(*operations))
    assert [o["status"] for o in ops] == ["409", "412", "201"]
    assert (await scim.get(f"/Users/{bob['id']}")).json()["meta"]["version"] == 'W/"1"'


async def test_a_reference_to_a_failed_operation_fails_clearly_and_changes_nothing(
    scim: httpx.AsyncClient, tenant: TenantInfo, db: Any
) -> None:
    ops = await post_bulk(
        scim,
        bulk(
            {"method": "POST", "path": "/Users", "bulkId": "broken", "data": {"userName": "x", "active": "maybe"}},
            {
                "method": "POST",
                "path": "/Groups",
                "bulkId": "team",
                "data": {"displayName": "Team", "members": [{"value": "bulkId:broken"}]},
            },
            {
                "method": "POST",
                "path": "/Groups",
                "data": {"displayName": "Other", "members": [{"value": "bulkId:nope"}]},
            },
        ),
    )
    assert [o["status"] for o in ops] == ["400", "409", "400"]
    assert ops[0]["response"]["scimType"] == "invalidValue"
    assert "bulkId 'broken'" in ops[1]["response"]["detail"] and "failed" in ops[1]["response"]["detail"]
    assert "bulkId 'nope'" in ops[2]["response"]["detail"]
    assert (await scim.get("/Groups")).json()["totalResults"] == 0
    count = await db.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1", uuid.UUID(tenant.id))
    assert count == 0


async def test_rfc_3_7_1_circular_references_are_refused_with_409(scim: httpx.AsyncClient) -> None:
    ops = await post_bulk(
        scim,
        bulk(
            {
                "method": "POST",
                "path": "/Groups",
                "bulkId": "groupA",
                "data": {"displayName": "A", "members": [{"value": "bulkId:groupB", "type": "Group"}]},
            },
            {
                "method": "POST",
                "path": "/Groups",
                "bulkId": "groupB",
                "data": {"displayName": "B", "members": [{"value": "bulkId:groupA", "type": "Group"}]},
            },
            {"method": "POST", "path": "/Users", "bulkId": "ok", "data": {"userName": "still-runs@example.com"}},
        ),
    )
    assert sorted((o["bulkId"], o["status"]) for o in ops) == [("groupA", "409"), ("groupB", "409"), ("ok", "201")]
    assert all("circular" in o["response"]["detail"] for o in ops if o["status"] == "409")
    assert (await scim.get("/Groups")).json()["totalResults"] == 0


async def test_groups_in_bulk_and_malformed_operations(scim: httpx.AsyncClient) -> None:
    alan = (await scim.post("/Users", json={"userName": "alan@example.com"})).json()["id"]
    ops = await post_bulk(
        scim,
        bulk(
            {"method": "POST", "path": "/Groups", "bulkId": "g", "data": {"displayName": "Floor 4"}},
            {
                "method": "PATCH",
                "path": "/Groups/bulkId:g",
                "data": {
                    "schemas": [PATCH_OP],
                    "Operations": [{"op": "add", "path": "members", "value": [{"value": alan}]}],
                },
            },
            {"method": "PUT", "path": "/Groups/bulkId:g", "data": {"displayName": "Floor 5", "members": []}},
            {"method": "GET", "path": "/Users"},
            {"method": "POST", "path": "/Users/123", "data": {"userName": "x"}},
            {"method": "DELETE", "path": "/Widgets/1"},
            {"method": "DELETE", "path": "/Groups/bulkId:g", "version": 'W/"9"'},
            {"method": "DELETE", "path": f"/Users/{uuid.uuid4()}"},
        ),
    )
    assert [(o["method"], o["status"]) for o in ops] == [
        ("POST", "201"),
        ("PATCH", "204"),
        ("PUT", "200"),
        ("GET", "400"),
        ("POST", "400"),
        ("DELETE", "400"),
        ("DELETE", "412"),
        ("DELETE", "404"),
    ]
    group_id = ops[0]["location"].rsplit("/", 1)[1]
    assert ops[1]["version"] == 'W/"2"' and ops[2]["version"] == 'W/"4"'
    group = (await scim.get(f"/Groups/{group_id}")).json()
    assert group["displayName"] == "Floor 5" and group.get("members", []) == []


async def test_limits_are_enforced_with_413_naming_them(scim: httpx.AsyncClient, tenant: TenantInfo) -> None:
    too_many = bulk(*({"method": "DELETE", "path": f"/Users/{uuid.uuid4()}"} for _ in range(1001)))
    response = await scim.post("/Bulk", json=too_many)
    assert response.status_code == 413
    assert "maxOperations is 1000" in response.json()["detail"] and "1048576" in response.json()["detail"]
    big = bulk({"method": "POST", "path": "/Users", "bulkId": "b", "data": {"userName": "x" * 1_100_000}})
    response = await scim.post("/Bulk", json=big)
    assert response.status_code == 413
    assert "maxPayloadSize (1048576 bytes)" in response.json()["detail"] and "1000" in response.json()["detail"]
    assert (await scim.get("/Users")).json()["totalResults"] == 0
    # Not a BulkRequest at all.
    response = await scim.post("/Bulk", json={"schemas": [BULK_REQUEST], "Operations": []})
    assert response.status_code == 400 and response.json()["scimType"] == "invalidSyntax"
    response = await scim.post("/Bulk", json={"schemas": [PATCH_OP], "Operations": [{"method": "DELETE"}]})
    assert response.status_code == 400
