"""Tokens in tenant_tokens: existing tenants keep their token through migration 0008; activity pages."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from service.domain.tenants import hash_token, new_token
from service.store import migrator, tenants
from service.store.audit import forget_old_bodies
from service.store.pool import connect
from tests.integration.admin_helpers import csrf, signed_in
from tests.integration.conftest import Stack, TenantInfo, _with_database


async def test_migration_0008_keeps_every_existing_tenants_token_working(stack: Stack) -> None:
    name = f"scimsync_test_m8_{uuid.uuid4().hex[:8]}"
    admin = await connect(stack.database_url)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        conn = await connect(_with_database(stack.database_url, name))
        try:
            await conn.execute("CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz)")
            for step, sql in migrator.available():
                if step < "0008":  # the database as it was before this migration
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", step)
            token, tenant_id = new_token(), uuid.uuid4()
            await conn.execute(
                "INSERT INTO tenants (id, name, token_hash) VALUES ($1, 'old', $2)", tenant_id, hash_token(token)
            )
            await migrator.migrate(conn)
            tenant = await tenants.get(conn, str(tenant_id))
            assert tenant is not None and tenant.token_for(token, 0.0) is not None
            assert tenant.token_for(new_token(), 0.0) is None
            assert await conn.fetchval("SELECT token_hash FROM tenants WHERE id = $1", tenant_id) is None
            rotated = await tenants.rotate_token(conn, str(tenant_id))  # the CLI's rotate-token: old stops at once
            tenant = await tenants.get(conn, str(tenant_id))
            assert (
                tenant is not None and rotated and tenant.token_for(rotated, 0.0) and not tenant.token_for(token, 0.0)
            )
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def test_activity_pages_through_requests_newest_first(
    scim: httpx.AsyncClient, tenant: TenantInfo, db: Any, api_url: str
) -> None:
    for n in range(30):
        await scim.get(f"/Users/{uuid.uuid4()}" if n % 3 == 0 else "/Users")
    admin = await signed_in(db, api_url, tenant.id)
    url = f"/admin/tenants/{tenant.id}/activity"
    for _ in range(100):
        if await db.fetchval("SELECT count(*) FROM scim_requests WHERE tenant_id = $1", uuid.UUID(tenant.id)) >= 30:
            break
        await admin.get(url)
    first = await admin.get(url)
    assert first.text.count('<tr class="') == 25 and "Older requests" in first.text
    older = first.text.split("before=")[1].split('"')[0]
    second = await admin.get(url, params={"before": older})
    assert second.text.count('<tr class="') == 5 and "Older requests" not in second.text
    errors = await admin.get(url, params={"errors": "1"})
    assert errors.text.count('<tr class="failed">') == 10 and errors.text.count('<tr class="') == 10
    assert "No such" in errors.text or "not found" in errors.text.lower()
    await admin.aclose()


async def test_refused_request_bodies_are_forgotten_after_30_days_and_the_rows_stay(
    db: Any, tenant: TenantInfo
) -> None:
    key = uuid.UUID(tenant.id)
    await db.executemany(
        "INSERT INTO scim_requests (at, tenant_id, method, path, status, request_id, duration_ms, body)"
        " VALUES (now() - make_interval(days => $2), $1, 'POST', '/x', 400, 'r', 1, $3)",
        [(key, 31, {"userName": "old"}), (key, 29, {"userName": "recent"})],
    )
    assert await forget_old_bodies(db) >= 1
    rows = await db.fetch("SELECT body FROM scim_requests WHERE tenant_id = $1 ORDER BY at", key)
    assert [r["body"] for r in rows] == [None, {"userName": "recent"}]


@pytest.mark.parametrize(
    ("grace", "old_works", "action"),
    [
        ("0", False, "token rotated (previous tokens stop at once)"),
        ("86400", True, "token rotated (previous tokens keep working for 24 hours)"),
    ],
)
async def test_rotating_with_no_grace_stops_the_old_token_and_with_24_hours_keeps_it_a_day(
    tenant: TenantInfo, db: Any, api_url: str, grace: str, old_works: bool, action: str
) -> None:
    admin = await signed_in(db, api_url, tenant.id)
    home = f"/admin/tenants/{tenant.id}/"
    rotated = await admin.post(f"{home}tokens", data={"csrf": csrf(await admin.get(home)), "grace": grace})
    shown = re.search(r'id="token" type="text" value="([^"]+)"', rotated.text)
    assert rotated.status_code == 200 and shown is not None
    async with httpx.AsyncClient(base_url=tenant.base_url, timeout=30) as client:
        new = await client.get("/Users", headers={"Authorization": f"Bearer {shown.group(1)}"})
        old = await client.get("/Users", headers={"Authorization": f"Bearer {tenant.token}"})
    assert new.status_code == 200 and old.status_code == (200 if old_works else 401)
    listed = (await admin.get(home)).text.count("Revoke token ending in")
    assert listed == (2 if old_works else 1)
    if old_works:  # it says until when: a day from now
        until = await db.fetchval(
            "SELECT expires_at - now() FROM tenant_tokens WHERE tenant_id = $1 AND expires_at IS NOT NULL",
            uuid.UUID(tenant.id),
        )
        assert timedelta(hours=23, minutes=59) < until <= timedelta(hours=24)
    assert action in (await admin.get(f"{home}activity")).text
    await admin.aclose()
