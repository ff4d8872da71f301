"""`POST /.search` at the root (RFC 7644 §3.4.3): Users and Groups in one ListResponse, real API and Postgres."""

from __future__ import annotations

from typing import Any

import httpx

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


async def search(scim: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await scim.post("/.search", json={"schemas": [SEARCH], **body})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    return dict(response.json())


def labels(page: dict[str, Any]) -> list[str]:
    return [r.get("userName") or r.get("displayName") or r["id"] for r in page["Resources"]]


async def test_users_then_groups_in_creation_order_with_stable_paging(scim: httpx.AsyncClient) -> None:
    ids = {}
    for name in ("carol", "alice", "bob"):
        ids[name] = (await scim.post("/Users", json={"userName": name, "displayName": name.title()})).json()["id"]
    for name in ("Zeta", "Alpha"):
        body = {"displayName": name, "members": [{"value": ids["alice"]}]}
        assert (await scim.post("/Groups", json=body)).status_code == 201

    everything = await search(scim)
    assert labels(everything) == ["carol", "alice", "bob", "Zeta", "Alpha"]
    assert (everything["totalResults"], everything["startIndex"], everything["itemsPerPage"]) == (5, 1, 5)
    assert [r["schemas"][0] for r in everything["Resources"]] == [USER, USER, USER, GROUP, GROUP]
    assert everything["Resources"][3]["members"] == [
        {"value": ids["alice"], "$ref": everything["Resources"][3]["members"][0]["$ref"], "type": "User"}
    ]

    # Pages of two cover everything exactly once.
    pages = [labels(await search(scim, startIndex=start, count=2)) for start in (1, 3, 5)]
    assert pages == [["carol", "alice"], ["bob", "Zeta"], ["Alpha"]]
    past = await search(scim, startIndex=9, count=2)
    assert (past["totalResults"], past["Resources"]) == (5, [])
    assert (await search(scim, count=0))["totalResults"] == 5

    # sortBy an attribute both types have (displayName): merged, ties Users before Groups.
    by_name = await search(scim, sortBy="displayName")
    assert labels(by_name) == ["alice", "Alpha", "bob", "carol", "Zeta"]  # case-insensitive: Alice < Alpha
    by_name_desc = await search(scim, sortBy="displayName", sortOrder="descending", count=2)
    assert labels(by_name_desc) == ["Zeta", "carol"]
    # sortBy an attribute of Users only: groups last.
    assert labels(await search(scim, sortBy="userName")) == ["alice", "bob", "carol", "Zeta", "Alpha"]


async def test_filters_and_projection_across_types(scim: httpx.AsyncClient) -> None:
    ada = (await scim.post("/Users", json={"userName": "ada", "displayName": "Team Ada", "externalId": "x1"})).json()
    await scim.post("/Users", json={"userName": "bob", "displayName": "Bob"})
    await scim.post(
        "/Groups", json={"displayName": "Team Rocket", "externalId": "x1", "members": [{"value": ada["id"]}]}
    )

    assert labels(await search(scim, filter='displayName sw "team"')) == ["ada", "Team Rocket"]
    assert labels(await search(scim, filter='externalId eq "x1"')) == ["ada", "Team Rocket"]
    assert labels(await search(scim, filter='meta.resourceType eq "Group"')) == ["Team Rocket"]
    # An attribute only Users have: no group can match it; one only Groups have: no user.
    assert labels(await search(scim, filter='userName eq "bob"')) == ["bob"]
    assert labels(await search(scim, filter=f'members[value eq "{ada["id"]}"]')) == ["Team Rocket"]
    # Projection per resource type.
    projected = await search(scim, attributes=["displayName"], filter='displayName sw "team"')
    assert [sorted(r) for r in projected["Resources"]] == [["displayName", "id", "schemas"]] * 2
    excluded = await search(scim, excludedAttributes=["members", "emails"], filter='meta.resourceType eq "Group"')
    assert "members" not in excluded["Resources"][0]


async def test_bad_requests(scim: httpx.AsyncClient) -> None:
    response = await scim.post("/.search", json={"filter": 'nosuch eq "x"'})
    assert response.status_code == 400 and response.json()["scimType"] == "invalidFilter"
    response = await scim.post("/.search", json={"filter": "userName eq"})
    assert response.status_code == 400 and response.json()["scimType"] == "invalidFilter"
    response = await scim.post("/.search", json={"sortBy": "nosuch"})
    assert response.status_code == 400 and response.json()["scimType"] == "invalidValue"
    response = await scim.post("/.search", json={"schemas": ["urn:x"]})
    assert response.status_code == 400
    assert (await scim.get("/.search")).status_code == 405
