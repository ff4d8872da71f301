"""`/Groups` as Okta (Push Groups) and Entra ID use it, end to end over HTTP, real Postgres; events in the outbox."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from service.store import tenants

from .conftest import TenantInfo
from .test_scim_protocol import assert_scim_error

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


async def make_users(scim: httpx.AsyncClient, *names: str) -> list[str]:
    ids = []
    for name in names:
        response = await scim.post("/Users", json={"userName": f"{name}@example.com", "displayName": name.title()})
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def member_ids(group: dict[str, Any]) -> list[str]:
    return sorted(m["value"] for m in group.get("members", []))


async def events(db: Any, group_id: str) -> list[tuple[str, int, dict[str, Any]]]:
    rows = await db.fetch(
        "SELECT type, version, data FROM events WHERE aggregate = 'group' AND subject = $1 ORDER BY sequence",
        uuid.UUID(group_id),
    )
    return [(r["type"], r["version"], r["data"]) for r in rows]


async def membership_rows(db: Any, group_id: str) -> int:
    return int(await db.fetchval("SELECT count(*) FROM group_members WHERE group_id = $1", uuid.UUID(group_id)))


async def test_okta_push_groups(scim: httpx.AsyncClient, tenant: TenantInfo, db: Any) -> None:
    ada, bob, cy, dee = await make_users(scim, "ada", "bob", "cy", "dee")

    # Okta looks the group up by name first, then creates it with its members.
    empty = await scim.get("/Groups", params={"filter": 'displayName eq "Floor 3"', "startIndex": 1, "count": 100})
    assert empty.status_code == 200 and empty.json()["totalResults"] == 0
    created = await scim.post(
        "/Groups",
        json={
            "schemas": [GROUP],
            "displayName": "Floor 3",
            "members": [{"value": ada, "display": "ada@example.com"}, {"value": bob, "display": "bob@example.com"}],
        },
    )
    assert created.status_code == 201, created.text
    group = created.json()
    gid = group["id"]
    assert created.headers["location"] == group["meta"]["location"] == f"{tenant.base_url}/Groups/{gid}"
    assert created.headers["etag"] == group["meta"]["version"] == 'W/"1"'
    assert group["schemas"] == [GROUP] and group["meta"]["resourceType"] == "Group"
    assert member_ids(group) == sorted([ada, bob])
    first = next(m for m in group["members"] if m["value"] == ada)
    assert first == {"value": ada, "type": "User", "$ref": f"{tenant.base_url}/Users/{ada}"}
    # `display` (the user's displayName, else userName) is `returned: request`.
    shown = (
        await scim.get(f"/Groups/{gid}", params={"attributes": "displayName,members.value,members.display"})
    ).json()
    assert sorted(shown["members"], key=lambda m: m["display"]) == [
        {"value": ada, "display": "Ada"},
        {"value": bob, "display": "Bob"},
    ]

    # One PATCH as Okta sends a membership change: the no-path {id, displayName} replace, a remove, an add.
    body = patch(
        {"op": "replace", "value": {"id": gid, "displayName": "Floor 3"}},
        {"op": "remove", "path": f'members[value eq "{ada}"]'},
        {"op": "add", "path": "members", "value": [{"value": cy, "display": "cy@example.com"}]},
    )
    patched = await scim.patch(f"/Groups/{gid}", json=body)
    assert patched.status_code == 204 and patched.content == b"", patched.text  # no 10k-member echo
    assert patched.headers["etag"] == 'W/"2"'
    shown = (await scim.get(f"/Groups/{gid}")).json()
    assert member_ids(shown) == sorted([bob, cy]) and shown["displayName"] == "Floor 3"

    # The same PATCH again changes nothing: no new version, no event.
    again = await scim.patch(f"/Groups/{gid}", json=body)
    assert again.status_code == 204 and again.headers["etag"] == 'W/"2"'

    # Rename and a full-list replace in one request: two events, two versions.
    renamed = await scim.patch(
        f"/Groups/{gid}",
        json=patch(
            {"op": "replace", "value": {"id": gid, "displayName": "Floor Three"}},
            {"op": "replace", "path": "members", "value": [{"value": cy}, {"value": dee}]},
        ),
    )
    assert renamed.status_code == 204, renamed.text
    assert renamed.headers["etag"] == 'W/"4"'
    shown = (await scim.get(f"/Groups/{gid}")).json()
    assert shown["displayName"] == "Floor Three" and member_ids(shown) == sorted([cy, dee])

    # PUT, as apps configured for it do: attributes and the full member list.
    put = await scim.put(
        f"/Groups/{gid}", json={"schemas": [GROUP], "displayName": "Floor 3", "externalId": "00g1", "members": []}
    )
    assert put.status_code == 200, put.text
    assert put.json()["externalId"] == "00g1" and "members" not in put.json()
    assert (await scim.get(f"/Groups/{gid}")).json()["meta"]["version"] == 'W/"6"'

    deleted = await scim.delete(f"/Groups/{gid}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert_scim_error(await scim.get(f"/Groups/{gid}"), 404)
    assert await membership_rows(db, gid) == 0

    log = await events(db, gid)
    assert [(t, v) for t, v, _ in log] == [
        ("group.created", 1),
        ("group.membership_changed", 2),
        ("group.updated", 3),
        ("group.membership_changed", 4),
        ("group.updated", 5),
        ("group.membership_changed", 6),
        ("group.deleted", 7),
    ]
    data = [d for _, _, d in log]
    assert data[0] == {"id": gid, "displayName": "Floor 3", "externalId": None, "members": [ada, bob]}
    assert data[1] == {"id": gid, "added": [cy], "removed": [ada]}
    assert data[2] == {"id": gid, "displayName": "Floor Three", "externalId": None}
    assert data[3]["added"] == [dee] and data[3]["removed"] == [bob]
    assert data[4] == {"id": gid, "displayName": "Floor 3", "externalId": "00g1"}
    assert data[5]["added"] == [] and sorted(data[5]["removed"]) == sorted([cy, dee])
    assert data[6] == {"id": gid}


async def test_entra_group_provisioning(scim: httpx.AsyncClient, db: Any) -> None:
    ada, bob = await make_users(scim, "grace", "alan")
    # Entra: look up by displayName without members, create, then Add/Remove with capitalised ops.
    lookup = {"excludedAttributes": "members", "filter": 'displayName eq "Navy Team"'}
    assert (await scim.get("/Groups", params=lookup)).json()["totalResults"] == 0
    created = await scim.post("/Groups", json={"schemas": [GROUP], "displayName": "Navy Team", "externalId": "e-1"})
    assert created.status_code == 201, created.text
    gid = created.json()["id"]
    assert "members" not in created.json()

    add = patch({"op": "Add", "path": "members", "value": [{"$ref": None, "value": ada}, {"$ref": None, "value": bob}]})
    response = await scim.patch(f"/Groups/{gid}", json=add, params={"attributes": "members"})
    assert response.status_code == 200, response.text  # asked for: the group comes back
    assert member_ids(response.json()) == sorted([ada, bob])

    found = (await scim.get("/Groups", params={**lookup, "filter": 'DISPLAYNAME eq "navy team"'})).json()
    assert found["totalResults"] == 1
    assert set(found["Resources"][0]) == {"schemas", "id", "displayName", "externalId", "meta"}

    remove = patch({"op": "Remove", "path": "members", "value": [{"value": ada}]})
    response = await scim.patch(f"/Groups/{gid}", json=remove, params={"excludedAttributes": "members"})
    assert response.status_code == 200 and "members" not in response.json()
    assert member_ids((await scim.get(f"/Groups/{gid}")).json()) == [bob]

    rename = patch({"op": "Replace", "path": "displayName", "value": "Navy"})
    assert (await scim.patch(f"/Groups/{gid}", json=rename)).status_code == 204
    assert (await scim.get(f"/Groups/{gid}")).json()["displayName"] == "Navy"
    # Removing an absent member and adding a present one are no-ops, not errors.
    noop = patch(
        {"op": "Remove", "path": "members", "value": [{"value": ada}]},
        {"op": "Add", "path": "members", "value": [{"value": bob}]},
    )
    response = await scim.patch(f"/Groups/{gid}", json=noop)
    assert response.status_code == 204 and response.headers["etag"] == 'W/"4"'

    # Filters Entra and others use: members, externalId, id.
    for flt in (f'members[value eq "{bob}"]', f'members.value eq "{bob}"', 'externalId eq "e-1"', f'id eq "{gid}"'):
        listed = (await scim.get("/Groups", params={"filter": flt})).json()
        assert [g["id"] for g in listed["Resources"]] == [gid], flt
    assert (await scim.get("/Groups", params={"filter": f'members[value eq "{ada}"]'})).json()["totalResults"] == 0
    assert (await scim.get("/Groups", params={"filter": "members pr"})).json()["totalResults"] == 1
    assert [(t, v) for t, v, _ in await events(db, gid)] == [
        ("group.created", 1),
        ("group.membership_changed", 2),
        ("group.membership_changed", 3),
        ("group.updated", 4),
    ]


async def test_unknown_foreign_or_nested_members_are_400_and_change_nothing(
    scim: httpx.AsyncClient, db: Any, api_url: str
) -> None:
    (ada,) = await make_users(scim, "ada")
    other, other_token = await tenants.create(db, "other")
    async with httpx.AsyncClient(
        base_url=f"{api_url}/scim/v2/{other.id}", headers={"Authorization": f"Bearer {other_token}"}
    ) as client:
        foreign = (await client.post("/Users", json={"userName": "ada@example.com"})).json()["id"]
        other_group = (await client.post("/Groups", json={"displayName": "Other"})).json()["id"]
    gid = (await scim.post("/Groups", json={"displayName": "Team", "members": [{"value": ada}]})).json()["id"]
    before = await events(db, gid)
    bad_members = [
        [{"value": str(uuid.uuid4())}],  # no such user
        [{"value": foreign}],  # another tenant's user
        [{"value": "not-a-uuid"}],
        [{"value": other_group, "type": "Group"}],  # nested groups are not supported
        [{"display": "no value"}, {"value": 7}],
    ]
    for members in bad_members:
        assert_scim_error(
            await scim.post("/Groups", json={"displayName": "New", "members": members}), 400, "invalidValue"
        )
        mixed = patch(
            {"op": "replace", "path": "displayName", "value": "Renamed"},
            {"op": "add", "path": "members", "value": members},
        )
        assert_scim_error(await scim.patch(f"/Groups/{gid}", json=mixed), 400, "invalidValue")
        replace = {"displayName": "Renamed", "members": members}
        assert_scim_error(await scim.put(f"/Groups/{gid}", json=replace), 400, "invalidValue")
    remove_bad = patch({"op": "remove", "path": 'members[value eq "nope"]'})
    assert_scim_error(await scim.patch(f"/Groups/{gid}", json=remove_bad), 400, "invalidValue")
    group = (await scim.get(f"/Groups/{gid}")).json()
    assert group["displayName"] == "Team" and member_ids(group) == [ada] and group["meta"]["version"] == 'W/"1"'
    assert await events(db, gid) == before
    assert (await scim.get("/Groups")).json()["totalResults"] == 1
    assert_scim_error(await scim.get(f"/Groups/{other_group}"), 404)
    assert_scim_error(await scim.delete(f"/Groups/{other_group}"), 404)
    assert_scim_error(await scim.patch(f"/Groups/{other_group}", json=patch({"op": "remove", "path": "members"})), 404)


async def test_groups_are_isolated_between_tenants(
    scim: httpx.AsyncClient, tenant: TenantInfo, db: Any, api_url: str
) -> None:
    assert (await scim.post("/Groups", json={"displayName": "Same"})).status_code == 201
    other, other_token = await tenants.create(db, "other")
    async with httpx.AsyncClient(base_url=f"{api_url}/scim/v2/{other.id}") as client:
        # A token only works on its own tenant; the same displayName in another tenant is fine.
        assert_scim_error(await client.get("/Groups", headers=tenant.headers), 401)
        own = {"Authorization": f"Bearer {other_token}"}
        assert (await client.post("/Groups", json={"displayName": "Same"}, headers=own)).status_code == 201
        assert (await client.get("/Groups", headers=own)).json()["totalResults"] == 1
    assert (await scim.get("/Groups")).json()["totalResults"] == 1


async def test_deleting_a_user_removes_it_from_every_group(scim: httpx.AsyncClient, db: Any) -> None:
    ada, bob = await make_users(scim, "ada", "bob")
    one = (await scim.post("/Groups", json={"displayName": "One", "members": [{"value": ada}, {"value": bob}]})).json()
    two = (await scim.post("/Groups", json={"displayName": "Two", "members": [{"value": ada}]})).json()
    three = (await scim.post("/Groups", json={"displayName": "Three", "members": [{"value": bob}]})).json()
    assert (await scim.delete(f"/Users/{ada}")).status_code == 204
    assert member_ids((await scim.get(f"/Groups/{one['id']}")).json()) == [bob]
    assert "members" not in (await scim.get(f"/Groups/{two['id']}")).json()
    for group in (one, two):
        log = await events(db, group["id"])
        assert log[-1] == ("group.membership_changed", 2, {"id": group["id"], "added": [], "removed": [ada]})
        assert (await scim.get(f"/Groups/{group['id']}")).headers["etag"] == 'W/"2"'
    assert [t for t, _, _ in await events(db, three["id"])] == ["group.created"]


async def test_events_for_every_write_with_increasing_versions(scim: httpx.AsyncClient, db: Any) -> None:
    users = await make_users(scim, *(f"u{i}" for i in range(6)))
    gid = (await scim.post("/Groups", json={"displayName": "Ev", "members": [{"value": users[0]}]})).json()["id"]
    writes = [
        patch({"op": "add", "path": "members", "value": [{"value": u} for u in users[1:4]]}),
        patch({"op": "add", "value": {"members": [{"value": users[4]}], "externalId": "x"}}),
        patch({"op": "remove", "path": f'members[value eq "{users[1]}" or value eq "{users[2]}"]'}),
        patch({"op": "add", "path": "members", "value": [{"value": users[5]}]}, {"op": "remove", "path": "members"}),
        patch({"op": "replace", "value": {"members": [{"value": users[0]}]}}),
    ]
    for body in writes:
        response = await scim.patch(f"/Groups/{gid}", json=body)
        assert response.status_code == 204, response.text
    log = await events(db, gid)
    versions = [v for _, v, _ in log]
    assert versions == list(range(1, len(log) + 1))
    membership = [(sorted(d["added"]), sorted(d["removed"])) for t, _, d in log if t == "group.membership_changed"]
    assert membership == [
        (sorted(users[1:4]), []),
        ([users[4]], []),
        ([], sorted(users[1:3])),
        ([], sorted([users[0], users[3], users[4]])),
        ([users[0]], []),
    ]
    assert [t for t, _, _ in log].count("group.updated") == 1  # externalId set once
    assert member_ids((await scim.get(f"/Groups/{gid}")).json()) == [users[0]]


async def test_twenty_concurrent_creates_race_to_one_201(tenant: TenantInfo, db: Any) -> None:
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=tenant.base_url, headers=tenant.headers, limits=limits, timeout=30) as client:
        names = ["Race", "race", "RACE", "rAce"] * 5
        responses = await asyncio.gather(*(client.post("/Groups", json={"displayName": n}) for n in names))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [409] * 19
        for response in responses:
            if response.status_code == 409:
                assert_scim_error(response, 409, "uniqueness")
        # Renaming onto a taken name is the same conflict.
        other = (await client.post("/Groups", json={"displayName": "Other"})).json()["id"]
        rename = patch({"op": "replace", "path": "displayName", "value": "RACE"})
        assert_scim_error(await client.patch(f"/Groups/{other}", json=rename), 409, "uniqueness")
    count = await db.fetchval("SELECT count(*) FROM groups WHERE tenant_id = $1", uuid.UUID(tenant.id))
    assert count == 2


async def test_paging_search_projection_if_match_and_errors(scim: httpx.AsyncClient) -> None:
    (ada,) = await make_users(scim, "ada")
    ids = []
    for name in ("Charlie", "alpha", "Bravo"):
        response = await scim.post("/Groups", json={"displayName": name, "members": [{"value": ada}]})
        ids.append(response.json()["id"])
    page = (await scim.get("/Groups", params={"startIndex": 2, "count": 1})).json()
    assert (page["totalResults"], page["startIndex"], page["itemsPerPage"]) == (3, 2, 1)
    assert page["Resources"][0]["id"] == ids[1]
    search = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "sortBy": "displayName",
        "sortOrder": "descending",
        "attributes": ["displayName"],
    }
    found = (await scim.post("/Groups/.search", json=search)).json()
    assert [g["displayName"] for g in found["Resources"]] == ["Charlie", "Bravo", "alpha"]
    assert set(found["Resources"][0]) == {"schemas", "id", "displayName"}
    only = (await scim.get(f"/Groups/{ids[0]}", params={"attributes": "members.value"})).json()
    assert only["members"] == [{"value": ada}]

    url = f"/Groups/{ids[0]}"
    rename = patch({"op": "replace", "path": "displayName", "value": "Charles"})
    assert_scim_error(await scim.patch(url, json=rename, headers={"If-Match": 'W/"7"'}), 412)
    assert_scim_error(await scim.delete(url, headers={"If-Match": 'W/"7"'}), 412)
    assert (await scim.patch(url, json=rename, headers={"If-Match": 'W/"1"'})).headers["etag"] == 'W/"2"'

    assert_scim_error(await scim.post("/Groups", json={"members": []}), 400, "invalidValue")
    assert_scim_error(await scim.patch(url, json=patch({"op": "remove", "path": "displayName"})), 400, "invalidValue")
    bad_path = patch({"op": "replace", "path": f'members[value eq "{ada}"].display', "value": "x"})
    assert_scim_error(await scim.patch(url, json=bad_path), 400, "invalidPath")
    assert_scim_error(await scim.get("/Groups", params={"filter": 'members.display eq "x"'}), 400, "invalidFilter")
    assert_scim_error(await scim.get("/Groups", params={"sortBy": "members"}), 400, "invalidValue")
    assert_scim_error(await scim.get("/Groups/not-a-uuid"), 404)
    assert_scim_error(await scim.patch(url, json={"Operations": []}), 400, "invalidSyntax")


async def test_discovery_lists_groups(scim: httpx.AsyncClient) -> None:
    types = (await scim.get("/ResourceTypes")).json()
    group_type = next(t for t in types["Resources"] if t["name"] == "Group")
    assert group_type["endpoint"] == "/Groups" and group_type["schema"] == GROUP
    schema = (await scim.get(f"/Schemas/{GROUP}")).json()
    attributes = {a["name"]: a for a in schema["attributes"]}
    assert attributes["displayName"]["required"] is True
    subs = {s["name"]: s for s in attributes["members"]["subAttributes"]}
    assert subs["value"]["mutability"] == "immutable" and subs["type"]["canonicalValues"] == ["User", "Group"]


async def test_a_user_deleted_while_its_group_is_patched_leaves_no_member_and_no_gap(
    scim: httpx.AsyncClient, db: Any
) -> None:
    gid = (await scim.post("/Groups", json={"displayName": "Race"})).json()["id"]
    for i in range(20):
        (uid,) = await make_users(scim, f"race{i}")
        assert (
            await scim.patch(f"/Groups/{gid}", json=patch({"op": "add", "path": "members", "value": [{"value": uid}]}))
        ).status_code == 204
        # Okta re-pushes the full list while the user is being deleted: no deadlock, no 500, no lost event.
        readd = patch({"op": "replace", "path": "members", "value": [{"value": uid}]})
        patched, deleted = await asyncio.gather(scim.patch(f"/Groups/{gid}", json=readd), scim.delete(f"/Users/{uid}"))
        assert patched.status_code in (204, 400) and deleted.status_code == 204, (patched.text, deleted.text)
    assert await membership_rows(db, gid) == 0
    log = await events(db, gid)
    assert [v for _, v, _ in log] == list(range(1, len(log) + 1))
    added = sorted(u for t, _, d in log if t == "group.membership_changed" for u in d["added"])
    removed = sorted(u for t, _, d in log if t == "group.membership_changed" for u in d["removed"])
    assert added == removed and len(added) == 20
