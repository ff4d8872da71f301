"""The workplace extension schema over HTTP (real API and Postgres) and through the whole pipeline to both domains."""

from __future__ import annotations

import subprocess
from typing import Any

import httpx

from .conftest import TenantInfo
from .test_consumers_helpers import ConsumerEnv, db_connect, eventually

WORKPLACE = "urn:ietf:params:scim:schemas:extension:workplace:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


async def create(scim: httpx.AsyncClient, user_name: str, **workplace: str) -> dict[str, Any]:
    response = await scim.post(
        "/Users", json={"schemas": [USER, WORKPLACE], "userName": user_name, WORKPLACE: workplace}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_advertised_in_schemas_and_resource_types(scim: httpx.AsyncClient) -> None:
    schema = (await scim.get(f"/Schemas/{WORKPLACE}")).json()
    attributes = {a["name"]: a for a in schema["attributes"]}
    assert list(attributes) == ["site", "building", "floor", "team", "bookingRole"]
    assert all(a["type"] == "string" and a["multiValued"] is False for a in attributes.values())
    assert attributes["bookingRole"]["canonicalValues"] == ["employee", "teamLead", "facilityManager"]
    listed = {s["id"] for s in (await scim.get("/Schemas")).json()["Resources"]}
    assert WORKPLACE in listed
    user_type = (await scim.get("/ResourceTypes/User")).json()
    assert {"schema": WORKPLACE, "required": False} in user_type["schemaExtensions"]


async def test_stored_rendered_and_filterable(scim: httpx.AsyncClient) -> None:
    ada = await create(scim, "ada@example.com", site="HQ", building="North", floor="4", team="Compilers")
    assert ada["schemas"] == [USER, WORKPLACE]
    assert ada[WORKPLACE] == {"site": "HQ", "building": "North", "floor": "4", "team": "Compilers"}
    await create(scim, "bob@example.com", site="Annex", bookingRole="TEAMLEAD")
    got = (await scim.get(f"/Users/{ada['id']}")).json()
    assert got[WORKPLACE]["floor"] == "4"

    async def names(filter_: str) -> list[str]:
        response = await scim.get("/Users", params={"filter": filter_})
        assert response.status_code == 200, response.text
        return [r["userName"] for r in response.json()["Resources"]]

    assert await names(f'{WORKPLACE}:site eq "hq"') == ["ada@example.com"]
    assert await names(f'{WORKPLACE}:bookingRole eq "teamLead"') == ["bob@example.com"]  # stored canonical
    assert await names(f"{WORKPLACE}:floor pr") == ["ada@example.com"]
    assert await names(f'{WORKPLACE}:site eq "Annex" or {WORKPLACE}:team sw "Comp"') == [
        "ada@example.com",
        "bob@example.com",
    ]
    sorted_ = await scim.get("/Users", params={"sortBy": f"{WORKPLACE}:site"})
    assert [r["userName"] for r in sorted_.json()["Resources"]] == ["bob@example.com", "ada@example.com"]
    only = await scim.get(f"/Users/{ada['id']}", params={"attributes": f"{WORKPLACE}:site"})
    assert only.json()[WORKPLACE] == {"site": "HQ"}


async def test_booking_role_outside_its_values_is_refused(scim: httpx.AsyncClient) -> None:
    response = await scim.post("/Users", json={"userName": "x@example.com", WORKPLACE: {"bookingRole": "admin"}})
    assert response.status_code == 400 and response.json()["scimType"] == "invalidValue"
    assert "employee, teamLead, facilityManager" in response.json()["detail"]
    user = await create(scim, "y@example.com", bookingRole="employee")
    refused = await scim.patch(
        f"/Users/{user['id']}", json=patch({"op": "replace", "path": f"{WORKPLACE}:bookingRole", "value": "boss"})
    )
    assert refused.status_code == 400 and refused.json()["scimType"] == "invalidValue"


async def test_patch_in_oktas_and_entras_forms(scim: httpx.AsyncClient) -> None:
    user = await create(scim, "grace@example.com", site="HQ")
    uid = user["id"]

    async def apply(*operations: dict[str, Any]) -> dict[str, Any]:
        response = await scim.patch(f"/Users/{uid}", json=patch(*operations))
        assert response.status_code == 200, response.text
        return dict(response.json()[WORKPLACE])

    # Okta: the attribute's full URN as the path.
    assert await apply({"op": "replace", "path": f"{WORKPLACE}:site", "value": "Annex"}) == {"site": "Annex"}
    # Okta: add to an absent attribute; the whole extension as the path with an object value.
    assert await apply({"op": "add", "path": f"{WORKPLACE}:floor", "value": "2"}) == {"site": "Annex", "floor": "2"}
    assert await apply({"op": "replace", "path": WORKPLACE, "value": {"team": "Navy"}}) == {
        "site": "Annex",
        "floor": "2",
        "team": "Navy",
    }
    # Entra: capitalised op, no path, the qualified attribute name as the key.
    assert await apply({"op": "Replace", "value": {f"{WORKPLACE}:building": "B2", f"{WORKPLACE}:floor": "3"}}) == {
        "site": "Annex",
        "floor": "3",
        "team": "Navy",
        "building": "B2",
    }
    # Entra / Okta: no path, the extension URN as the key with an object.
    assert (await apply({"op": "Add", "value": {WORKPLACE: {"bookingRole": "facilitymanager"}}}))["bookingRole"] == (
        "facilityManager"
    )
    # Removing by path; an empty string clears too.
    removed = await apply(
        {"op": "Remove", "path": f"{WORKPLACE}:team"}, {"op": "replace", "path": f"{WORKPLACE}:building", "value": ""}
    )
    assert removed == {"site": "Annex", "floor": "3", "bookingRole": "facilityManager"}
    # Removing the whole extension drops it from `schemas` too.
    response = await scim.patch(f"/Users/{uid}", json=patch({"op": "remove", "path": WORKPLACE}))
    assert WORKPLACE not in response.json() and response.json()["schemas"] == [USER]


async def test_applied_by_both_domains_through_the_pipeline(
    env: ConsumerEnv, pipeline: list[subprocess.Popen[bytes]], scim: httpx.AsyncClient, tenant: TenantInfo
) -> None:
    manager = (await scim.post("/Users", json={"userName": "boss@example.com"})).json()["id"]
    created = await scim.post(
        "/Users",
        json={
            "schemas": [USER, ENTERPRISE, WORKPLACE],
            "userName": "ada@example.com",
            ENTERPRISE: {"department": "R&D", "manager": {"value": manager}},
            WORKPLACE: {
                "site": "HQ",
                "building": "North",
                "floor": "4",
                "team": "Compilers",
                "bookingRole": "teamLead",
            },
        },
    )
    assert created.status_code == 201, created.text
    uid = created.json()["id"]
    conn = await db_connect(env)
    columns = "site, building, floor, team, department, manager_id, version"
    try:

        async def state() -> tuple[Any, Any]:
            member = await conn.fetchrow(
                f"SELECT {columns} FROM workspace.members WHERE tenant_id = $1 AND user_id = $2", tenant.id, uid
            )
            booker = await conn.fetchrow(
                "SELECT site, booking_role, version FROM booking.users WHERE tenant_id = $1 AND user_id = $2",
                tenant.id,
                uid,
            )
            return (dict(member) if member else None), (dict(booker) if booker else None)

        async def at(version: int) -> bool:
            member, booker = await state()
            return bool(member and booker and member["version"] == version and booker["version"] == version)

        await eventually(lambda: at(1), 30, "user.created applied by both domains")
        member, booker = await state()
        assert member == {
            "site": "HQ",
            "building": "North",
            "floor": "4",
            "team": "Compilers",
            "department": "R&D",
            "manager_id": manager,
            "version": 1,
        }
        assert booker == {"site": "HQ", "booking_role": "teamLead", "version": 1}

        # Entra moves them: a no-path replace with qualified keys, and the manager as a plain id.
        moved = await scim.patch(
            f"/Users/{uid}",
            json=patch(
                {
                    "op": "Replace",
                    "value": {
                        f"{WORKPLACE}:site": "Annex",
                        f"{WORKPLACE}:bookingRole": "employee",
                        f"{ENTERPRISE}:manager": uid,
                    },
                },
                {"op": "Remove", "path": f"{WORKPLACE}:team"},
            ),
        )
        assert moved.status_code == 200, moved.text
        await eventually(lambda: at(2), 30, "user.updated applied by both domains")
        member, booker = await state()
        assert (member["site"], member["team"], member["manager_id"]) == ("Annex", None, uid)
        assert booker == {"site": "Annex", "booking_role": "employee", "version": 2}
    finally:
        await conn.close()
