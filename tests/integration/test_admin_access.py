"""The admin console's security properties, over HTTP: operator API, one-time links, sessions, CSRF, isolation."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import httpx
import orjson

from service.admin.routes import TENANT_ROUTES
from service.admin.security import COOKIE
from service.store import tenants
from tests.integration.admin_helpers import csrf, new_link, signed_in
from tests.integration.conftest import OPERATOR_KEY, ROOT, TenantInfo

USER = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "iso@example.com"}


async def test_operator_api_issues_links_only_with_the_operator_key(api_url: str, tenant: TenantInfo) -> None:
    url = f"{api_url}/admin/api/tenants/{tenant.id}/links"
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await client.post(url)).status_code == 401
        assert (await client.post(url, headers={"Authorization": f"Bearer {tenant.token}"})).status_code == 401
        assert (await client.post(url, headers={"Authorization": f"Bearer {OPERATOR_KEY}x"})).status_code == 401
        auth = {"Authorization": f"Bearer {OPERATOR_KEY}"}
        missing = await client.post(f"{api_url}/admin/api/tenants/{uuid.uuid4()}/links", headers=auth)
        assert missing.status_code == 404
        assert (await client.post(url, headers=auth, json={"minutes": 0})).status_code == 400
        made = await client.post(url, headers=auth, json={"minutes": 5, "label": "Jane (IT)"})
        assert made.status_code == 201
        link = made.json()["url"]
        assert link.startswith(f"{api_url}/admin/links/") and made.json()["label"] == "Jane (IT)"
        assert (await client.get(link)).status_code == 200


async def test_a_link_works_once_and_sets_a_strict_httponly_cookie(api_url: str, db: Any, tenant: TenantInfo) -> None:
    link = await new_link(db, api_url, tenant.id)
    async with httpx.AsyncClient(timeout=30) as client:
        # A GET (a mail scanner following the link) shows the button and burns nothing.
        for _ in range(2):
            shown = await client.get(link)
            assert shown.status_code == 200 and "Open the admin console" in shown.text
        opened = await client.post(link)
        assert opened.status_code == 303 and opened.headers["location"] == f"/admin/tenants/{tenant.id}/"
        cookie = opened.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/admin" in cookie
        assert "secure" not in cookie  # the public URL of the test API is http
        page = await client.get(api_url + opened.headers["location"])
        assert page.status_code == 200 and "SCIM Base URL" in page.text
        for method in ("GET", "POST"):
            again = await httpx.AsyncClient(timeout=30).request(method, link)
            assert again.status_code == 410 and "used already, or it has expired" in again.text
    secret = link.rsplit("/", 1)[1]
    rows = await db.fetch("SELECT * FROM admin_links WHERE tenant_id = $1", uuid.UUID(tenant.id))
    assert len(rows) == 1 and rows[0]["used_at"] is not None and secret not in str(dict(rows[0]))


async def test_an_expired_link_is_refused(api_url: str, db: Any, tenant: TenantInfo) -> None:
    link = await new_link(db, api_url, tenant.id)
    await db.execute(
        "UPDATE admin_links SET expires_at = now() - interval '1 second' WHERE tenant_id = $1", uuid.UUID(tenant.id)
    )
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await client.get(link)).status_code == 410
        refused = await client.post(link)
        assert refused.status_code == 410 and COOKIE not in refused.headers.get("set-cookie", "")


async def test_links_and_sessions_are_stored_only_as_hashes(api_url: str, db: Any, tenant: TenantInfo) -> None:
    admin = await signed_in(db, api_url, tenant.id)
    secret = admin.cookies[COOKIE]
    rows = await db.fetch("SELECT * FROM admin_sessions WHERE tenant_id = $1", uuid.UUID(tenant.id))
    dumped = str([dict(r) for r in rows]) + str(await db.fetch("SELECT * FROM admin_links"))
    assert secret not in dumped and rows and all(len(r["token_hash"]) == 32 for r in rows)
    await admin.aclose()


async def test_an_idle_session_ends(api_url: str, db: Any, tenant: TenantInfo) -> None:
    admin = await signed_in(db, api_url, tenant.id)
    assert (await admin.get(f"/admin/tenants/{tenant.id}/")).status_code == 200
    await db.execute(
        "UPDATE admin_sessions SET last_seen_at = now() - interval '31 minutes' WHERE tenant_id = $1",
        uuid.UUID(tenant.id),
    )
    ended = await admin.get(f"/admin/tenants/{tenant.id}/")
    assert ended.status_code == 401 and "Your session has ended" in ended.text
    await admin.aclose()


async def test_a_post_without_the_csrf_token_or_from_another_origin_changes_nothing(
    api_url: str, db: Any, tenant: TenantInfo
) -> None:
    admin = await signed_in(db, api_url, tenant.id)
    page = await admin.get(f"/admin/tenants/{tenant.id}/")
    url = f"/admin/tenants/{tenant.id}/provisioning"
    assert (await admin.post(url, data={"enabled": "false"})).status_code == 403
    assert (await admin.post(url, data={"enabled": "false", "csrf": "0" * 64})).status_code == 403
    foreign = await admin.post(
        url, data={"enabled": "false", "csrf": csrf(page)}, headers={"Origin": "https://evil.test"}
    )
    assert foreign.status_code == 403
    assert (await admin.post(f"/admin/tenants/{tenant.id}/tokens", data={"grace": "0"})).status_code == 403
    assert (await tenants.get(db, tenant.id)).enabled  # type: ignore[union-attr]
    async with httpx.AsyncClient(base_url=tenant.base_url, headers=tenant.headers) as scim:
        assert (await scim.get("/Users")).status_code == 200  # the token was not rotated either
    done = await admin.post(url, data={"enabled": "false", "csrf": csrf(page)})
    assert done.status_code == 303 and not (await tenants.get(db, tenant.id)).enabled  # type: ignore[union-attr]
    await admin.aclose()


async def test_a_session_of_tenant_a_gets_404_on_every_page_of_tenant_b(api_url: str, db: Any) -> None:
    a, _ = await tenants.create(db, f"a-{uuid.uuid4().hex[:6]}")
    b, b_token = await tenants.create(db, f"b-{uuid.uuid4().hex[:6]}")
    async with httpx.AsyncClient(
        base_url=f"{api_url}/scim/v2/{b.id}", headers={"Authorization": f"Bearer {b_token}"}
    ) as scim:
        b_user = (await scim.post("/Users", json=USER)).json()["id"]
    b_token_id = str(await db.fetchval("SELECT id FROM tenant_tokens WHERE tenant_id = $1", uuid.UUID(b.id)))
    admin = await signed_in(db, api_url, a.id)
    token = csrf(await admin.get(f"/admin/tenants/{a.id}/"))
    ids = {"user_id": b_user, "token_id": b_token_id}
    tried = 0
    for route in TENANT_ROUTES:
        for tenant_id in (b.id, a.id):  # B's pages, and A's pages with B's user and token ids
            path = "/admin" + route.path.format(tenant_id=tenant_id, **ids)
            if tenant_id == a.id and path == "/admin" + route.path.format(tenant_id=a.id, user_id="", token_id=""):
                continue  # A's own pages without any of B's ids are A's to see
            for method in route.methods or ():
                if method == "HEAD":
                    continue
                answer = await admin.request(method, path, data={"csrf": token, "enabled": "false", "grace": "0"})
                assert answer.status_code == 404, f"{method} {path}: {answer.status_code}"
                assert "Page not found" in answer.text  # the console's own 404, not a missing route
                assert b_user not in answer.text and b.name not in answer.text
                tried += 1
    assert tried >= len(TENANT_ROUTES) + 2
    assert (await tenants.get(db, b.id)).enabled  # type: ignore[union-attr]
    async with httpx.AsyncClient(
        base_url=f"{api_url}/scim/v2/{b.id}", headers={"Authorization": f"Bearer {b_token}"}
    ) as scim:
        assert (await scim.get(f"/Users/{b_user}")).status_code == 200  # B's token was neither revoked nor rotated
    await admin.aclose()


async def test_pages_carry_a_csp_without_inline_script_and_no_store(api_url: str, db: Any, tenant: TenantInfo) -> None:
    admin = await signed_in(db, api_url, tenant.id)
    page = await admin.get(f"/admin/tenants/{tenant.id}/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "same-origin"
    assert "<script>" not in page.text and " on" + "click=" not in page.text
    await admin.aclose()


async def test_a_refused_request_keeps_its_error_and_a_body_without_secrets(
    scim: httpx.AsyncClient, tenant: TenantInfo, db: Any, api_url: str
) -> None:
    body = {**USER, "userName": "dup@example.com", "password": "hunter2-secret"}
    assert (await scim.post("/Users", json=body)).status_code == 201
    assert (await scim.post("/Users", json=body, headers={"User-Agent": "Okta SCIM Client 1.0.0"})).status_code == 409
    admin = await signed_in(db, api_url, tenant.id)
    for _ in range(100):
        page = await admin.get(f"/admin/tenants/{tenant.id}/activity", params={"errors": "1"})
        if "uniqueness" in page.text:
            break
    assert "uniqueness" in page.text and "Okta" in page.text and "dup@example.com" in page.text
    assert "hunter2-secret" not in page.text
    stored = await db.fetch("SELECT body::text AS body FROM scim_requests WHERE tenant_id = $1", uuid.UUID(tenant.id))
    assert all("hunter2" not in (r["body"] or "") for r in stored)
    await admin.aclose()


def test_the_cli_prints_a_link_that_opens_the_console(api_url: str, database_url: str, tenant: TenantInfo) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "SCIMSYNC_PUBLIC_URL": api_url}
    command = [sys.executable, "-m", "service.cli", "admin-link", tenant.id, "--minutes", "5", "--label", "Ops"]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    link = orjson.loads(done.stdout)["url"]
    with httpx.Client(timeout=30) as client:
        assert client.post(link).status_code == 303
        assert "SCIM Base URL" in client.get(f"{api_url}/admin/tenants/{tenant.id}/").text
        disable = [sys.executable, "-m", "service.cli", "tenants", "disable", tenant.id]
        assert subprocess.run(disable, env=env, cwd=ROOT, capture_output=True, timeout=60).returncode == 0
        activity = client.get(f"{api_url}/admin/tenants/{tenant.id}/activity").text
        assert "operator (CLI)" in activity and "provisioning disabled" in activity and "setup link issued" in activity


async def test_signing_out_needs_the_csrf_token_and_ends_the_session_for_good(
    api_url: str, db: Any, tenant: TenantInfo
) -> None:
    admin = await signed_in(db, api_url, tenant.id)
    home = f"/admin/tenants/{tenant.id}/"
    page = await admin.get(home)
    session = admin.cookies[COOKIE]
    # Another site's form (no token, or its own Origin) must not sign the admin out, not even by dropping the cookie.
    for forged in (
        await admin.post("/admin/sign-out"),
        await admin.post("/admin/sign-out", data={"csrf": csrf(page)}, headers={"Origin": "https://evil.test"}),
    ):
        assert forged.status_code == 403 and "set-cookie" not in forged.headers
    assert (await admin.get(home)).status_code == 200
    done = await admin.post("/admin/sign-out", data={"csrf": csrf(page)})
    assert done.status_code == 200 and "Signed out" in done.text and COOKIE in done.headers["set-cookie"]
    async with httpx.AsyncClient(base_url=api_url, cookies={COOKIE: session}, timeout=30) as replayed:
        ended = await replayed.get(home)
        assert ended.status_code == 401 and "Your session has ended" in ended.text
    await admin.aclose()
