"""The console's users pages over HTTP: search by userName or email, by state, and a deleted person's timeline."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from consumers.runtime.database import apply_schema
from service.store import directory, users
from tests.integration.admin_helpers import signed_in
from tests.integration.conftest import ROOT, TenantInfo

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_users_are_found_by_username_or_email_and_state_and_deleted_people_stay_erased(
    scim: httpx.AsyncClient, tenant: TenantInfo, db: Any, api_url: str
) -> None:
    ada = (
        await scim.post(
            "/Users", json={"schemas": [USER], "userName": "ada", "emails": [{"value": "ada.l@example.com"}]}
        )
    ).json()["id"]
    await scim.post("/Users", json={"schemas": [USER], "userName": "bob_100%", "active": False})
    gone = (await scim.post("/Users", json={"schemas": [USER], "userName": "carol@example.com"})).json()["id"]
    assert (await scim.delete(f"/Users/{gone}")).status_code == 204
    admin = await signed_in(db, api_url, tenant.id)
    users = f"/admin/tenants/{tenant.id}/users"

    by_email = (await admin.get(users, params={"q": "ADA.L@"})).text
    assert f"/users/{ada}" in by_email and "bob_100%" not in by_email
    assert "bob_100%" in (await admin.get(users, params={"q": "_100%"})).text  # LIKE wildcards are literal
    deactivated = (await admin.get(users, params={"state": "deactivated"})).text
    assert "bob_100%" in deactivated and f"/users/{ada}" not in deactivated
    deleted = (await admin.get(users, params={"state": "deleted"})).text
    assert f"/users/{gone}" in deleted and "carol" not in deleted

    page = await admin.get(f"{users}/{gone}")
    assert page.status_code == 200 and "Deleted user" in page.text and "carol" not in page.text
    assert "details erased" in page.text and page.text.count("not yet") == 4  # no consumer ran in this test
    assert page.text.count("booking: not yet") == page.text.count("workspace: not yet") == 2  # the wording
    assert (await admin.get(f"{users}/not-a-uuid")).status_code == 404
    await admin.aclose()


async def test_what_an_identity_provider_sends_is_shown_escaped(
    scim: httpx.AsyncClient, tenant: TenantInfo, db: Any, api_url: str
) -> None:
    hostile = '<img src=x onerror="alert(1)">@example.com'
    uid = (await scim.post("/Users", json={"schemas": [USER], "userName": hostile})).json()["id"]
    await scim.post("/Users", json={"schemas": [USER], "userName": hostile})  # 409: shown in the activity
    admin = await signed_in(db, api_url, tenant.id)
    for path in (f"users?q={uid[:0]}", f"users/{uid}", "activity?errors=1"):
        page = await admin.get(f"/admin/tenants/{tenant.id}/{path}")
        assert "<img src=x" not in page.text
    assert "&lt;img src=x" in (await admin.get(f"/admin/tenants/{tenant.id}/users/{uid}")).text
    await admin.aclose()


async def test_a_search_is_served_by_the_trigram_indexes_not_a_scan_of_the_tenant(db: Any, tenant: TenantInfo) -> None:
    """At a million users a "contains" read the whole tenant (~4 s a page); bench.admin_search measures it."""
    key = uuid.UUID(tenant.id)
    rows = [
        users.row(key, uuid.uuid4(), {"userName": f"u{i}@example.com", "emails": [{"value": f"m{i}@example.org"}]}, T0)
        for i in range(300)
    ]
    await db.copy_records_to_table("users", records=rows, columns=list(users.ROW_COLUMNS))
    await db.execute("ANALYZE users")
    listing = directory.USERS_SEARCH
    async with db.transaction():
        # A small table: ask whether an index CAN serve the search (else the planner rightly reads it all).
        await db.execute("SET LOCAL enable_seqscan = off")
        await db.execute("SET LOCAL enable_indexscan = off")  # the ordered userName index would serve any filter
        found = await db.fetch(
            f"EXPLAIN SELECT {listing.select} {listing.source} WHERE {listing.tenant} AND ({listing.where})",
            key,
            "%i12@%",
            None,
        )
    plan = "\n".join(r[0] for r in found)
    assert "users_user_name_trgm" in plan and "users_emails_trgm" in plan, plan


async def test_sync_health_names_the_changes_a_service_has_not_applied_after_five_minutes(
    scim: httpx.AsyncClient, tenant: TenantInfo, db: Any, api_url: str
) -> None:
    for schema in ("booking", "workspace"):  # as if both consumers had started once
        await apply_schema(db, ROOT / "consumers" / schema / "schema.sql")
    uid = (await scim.post("/Users", json={"schemas": [USER], "userName": "stuck@example.com"})).json()["id"]
    key = uuid.UUID(tenant.id)
    # Published ten minutes ago (no relay runs here); booking applied both, workspace neither (dead-lettered, say).
    await db.execute("UPDATE events SET published_at = now() - interval '10 minutes' WHERE tenant_id = $1", key)
    await db.execute("INSERT INTO booking.users (tenant_id, user_id, version) VALUES ($1, $2, 1)", key, uuid.UUID(uid))
    admin = await signed_in(db, api_url, tenant.id)
    page = (await admin.get(f"/admin/tenants/{tenant.id}/health")).text
    services, _, stuck = page.partition('id="stuck"')
    rows = dict(re.findall(r"<tr>\s*<td>(booking|workspace)</td>(.*?)</tr>", services, re.S))
    assert "OK" in rows["booking"] and "Stuck" in rows["workspace"]
    assert "workspace" in stuck and "booking" not in stuck
    assert f'href="/admin/tenants/{tenant.id}/users/{uid}"' in stuck and "user.created" in stuck
    await admin.aclose()
