"""What OneLogin, JumpCloud, PingOne/PingFederate and Rippling rely on, pinned: real API process, real Postgres."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from .conftest import TenantInfo

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LEGACY_CORE = "urn:scim:schemas:core:2.0"
LEGACY_ENTERPRISE = "urn:scim:schemas:extension:enterprise:2.0"


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


async def test_accept_application_json_gets_application_json(scim: httpx.AsyncClient) -> None:
    only_json = {"Accept": "application/json"}
    created = await scim.post("/Users", json={"userName": "one@example.com"}, headers=only_json)
    assert created.status_code == 201 and created.headers["content-type"] == "application/json"
    uid = created.json()["id"]
    for response in (
        await scim.get(f"/Users/{uid}", headers=only_json),
        await scim.get("/Users", params={"filter": 'userName eq "one@example.com"'}, headers=only_json),
        await scim.get("/ServiceProviderConfig", headers=only_json),
        await scim.get("/Users/not-there", headers=only_json),  # errors too
        await scim.get("/Users", headers={**only_json, "Authorization": "Bearer wrong"}),
    ):
        assert response.headers["content-type"] == "application/json", response.request.url
    assert (await scim.get("/Users/not-there", headers=only_json)).json()["status"] == "404"
    # Anything else keeps SCIM's own media type.
    for accept in ("application/scim+json", "*/*", "application/json, application/scim+json"):
        response = await scim.get(f"/Users/{uid}", headers={"Accept": accept})
        assert response.headers["content-type"] == "application/scim+json", accept
    assert (await scim.get(f"/Users/{uid}")).headers["content-type"] == "application/scim+json"


async def test_legacy_schema_names(scim: httpx.AsyncClient) -> None:
    created = await scim.post(
        "/Users",
        json={
            "schemas": [LEGACY_CORE, LEGACY_ENTERPRISE],
            "userName": "legacy@example.com",
            LEGACY_ENTERPRISE: {"department": "Ops", "employeeNumber": "7"},
        },
    )
    assert created.status_code == 201, created.text
    user = created.json()
    # Stored and rendered under the RFC 7643 names.
    assert user[ENTERPRISE] == {"department": "Ops", "employeeNumber": "7"}
    assert LEGACY_ENTERPRISE not in user and ENTERPRISE in user["schemas"]
    patched = await scim.patch(
        f"/Users/{user['id']}",
        json=patch(
            {"op": "replace", "path": f"{LEGACY_ENTERPRISE}:department", "value": "Support"},
            {"op": "replace", "path": f"{LEGACY_CORE}:User:displayName", "value": "Legacy"},
            {"op": "replace", "value": {f"{LEGACY_ENTERPRISE}:costCenter": "42"}},
        ),
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()[ENTERPRISE] == {"department": "Support", "employeeNumber": "7", "costCenter": "42"}
    assert patched.json()["displayName"] == "Legacy"
    found = await scim.get("/Users", params={"filter": f'{LEGACY_ENTERPRISE}:department eq "Support"'})
    assert found.json()["totalResults"] == 1


@pytest.mark.parametrize("true", ["true", "True", "TRUE"])
async def test_booleans_as_strings(scim: httpx.AsyncClient, true: str) -> None:
    created = await scim.post("/Users", json={"userName": f"b-{true}@example.com", "active": true})
    assert created.status_code == 201 and created.json()["active"] is True
    uid = created.json()["id"]
    off = await scim.patch(f"/Users/{uid}", json=patch({"op": "replace", "path": "active", "value": "False"}))
    assert off.json()["active"] is False
    on = await scim.patch(f"/Users/{uid}", json=patch({"op": "replace", "value": {"active": true.lower()}}))
    assert on.json()["active"] is True
    put = await scim.put(
        f"/Users/{uid}",
        json={"userName": f"b-{true}@example.com", "active": "false", "emails": [{"value": "x@y", "primary": "TRUE"}]},
    )
    assert put.json()["active"] is False and put.json()["emails"] == [{"value": "x@y", "primary": True}]


@pytest.mark.parametrize("value", ["yes", "1", "on", "tru", "falsey"])
async def test_other_strings_for_booleans_are_refused(scim: httpx.AsyncClient, value: str) -> None:
    created = await scim.post("/Users", json={"userName": "strict@example.com", "active": True})
    uid = created.json()["id"]
    for response in (
        await scim.post("/Users", json={"userName": "other@example.com", "active": value}),
        await scim.patch(f"/Users/{uid}", json=patch({"op": "replace", "path": "active", "value": value})),
        await scim.patch(f"/Users/{uid}", json=patch({"op": "replace", "value": {"active": value}})),
        await scim.put(f"/Users/{uid}", json={"userName": "strict@example.com", "active": value}),
        await scim.put(
            f"/Users/{uid}", json={"userName": "strict@example.com", "emails": [{"value": "s@x", "primary": value}]}
        ),
    ):
        assert response.status_code == 400, response.text
        assert response.json()["scimType"] == "invalidValue"
    assert (await scim.get(f"/Users/{uid}")).json()["active"] is True


async def test_empty_values_clear(scim: httpx.AsyncClient) -> None:
    full = {
        "userName": "clear@example.com",
        "emails": [{"value": "clear@example.com", "type": "work"}],
        "phoneNumbers": [{"value": "+1 555", "type": "work"}],
        "title": "Engineer",
    }
    uid = (await scim.post("/Users", json=full)).json()["id"]
    # PATCH with "emails": null, no path (Rippling, JumpCloud) and with a path.
    cleared = await scim.patch(f"/Users/{uid}", json=patch({"op": "replace", "value": {"emails": None}}))
    assert cleared.status_code == 200 and "emails" not in cleared.json()
    cleared = await scim.patch(f"/Users/{uid}", json=patch({"op": "replace", "path": "title", "value": None}))
    assert "title" not in cleared.json()
    # A full PUT with empty arrays and nulls: those attributes are gone, the user stays active.
    put = await scim.put(f"/Users/{uid}", json={"userName": "clear@example.com", "phoneNumbers": [], "emails": None})
    assert put.status_code == 200
    assert "phoneNumbers" not in put.json() and "emails" not in put.json() and put.json()["active"] is True
    # A group PUT with `members: []` empties the group.
    group = await scim.post("/Groups", json={"displayName": "Clearing", "members": [{"value": uid}]})
    emptied = await scim.put(f"/Groups/{group.json()['id']}", json={"displayName": "Clearing", "members": []})
    assert emptied.status_code == 200 and "members" not in emptied.json()


async def raw_get(tenant: TenantInfo, target: str) -> tuple[int, bytes]:
    """A GET with the request target sent byte for byte (HTTP clients normalise a trailing `?` away)."""
    url = urlsplit(tenant.base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(
        f"GET {url.path}{target} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {tenant.token}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def test_a_trailing_ampersand_or_question_mark(scim: httpx.AsyncClient, tenant: TenantInfo) -> None:
    uid = (await scim.post("/Users", json={"userName": "amp@example.com"})).json()["id"]
    for target in (
        "/Users?filter=userName%20eq%20%22amp%40example.com%22&",
        "/Users?filter=userName%20eq%20%22amp%40example.com%22&startIndex=1&count=100&",
        "/Users?",
        f"/Users/{uid}?",
        f"/Users/{uid}?&",
        "/Users?&&",
    ):
        status, body = await raw_get(tenant, target)
        assert status == 200, (target, body)
        assert b"amp@example.com" in body, target
