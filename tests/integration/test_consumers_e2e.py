"""End to end: Okta-style provisioning (users, Push Groups) through the real SCIM API, the relay, Kafka, and both
consumers.

Every piece runs as it is deployed: the API (fixture `api_url`), `python -m service.cli relay` and
`python -m consumers booking|workspace` as processes, all on this test's own topic.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from consumers.booking import service
from tests.integration.conftest import ROOT, TenantInfo
from tests.integration.test_consumers_helpers import ConsumerEnv, db_connect, eventually

DEACTIVATE = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [{"op": "replace", "value": {"active": False}}],
}
REACTIVATE = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [{"op": "replace", "value": {"active": True}}],
}
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


def next_week(hour: int) -> datetime:
    return (datetime.now(UTC) + timedelta(days=7)).replace(hour=hour, minute=0, second=0, microsecond=0)


async def test_okta_lifecycle_through_scim_ends_in_the_right_state_in_both_domains(
    env: ConsumerEnv, pipeline: list[subprocess.Popen[bytes]], scim: httpx.AsyncClient, tenant: TenantInfo
) -> None:
    conn = await db_connect(env)
    try:

        async def user_row() -> Any:
            return await conn.fetchrow(
                "SELECT * FROM booking.users WHERE tenant_id = $1 AND user_id = $2", tenant.id, uid
            )

        async def member() -> Any:
            return await conn.fetchrow(
                "SELECT * FROM workspace.members WHERE tenant_id = $1 AND user_id = $2", tenant.id, uid
            )

        async def team_matches(gid: str) -> bool:
            """workspace.teams and team_members say what GET /Groups/{id} says."""
            scim_group = (await scim.get(f"/Groups/{gid}")).json()
            team = await conn.fetchrow(
                "SELECT * FROM workspace.teams WHERE tenant_id = $1 AND group_id = $2", tenant.id, gid
            )
            rows = await conn.fetch(
                "SELECT user_id FROM workspace.team_members WHERE tenant_id = $1 AND group_id = $2", tenant.id, gid
            )
            return (
                team is not None
                and (team["display_name"], team["external_id"])
                == (scim_group["displayName"], scim_group.get("externalId"))
                and team["version"] == int(scim_group["meta"]["version"].strip('W/"'))
                and {str(r["user_id"]) for r in rows} == {m["value"] for m in scim_group.get("members", [])}
            )

        async def at_version(version: int) -> bool:
            row = await user_row()
            versions = await conn.fetchval(
                "SELECT version FROM workspace.versions WHERE tenant_id = $1 AND user_id = $2", tenant.id, uid
            )
            return row is not None and row["version"] == version and versions == version

        # Okta: look the user up, then create them (with the password and groups it doesn't expect us to keep).
        lookup = await scim.get("/Users", params={"filter": 'userName eq "grace@example.com"'})
        assert lookup.status_code == 200 and lookup.json()["totalResults"] == 0
        created = await scim.post(
            "/Users",
            json={
                "schemas": [
                    "urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
                ],
                "userName": "grace@example.com",
                "name": {"givenName": "Grace", "familyName": "Hopper"},
                "displayName": "Grace Hopper",
                "emails": [{"primary": True, "value": "grace@example.com", "type": "work"}],
                "active": True,
                "password": "not-kept-1!",
                "groups": [],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Navy"},
            },
        )
        assert created.status_code == 201, created.text
        uid = created.json()["id"]
        await eventually(lambda: at_version(1), 30, "user.created applied by both consumers")
        row = dict(await member())
        assert {k: v for k, v in row.items() if k not in ("tenant_id", "user_id", "updated_at")} == {
            "user_name": "grace@example.com",
            "display_name": "Grace Hopper",
            "given_name": "Grace",
            "family_name": "Hopper",
            "email": "grace@example.com",
            "department": "Navy",
            "manager_id": None,
            "site": None,
            "building": None,
            "floor": None,
            "team": None,
            "active": True,
            "version": 1,
        }

        # Okta Push Groups: look the group up, create it with its members, then a membership PATCH (204).
        colleague = await scim.post("/Users", json={"userName": "alan@example.com", "displayName": "Alan"})
        assert colleague.status_code == 201, colleague.text
        alan = colleague.json()["id"]
        lookup = await scim.get("/Groups", params={"filter": 'displayName eq "Floor 4"'})
        assert lookup.status_code == 200 and lookup.json()["totalResults"] == 0
        pushed = await scim.post(
            "/Groups",
            json={"schemas": [GROUP], "displayName": "Floor 4", "members": [{"value": uid, "display": "grace"}]},
        )
        assert pushed.status_code == 201, pushed.text
        gid = pushed.json()["id"]
        patched = await scim.patch(
            f"/Groups/{gid}",
            json={
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [
                    {"op": "replace", "value": {"id": gid, "displayName": "Floor 4"}},
                    {"op": "add", "path": "members", "value": [{"value": alan, "display": "alan@example.com"}]},
                ],
            },
        )
        assert patched.status_code == 204, patched.text
        await eventually(lambda: team_matches(gid), 30, "the pushed group applied as a workspace team")
        team_rows = await conn.fetch("SELECT user_id FROM workspace.team_members WHERE group_id = $1", gid)
        assert {str(r["user_id"]) for r in team_rows} == {uid, alan}

        desk = await service.add_desk(conn, tenant.id, "4.01")
        first = await service.book(conn, tenant.id, uid, desk.id, next_week(9), next_week(17))
        assert (first.status, first.booked_by_name) == ("confirmed", "Grace Hopper")

        # Okta deactivates: PATCH with no path and a value object.
        response = await scim.patch(f"/Users/{uid}", json=DEACTIVATE)
        assert response.status_code == 200 and response.json()["active"] is False
        await eventually(lambda: at_version(2), 30, "user.deactivated applied by both consumers")
        [cancelled] = await service.list_bookings(conn, tenant.id, uid)
        assert (cancelled.status, cancelled.cancel_reason) == ("cancelled", "user_deactivated")
        with pytest.raises(service.BookingRefused) as refused:
            await service.book(conn, tenant.id, uid, desk.id, next_week(9), next_week(17))
        assert refused.value.reason == "user_inactive"
        assert (await member())["active"] is False

        # Reactivated: same id, can book again; the cancelled booking stays cancelled.
        response = await scim.patch(f"/Users/{uid}", json=REACTIVATE)
        assert response.status_code == 200 and response.json()["active"] is True
        await eventually(lambda: at_version(3), 30, "user.reactivated applied by both consumers")
        second = await service.book(conn, tenant.id, uid, desk.id, next_week(9), next_week(17))
        assert second.status == "confirmed"
        assert (await member())["active"] is True

        # A profile edit (Okta PUTs the whole user).
        response = await scim.put(
            f"/Users/{uid}",
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "grace@example.com",
                "name": {"givenName": "Grace", "familyName": "Murray Hopper"},
                "displayName": "Grace Murray Hopper",
                "emails": [{"primary": True, "value": "grace@example.com", "type": "work"}],
                "active": True,
            },
        )
        assert response.status_code == 200, response.text
        await eventually(lambda: at_version(4), 30, "user.updated applied by both consumers")
        assert ((await member())["family_name"], (await member())["department"]) == ("Murray Hopper", None)

        # Removed: the member is gone, future bookings released, personal data gone from the rows kept.
        response = await scim.delete(f"/Users/{uid}")
        assert response.status_code == 204
        await eventually(lambda: at_version(5), 30, "user.deleted applied by both consumers")
        assert await member() is None
        # Grace left her team (SCIM removed her from the group; the workspace also on user.deleted).
        await eventually(lambda: team_matches(gid), 30, "the team without the deleted user")
        team_rows = await conn.fetch("SELECT user_id FROM workspace.team_members WHERE group_id = $1", gid)
        assert {str(r["user_id"]) for r in team_rows} == {alan}
        row = await user_row()
        assert (row["deleted"], row["eligible"], row["display_name"], row["email"]) == (True, False, None, None)
        bookings = {b.id: b for b in await service.list_bookings(conn, tenant.id, uid)}
        assert (bookings[first.id].status, bookings[first.id].cancel_reason) == ("cancelled", "user_deactivated")
        assert (bookings[second.id].status, bookings[second.id].cancel_reason) == ("cancelled", "user_deleted")
        assert all(b.booked_by_name is None for b in bookings.values())
        email = await conn.fetchval(
            "SELECT count(*) FROM booking.bookings WHERE booked_by_email IS NOT NULL AND user_id = $1", uid
        )
        assert email == 0
    finally:
        await conn.close()
    for name in ("booking", "workspace"):
        log = (ROOT / ".pytest_cache" / f"e2e-{name}-{env.topic}.log").read_text()
        assert "consumer.dead_lettered" not in log, f"the {name} consumer dead-lettered a relay event"
        assert "grace@example.com" not in log and "Hopper" not in log, "personal data in the consumer log"
