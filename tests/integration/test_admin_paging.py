"""The console's Users and Groups pages over HTTP: every row reachable with Next and Previous, 50 at a time,
with "x-y of N", the search and state kept, stable while the identity provider keeps writing, tenant-safe."""

from __future__ import annotations

import asyncio
import html
import random
import re
from collections.abc import Awaitable
from typing import Any

import httpx

from service.store import tenants
from tests.integration.admin_helpers import signed_in
from tests.integration.conftest import TenantInfo

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
_ROW = re.compile(r'/users/[0-9a-f-]{36}">([^<]+)</a>')
_GROUP_ROW = re.compile(r"<tr><td>([^<]+)</td><td>\d+</td>")
_SHOWING = re.compile(r'<p class="hint" id="showing">Showing ([^<]+)</p>')


def _link(page: httpx.Response, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)" rel="{rel}">', page.text)
    return html.unescape(found.group(1)) if found else None


def _showing(page: httpx.Response) -> str:
    found = _SHOWING.search(page.text)
    assert found, "no 'Showing' line on the page"
    return html.unescape(found.group(1)).replace("\u2013", "-")  # the page writes "51\u2013100"


async def _all(calls: list[Awaitable[httpx.Response]], status: int) -> None:
    for start in range(0, len(calls), 8):
        for answer in await asyncio.gather(*calls[start : start + 8]):
            assert answer.status_code == status, answer.text


async def _walk(admin: httpx.AsyncClient, first: str, row: re.Pattern[str] = _ROW) -> list[httpx.Response]:
    """The pages from `first` on, following Next to the end."""
    pages = [await admin.get(first)]
    while (following := _link(pages[-1], "next")) is not None:
        assert pages[-1].status_code == 200
        pages.append(await admin.get(f"{first.split('?', maxsplit=1)[0]}{following}"))
        assert len(pages) < 20, "Next never ends"
    return pages


def _names(page: httpx.Response, row: re.Pattern[str] = _ROW) -> list[str]:
    return [html.unescape(name) for name in row.findall(page.text)]


async def test_an_admin_pages_through_120_users_with_next_and_back_with_previous(
    scim: httpx.AsyncClient, tenant: TenantInfo, db: Any, api_url: str
) -> None:
    names = [f"person-{i:03d}@example.com" for i in range(120)]
    order = random.Random(7).sample(names, len(names))  # created in another order than they are listed
    await _all([scim.post("/Users", json={"schemas": [USER], "userName": name}) for name in order], 201)
    admin = await signed_in(db, api_url, tenant.id)
    users = f"/admin/tenants/{tenant.id}/users"

    pages = await _walk(admin, users)
    assert [_showing(p) for p in pages] == ["1-50 of 120", "51-100 of 120", "101-120 of 120"]
    assert [name for p in pages for name in _names(p)] == names  # each once, by userName
    assert _link(pages[0], "prev") is None and _link(pages[-1], "next") is None

    back = [pages[-1]]
    while (previous := _link(back[-1], "prev")) is not None:
        back.append(await admin.get(f"{users}{previous}"))
        assert len(back) < 20, "Previous never ends"
    assert [_showing(p) for p in back] == ["101-120 of 120", "51-100 of 120", "1-50 of 120"]
    assert [_names(p) for p in back] == [_names(p) for p in reversed(pages)]
    await admin.aclose()


async def test_the_search_and_the_state_are_kept_while_paging(
    scim: httpx.AsyncClient, tenant: TenantInfo, db: Any, api_url: str
) -> None:
    people = [(f"person-{i:03d}@example.com", i % 2 == 0) for i in range(120)]
    people += [("other-1@example.com", False), ("zz-other@example.com", False), ("person-x", True)]
    calls = [scim.post("/Users", json={"schemas": [USER], "userName": n, "active": a}) for n, a in people]
    await _all(calls, 201)
    admin = await signed_in(db, api_url, tenant.id)
    users = f"/admin/tenants/{tenant.id}/users"

    pages = await _walk(admin, f"{users}?q=PERSON-&state=deactivated")
    assert [_showing(p) for p in pages] == ["1-50 of 60", "51-60 of 60"]
    expected = sorted(name for name, active in people if not active and name.startswith("person-"))
    assert [name for p in pages for name in _names(p)] == expected
    assert 'value="PERSON-"' in pages[1].text and 'value="deactivated" selected' in pages[1].text
    previous = _link(pages[1], "prev")
    assert previous is not None and "q=PERSON-" in previous and "state=deactivated" in previous
    await admin.aclose()


async def test_a_user_created_while_paging_makes_no_one_appear_twice_or_go_missing(
    scim: httpx.AsyncClient, tenant: TenantInfo, db: Any, api_url: str
) -> None:
    names = [f"person-{i:03d}@example.com" for i in range(120)]
    await _all([scim.post("/Users", json={"schemas": [USER], "userName": name}) for name in names], 201)
    admin = await signed_in(db, api_url, tenant.id)
    users = f"/admin/tenants/{tenant.id}/users"

    first = await admin.get(users)
    # While the admin reads page 1, Okta creates one who sorts before it and one who sorts into page 2.
    early, late = "aaa-new@example.com", "person-060a@example.com"
    await _all([scim.post("/Users", json={"schemas": [USER], "userName": n}) for n in (early, late)], 201)
    following = _link(first, "next")
    assert following is not None
    rest = await _walk(admin, f"{users}{following}")
    seen = _names(first) + [name for p in rest for name in _names(p)]
    assert seen == sorted([*names, late])  # nobody twice, nobody skipped; the early one is behind us
    assert _showing(rest[0]) == "52-101 of 122"
    await admin.aclose()


async def test_deleted_people_page_too(scim: httpx.AsyncClient, tenant: TenantInfo, db: Any, api_url: str) -> None:
    created = [
        await scim.post("/Users", json={"schemas": [USER], "userName": f"gone-{i:03d}@example.com"}) for i in range(55)
    ]
    ids = [answer.json()["id"] for answer in created]
    for uid in ids:  # one after the other: the deletions' order is the page's
        assert (await scim.delete(f"/Users/{uid}")).status_code == 204
    admin = await signed_in(db, api_url, tenant.id)
    pages = await _walk(admin, f"/admin/tenants/{tenant.id}/users?state=deleted")
    assert [_showing(p) for p in pages] == ["1-50 of 55", "51-55 of 55"]
    shown = [uid for p in pages for uid in re.findall(r"/users/([0-9a-f-]{36})", p.text)]
    assert shown == list(reversed(ids))  # most recently deleted first, each once
    await admin.aclose()


async def test_a_page_position_from_another_tenant_or_garbage_shows_nothing_of_it(
    scim: httpx.AsyncClient, tenant: TenantInfo, db: Any, api_url: str
) -> None:
    await _all([scim.post("/Users", json={"schemas": [USER], "userName": f"mine-{i:02d}"}) for i in range(3)], 201)
    other, token = await tenants.create(db, "other")
    async with httpx.AsyncClient(
        base_url=f"{api_url}/scim/v2/{other.id}", headers={"Authorization": f"Bearer {token}"}
    ) as theirs:
        their_id = (await theirs.post("/Users", json={"schemas": [USER], "userName": "secret-person"})).json()["id"]
    admin = await signed_in(db, api_url, tenant.id)
    users = f"/admin/tenants/{tenant.id}/users"

    for cursor in ({"after": their_id}, {"before": their_id}):
        page = await admin.get(users, params=cursor)
        assert page.status_code == 200 and "secret-person" not in page.text
        assert _names(page) == ["mine-00", "mine-01", "mine-02"] and _showing(page) == "1-3 of 3"
    for bad in ({"after": "x' OR 1=1 --"}, {"before": "1"}, {"after": their_id, "before": their_id}):
        page = await admin.get(users, params=bad)
        assert page.status_code == 400 and "secret-person" not in page.text
        assert "This page address is not valid" in page.text
    assert (await admin.get(f"/admin/tenants/{tenant.id}/groups", params={"after": "nope"})).status_code == 400
    await admin.aclose()


async def test_groups_page_50_at_a_time(scim: httpx.AsyncClient, tenant: TenantInfo, db: Any, api_url: str) -> None:
    names = [f"Team {i:03d}" for i in range(55)]
    await _all([scim.post("/Groups", json={"schemas": [GROUP], "displayName": n}) for n in reversed(names)], 201)
    admin = await signed_in(db, api_url, tenant.id)
    pages = await _walk(admin, f"/admin/tenants/{tenant.id}/groups")
    assert [_showing(p) for p in pages] == ["1-50 of 55", "51-55 of 55"]
    assert [name for p in pages for name in _names(p, _GROUP_ROW)] == names
    back = await admin.get(f"/admin/tenants/{tenant.id}/groups{_link(pages[1], 'prev')}")
    assert _names(back, _GROUP_ROW) == names[:50]
    await admin.aclose()
