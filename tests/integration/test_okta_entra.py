"""The call sequences Okta and Microsoft Entra ID really make, end to end over HTTP, real Postgres."""

from __future__ import annotations

from typing import Any

import httpx

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def okta_user(login: str) -> dict[str, Any]:
    """Okta's create body, including the `password` and `groups` it doesn't expect us to keep."""
    return {
        "schemas": [USER],
        "userName": login,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"primary": True, "value": login, "type": "work"}],
        "displayName": "Ada Lovelace",
        "locale": "en-US",
        "externalId": "00u1abcd",
        "groups": [],
        "password": "s3cret-Pa55",
        "active": True,
    }


async def lookup(scim: httpx.AsyncClient, user_name: str) -> dict[str, Any]:
    response = await scim.get("/Users", params={"filter": f'userName eq "{user_name}"', "startIndex": 1, "count": 100})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/scim+json")
    return dict(response.json())


async def test_okta_lifecycle(scim: httpx.AsyncClient) -> None:
    # 1. Okta looks the user up first: no match is a normal, integer-typed ListResponse.
    empty = await lookup(scim, "ada@example.com")
    assert (empty["totalResults"], empty["startIndex"], empty["itemsPerPage"]) == (0, 1, 0)
    assert empty["Resources"] == []

    # 2. Create.
    created = await scim.post("/Users", json=okta_user("ada@example.com"))
    assert created.status_code == 201
    user = created.json()
    assert user["userName"] == "ada@example.com" and user["active"] is True
    assert "password" not in user and "groups" not in user
    assert created.headers["location"] == user["meta"]["location"]
    assert created.headers["etag"] == user["meta"]["version"]
    user_id = user["id"]

    # 3. The lookup now finds it, whatever the case of the userName.
    found = await lookup(scim, "ADA@example.COM")
    assert found["totalResults"] == 1 and found["Resources"][0]["id"] == user_id

    # 4. Profile update with PUT.
    body = okta_user("ada@example.com") | {"name": {"givenName": "Ada", "familyName": "King"}}
    put = await scim.put(f"/Users/{user_id}", json=body)
    assert put.status_code == 200 and put.json()["name"]["familyName"] == "King"

    # 5. Deactivation: a PATCH with no path. Ignoring it would leave a leaver active.
    deactivate = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}
    patched = await scim.patch(f"/Users/{user_id}", json=deactivate)
    assert patched.status_code == 200 and patched.json()["active"] is False
    got = await scim.get(f"/Users/{user_id}")
    assert got.status_code == 200 and got.json()["active"] is False
    assert got.json()["name"]["familyName"] == "King"  # nothing else lost
    # Deactivated users are still found by filters (Okta re-links them).
    assert (await lookup(scim, "ada@example.com"))["Resources"][0]["active"] is False

    # 6. Reactivation keeps the id.
    reactivate = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": True}}]}
    again = await scim.patch(f"/Users/{user_id}", json=reactivate)
    assert again.status_code == 200 and again.json()["active"] is True and again.json()["id"] == user_id

    # 7. Delete: 204, then gone.
    deleted = await scim.delete(f"/Users/{user_id}")
    assert deleted.status_code == 204 and deleted.content == b""
    gone = await scim.get(f"/Users/{user_id}")
    assert gone.status_code == 404 and gone.json()["status"] == "404"
    assert (await lookup(scim, "ada@example.com"))["totalResults"] == 0


async def test_okta_duplicate_create_is_409_uniqueness(scim: httpx.AsyncClient) -> None:
    assert (await scim.post("/Users", json=okta_user("dup@example.com"))).status_code == 201
    duplicate = await scim.post("/Users", json=okta_user("DUP@example.com"))
    assert duplicate.status_code == 409
    assert duplicate.json()["scimType"] == "uniqueness"
    assert duplicate.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


async def test_okta_import_pages_250_users_in_a_stable_order(scim: httpx.AsyncClient) -> None:
    ids = []
    for i in range(250):
        response = await scim.post("/Users", json={"userName": f"imp{i:03d}@example.com", "active": i % 7 != 0})
        ids.append(response.json()["id"])
    seen: list[str] = []
    start = 1
    while True:
        page = (await scim.get("/Users", params={"startIndex": start, "count": 100})).json()
        assert page["totalResults"] == 250
        assert page["startIndex"] == start
        assert page["itemsPerPage"] == len(page["Resources"])
        seen += [r["id"] for r in page["Resources"]]
        if not page["Resources"]:
            break
        start += page["itemsPerPage"]
    assert seen == ids  # every user exactly once, inactive ones included, in creation order


async def test_entra_lifecycle(scim: httpx.AsyncClient) -> None:
    # Entra probes with a random filter first, then looks up by userName and creates.
    probe = await scim.get("/Users", params={"filter": 'userName eq "non-existent-7d1c@example.com"'})
    assert probe.status_code == 200 and probe.json()["totalResults"] == 0
    created = await scim.post(
        "/Users",
        json={
            "schemas": [USER, ENTERPRISE],
            "externalId": "e-42",
            "UserName": "Grace@Contoso.com",
            "Active": "True",
            "displayName": "Grace Hopper",
            "emails": [{"Primary": True, "type": "work", "value": "grace@contoso.com"}],
            "name": {"formatted": "Grace Hopper", "familyName": "Hopper", "givenName": "Grace"},
            ENTERPRISE: {"department": "Navy", "manager": "mgr-1"},
            "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User": {"costCenterCode": "x"},
        },
    )
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["userName"] == "Grace@Contoso.com" and user["active"] is True
    assert user[ENTERPRISE] == {"department": "Navy", "manager": {"value": "mgr-1"}}
    assert sorted(user["schemas"]) == sorted([USER, ENTERPRISE])
    user_id = user["id"]

    by_external = await scim.get("/Users", params={"filter": 'externalId eq "e-42"'})
    assert [r["id"] for r in by_external.json()["Resources"]] == [user_id]

    # Entra's PATCH: capitalised ops, string booleans, dotted keys, URN paths, valuePath adds.
    update = {
        "schemas": [PATCH_OP],
        "Operations": [
            {"op": "Replace", "value": {"name.givenName": "Amazing", "name.familyName": "Grace"}},
            {"op": "Add", "path": 'emails[type eq "work"].value', "value": "grace.hopper@contoso.com"},
            {"op": "Add", "path": 'phoneNumbers[type eq "mobile"].value', "value": "+1 555 0100"},
            {"op": "Replace", "path": f"{ENTERPRISE}:manager", "value": "mgr-2"},
            {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": "Computing"},
        ],
    }
    patched = await scim.patch(f"/Users/{user_id}", json=update)
    assert patched.status_code == 200, patched.text
    user = patched.json()
    assert user["name"]["givenName"] == "Amazing" and user["name"]["familyName"] == "Grace"
    assert [e["value"] for e in user["emails"]] == ["grace.hopper@contoso.com"]
    assert user["phoneNumbers"] == [{"type": "mobile", "value": "+1 555 0100"}]
    assert user[ENTERPRISE]["manager"] == {"value": "mgr-2"} and user[ENTERPRISE]["department"] == "Computing"

    # Entra disables with a string boolean on an explicit path.
    disable = {"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}
    assert (await scim.patch(f"/Users/{user_id}", json=disable)).json()["active"] is False
    assert (await scim.get(f"/Users/{user_id}")).json()["active"] is False
    enable = {"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "value": {"active": "True"}}]}
    assert (await scim.patch(f"/Users/{user_id}", json=enable)).json()["active"] is True

    remove_manager = {"schemas": [PATCH_OP], "Operations": [{"op": "Remove", "path": f"{ENTERPRISE}:manager"}]}
    assert "manager" not in (await scim.patch(f"/Users/{user_id}", json=remove_manager)).json()[ENTERPRISE]

    assert (await scim.delete(f"/Users/{user_id}")).status_code == 204
    assert (await scim.get(f"/Users/{user_id}")).status_code == 404


async def test_entra_excluded_attributes_and_case_insensitive_filter(scim: httpx.AsyncClient) -> None:
    await scim.post("/Users", json={"userName": "casey@contoso.com", "displayName": "Casey"})
    response = await scim.get(
        "/Users", params={"filter": 'USERNAME EQ "Casey@Contoso.com"', "excludedAttributes": "emails,name"}
    )
    resource = response.json()["Resources"][0]
    assert resource["displayName"] == "Casey" and "name" not in resource
    only = await scim.get("/Users", params={"filter": 'userName eq "casey@contoso.com"', "attributes": "userName"})
    assert set(only.json()["Resources"][0]) == {"schemas", "id", "userName"}
