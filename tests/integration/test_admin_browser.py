"""The admin console in a real browser: Debian's Chromium driven by Playwright (no browser download needed).

These walk the flows an IT admin follows, check what the page shows, and save the screenshots the README uses
(docs/admin/*.png).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from service.store import tenants
from tests.integration.admin_helpers import new_link
from tests.integration.conftest import ROOT, TenantInfo
from tests.integration.test_consumers_helpers import ConsumerEnv

CHROMIUM = "/usr/bin/chromium"
# The README's screenshots are rewritten only when asked (SCIMSYNC_SCREENSHOTS=docs), so `make test` leaves the
# work tree clean; otherwise they go beside the test logs, for a look after a failure.
SHOTS = (
    ROOT / "docs" / "admin" if os.environ.get("SCIMSYNC_SCREENSHOTS") == "docs" else ROOT / ".pytest_cache" / "admin"
)
OKTA = {"User-Agent": "Okta SCIM Client 1.0.0", "Content-Type": "application/scim+json; charset=utf-8"}
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
GREEN, RED = "rgb(26, 127, 55)", "rgb(198, 40, 40)"  # admin.css --green, --red

# Skipped on a developer's machine without Chromium; never in CI (CI=true), where .ci/run installs it and a
# missing browser must fail rather than pass the console untested.
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and os.environ.get("CI") != "true",
    reason="needs Debian's chromium (apt-get install chromium)",
)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser, api_url: str) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1180, "height": 640}, base_url=api_url)
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=api_url)
    opened = await context.new_page()
    opened.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))  # the confirmations
    yield opened
    await context.close()


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def copied(page: Page, field_label: str) -> str:
    """Click the Copy button next to a field and read the clipboard, as a person pasting it would get it."""
    field = page.get_by_label(field_label, exact=True)
    await field.locator("xpath=following-sibling::button[1]").click()
    return str(await page.evaluate("navigator.clipboard.readText()"))


async def unlabelled_controls(page: Page) -> list[str]:
    """Form controls a screen reader could not name (no <label>, no aria-label): should be none."""
    found = await page.evaluate(
        """() => [...document.querySelectorAll("input:not([type=hidden]), select, textarea, button")]
              .filter(e => !(e.labels && e.labels.length) && !e.getAttribute("aria-label") && !e.textContent.trim())
              .map(e => e.outerHTML)"""
    )
    return list(found)


async def reload_until(page: Page, seen: Callable[[], Awaitable[bool]], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not await seen():
        assert time.monotonic() < deadline, "the page never showed it"
        await page.reload()


async def test_an_admin_connects_okta_rotates_and_switches_provisioning(
    page: Page, api_url: str, db: Any, tenant: TenantInfo
) -> None:
    link = await new_link(db, api_url, tenant.id, label="Jane (IT)")
    await page.goto(link)
    await page.get_by_role("button", name="Open the admin console").click()
    await expect(page.get_by_role("heading", name="User provisioning", level=1)).to_be_visible()
    await shot(page, "provisioning")
    # Keyboard first: the first Tab reaches "Skip to content", which moves focus to the page's content.
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("main")).to_be_focused()
    assert await unlabelled_controls(page) == []

    # The first token came from the operator (`tenants create`); the admin revokes it and generates their own.
    await page.get_by_role("button", name=f"Revoke token ending in {tenant.token[-4:]}").click()
    await page.get_by_role("button", name="Generate token").click()
    base_url, token = await copied(page, "SCIM Base URL"), await copied(page, "SCIM Bearer token")
    assert base_url == tenant.base_url and token.startswith("scimsync_")
    await expect(page.locator("#token-copied")).to_have_text("Copied")
    await shot(page, "token")

    async with httpx.AsyncClient(base_url=base_url, headers={**OKTA, "Authorization": f"Bearer {token}"}) as okta:
        created = await okta.post("/Users", json={"schemas": [USER], "userName": "ada@example.com"})
        assert created.status_code == 201
        assert (await okta.get("/Users", headers={"Authorization": f"Bearer {tenant.token}"})).status_code == 401

        # The product's help article: "click the green button [...] the button becomes red".
        disable = page.get_by_role("button", name="Disable user provisioning")
        await expect(disable).to_have_css("background-color", RED)
        await disable.click()
        await page.mouse.move(0, 0)  # not hovering: the button's own colour, not its hover shade
        await expect(page.get_by_role("button", name="Enable user provisioning")).to_have_css("background-color", GREEN)
        await expect(page.get_by_role("alert")).to_contain_text("User provisioning is disabled")
        await shot(page, "disabled")
        refused = await okta.get("/Users")
        assert refused.status_code == 403
        await page.get_by_role("button", name="Enable user provisioning").click()
        await expect(page.get_by_role("button", name="Disable user provisioning")).to_be_visible()
        assert (await okta.get("/Users")).status_code == 200

        # Rotate, keeping the old token for an hour: both work; revoke the old one: it gets 401 at once.
        await page.get_by_label("keep working for 1 hour").check()
        await page.get_by_role("button", name="Rotate token").click()
        new_token = await copied(page, "SCIM Bearer token")
        assert new_token != token and page.url.endswith(f"/admin/tenants/{tenant.id}/")  # a reload won't re-POST
        fresh = {"Authorization": f"Bearer {new_token}"}
        assert (await okta.get("/Users")).status_code == 200 and (
            await okta.get("/Users", headers=fresh)
        ).status_code == 200
        await expect(page.get_by_role("table", name="Active tokens").locator("tbody tr")).to_have_count(2)
        await page.get_by_role("button", name=f"Revoke token ending in {token[-4:]}").click()
        await expect(page.get_by_role("table", name="Active tokens").locator("tbody tr")).to_have_count(1)
        assert (await okta.get("/Users")).status_code == 401
        assert (await okta.get("/Users", headers=fresh)).status_code == 200
        # The remaining token's "Last used" comes from the request log (written in batches).
        last_used = page.get_by_role("table", name="Active tokens").locator("tbody tr td").nth(2)

        async def used() -> bool:
            return (await last_used.inner_text()) != "never"

        await reload_until(page, used)

    # Activity: the calls, the refused ones with the error we answered, and who did what on the page.
    await page.get_by_role("link", name="Activity").click()
    requests = page.get_by_role("table").nth(1)

    async def shows_all_calls() -> bool:
        return await requests.locator("tbody tr").count() >= 6

    await reload_until(page, shows_all_calls)
    await expect(requests).to_contain_text("Provisioning is switched off for this tenant")
    await expect(requests).to_contain_text("Missing or invalid bearer token")
    await expect(requests).to_contain_text("Okta")
    actions = page.get_by_role("table").first
    for action in (
        "token revoked",
        "token generated",
        "provisioning disabled",
        "provisioning enabled",
        "token rotated",
    ):
        await expect(actions).to_contain_text(action)
    await expect(actions).to_contain_text("Jane (IT)")
    await shot(page, "activity")
    await page.get_by_label("Errors only").check()
    await page.get_by_role("button", name="Apply").click()
    statuses = await page.locator("table.requests .status").all_inner_texts()
    assert statuses and all(int(s) >= 400 for s in statuses)

    await page.get_by_role("link", name="Setup guides").click()
    await expect(page.get_by_label("Tenant URL")).to_have_value(f"{tenant.base_url}?aadOptscim062020")
    await expect(page.get_by_label("SCIM connector base URL")).to_have_value(tenant.base_url)
    await shot(page, "guides")

    # The link was burned on first use; a POST without the CSRF token is refused; another tenant is invisible.
    await page.goto(link)
    await expect(page.get_by_role("heading", name="This link can't be used")).to_be_visible()
    no_csrf = await page.request.post(f"/admin/tenants/{tenant.id}/provisioning", form={"enabled": "false"})
    assert no_csrf.status == 403 and (await tenants.get(db, tenant.id)).enabled  # type: ignore[union-attr]
    other, _ = await tenants.create(db, f"other-{uuid.uuid4().hex[:6]}")
    answer = await page.goto(f"/admin/tenants/{other.id}/")
    assert answer is not None and answer.status == 404
    await expect(page.get_by_role("heading", name="Page not found")).to_be_visible()


async def test_a_users_timeline_shows_what_booking_and_workspace_applied(
    page: Page,
    api_url: str,
    db: Any,
    env: ConsumerEnv,
    pipeline: list[subprocess.Popen[bytes]],
    scim: httpx.AsyncClient,
    tenant: TenantInfo,
) -> None:
    created = await scim.post(
        "/Users",
        json={
            "schemas": [USER],
            "userName": "grace@example.com",
            "emails": [{"value": "grace@example.com", "primary": True}],
        },
    )
    uid = created.json()["id"]
    await scim.post("/Users", json={"schemas": [USER], "userName": "alan@example.com", "active": True})
    deactivate = {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False}}]}
    assert (await scim.patch(f"/Users/{uid}", json=deactivate)).status_code == 200
    group = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Engineering"}
    assert (await scim.post("/Groups", json={**group, "members": [{"value": uid}]})).status_code == 201

    async def applied_everywhere() -> bool:
        booking = await db.fetchval(
            "SELECT version FROM booking.users WHERE tenant_id = $1 AND user_id = $2",
            uuid.UUID(tenant.id),
            uuid.UUID(uid),
        )
        workspace = await db.fetchval(
            "SELECT version FROM workspace.versions WHERE tenant_id = $1 AND user_id = $2",
            uuid.UUID(tenant.id),
            uuid.UUID(uid),
        )
        return booking == 2 and workspace == 2

    deadline = time.monotonic() + 60
    while not await applied_everywhere():
        assert time.monotonic() < deadline, "the consumers never applied the deactivation"
        await asyncio.sleep(0.1)

    await page.goto(await new_link(db, api_url, tenant.id, label="Jane (IT)"))
    await page.get_by_role("button", name="Open the admin console").click()
    await page.get_by_role("link", name="Users").click()
    await page.get_by_label("userName or email").fill("grace@")
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_role("table")).to_contain_text("Deactivated")
    await page.get_by_label("userName or email").fill("")
    await page.get_by_role("button", name="Search").click()
    await shot(page, "users")
    await page.get_by_role("link", name="grace@example.com").click()
    timeline = page.locator("ol.timeline > li")
    await expect(timeline).to_have_count(2)
    await expect(timeline.nth(0)).to_contain_text("Deactivated")
    await expect(timeline.nth(0)).to_contain_text("active")
    await expect(timeline.nth(1)).to_contain_text("Created")
    for entry in (timeline.nth(0), timeline.nth(1)):
        await expect(entry).to_contain_text("applied by booking")
        await expect(entry).to_contain_text("applied by workspace")
    await expect(timeline.nth(0)).to_contain_text(" s later")  # booking records when it applied the latest
    await expect(timeline.nth(0)).to_contain_text("active: true → false")
    await shot(page, "timeline")

    await page.get_by_role("link", name="Groups").click()
    await expect(page.get_by_role("row", name="Engineering 1")).to_be_visible()
    await shot(page, "groups")
    await page.get_by_role("link", name="Sync health").click()
    await expect(page.get_by_role("heading", name="Services applying your changes")).to_be_visible()
    assert await unlabelled_controls(page) == []

    async def caught_up() -> bool:
        return await page.get_by_text("OK", exact=True).count() == 2

    await reload_until(page, caught_up, seconds=30)
    await shot(page, "health")


async def test_an_admin_pages_through_the_users_with_next_and_previous(
    page: Page, api_url: str, db: Any, scim: httpx.AsyncClient, tenant: TenantInfo
) -> None:
    for i in range(51):
        created = await scim.post("/Users", json={"schemas": [USER], "userName": f"user-{i:02d}@example.com"})
        assert created.status_code == 201
    await page.goto(await new_link(db, api_url, tenant.id))
    await page.get_by_role("button", name="Open the admin console").click()
    await page.get_by_role("link", name="Users").click()
    await expect(page.get_by_text("Showing 1\u201350 of 51")).to_be_visible()
    await page.get_by_role("link", name="Next").click()
    await expect(page.get_by_text("Showing 51\u201351 of 51")).to_be_visible()
    await expect(page.get_by_role("link", name="user-50@example.com")).to_be_visible()
    await page.get_by_role("link", name="Previous").click()
    await expect(page.get_by_role("link", name="user-00@example.com")).to_be_visible()
    assert await unlabelled_controls(page) == []
