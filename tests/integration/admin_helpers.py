"""Shared pieces of the admin console tests (no tests here): signing in with a setup link, reading a form's CSRF."""

from __future__ import annotations

import re
from typing import Any

import httpx

from service.admin.links import issue
from service.settings import Settings

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def new_link(db: Any, api_url: str, tenant_id: str, label: str = "Jane (IT)", minutes: int = 15) -> str:
    issued = await issue(db, Settings(public_url=api_url), tenant_id, minutes, label)
    assert issued is not None
    return str(issued["url"])


async def signed_in(db: Any, api_url: str, tenant_id: str, label: str = "Jane (IT)") -> httpx.AsyncClient:
    """A client holding a live admin session of this tenant (the link opened and burned)."""
    client = httpx.AsyncClient(base_url=api_url, timeout=30)
    opened = await client.post(await new_link(db, api_url, tenant_id, label))
    assert opened.status_code == 303, opened.text
    return client


def csrf(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found, "no CSRF token on the page"
    return found.group(1)
