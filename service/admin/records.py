"""Activity, users, groups and sync health: the pages where an admin finds out why someone did not arrive."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response

from service.admin import present, timeline
from service.admin.pages import deps_of, message, render
from service.admin.security import not_found, tenant_page
from service.store import activity, directory, holds, keyset
from service.store.access import Grant

PAGE_SIZE = 25
STUCK_AFTER = timedelta(minutes=5)  # published and still not applied after this: look at the consumer / its DLQ
STATES = ("all", "active", "deactivated", "deleted")


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() and len(text) < 19 else None


def _uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


@tenant_page
async def requests_page(request: Request, grant: Grant) -> Response:
    deps = deps_of(request)
    errors_only = request.query_params.get("errors") == "1"
    before = _int(request.query_params.get("before"))
    async with deps.pool.acquire() as conn:
        rows, older = await activity.requests(conn, grant.tenant_id, errors_only, before, PAGE_SIZE)
        actions = await activity.actions(conn, grant.tenant_id) if before is None else []
    prefix = f"/scim/v2/{grant.tenant_id}"
    return render(
        request,
        "activity.html",
        rows=rows,
        older=older,
        errors_only=errors_only,
        actions=actions,
        first_page=before is None,
        short=lambda path: path.removeprefix(prefix) or "/",
    )


def _anchor(request: Request) -> tuple[directory.Anchor, bool]:
    """(where the page starts, whether the address made sense): ?after=ID (Next), ?before=ID (Previous), or none."""
    after, before = request.query_params.get("after"), request.query_params.get("before")
    if after is not None and before is not None:
        return None, False
    direction: Literal["after", "before"] = "after" if after is not None else "before"
    text = after if after is not None else before
    if text is None:
        return None, True
    row_id = _uuid(text)
    return ((direction, uuid.UUID(row_id)), True) if row_id else (None, False)


def _bad_position(request: Request) -> Response:
    grant = getattr(request.state, "grant", None)
    text = "It points at no row of this list. Open the list again from its first page."
    return message(request, 400, "This page address is not valid", text, grant=grant)


def _pager(page: directory.Page[Any], filters: dict[str, str]) -> dict[str, Any]:
    """What the pager shows: "Showing 51-100 of 5,000", Previous and Next."""
    return {
        "showing": present.showing(page.start, len(page.rows), page.total, page.total_capped, keyset.COUNT_CAP),
        "previous_url": present.page_link(filters, "before", page.previous) if page.previous else None,
        "next_url": present.page_link(filters, "after", page.next) if page.next else None,
        "lost": page.lost,
    }


@tenant_page
async def users_page(request: Request, grant: Grant) -> Response:
    deps = deps_of(request)
    query = request.query_params.get("q", "").strip()[:200]
    state = request.query_params.get("state", "all")
    state = state if state in STATES else "all"
    anchor, understood = _anchor(request)
    if not understood:
        return _bad_position(request)
    async with deps.pool.acquire() as conn:
        page = await directory.users(conn, grant.tenant_id, query, state, anchor)
    filters = {"q": query, "state": "" if state == "all" else state}
    pager = _pager(page, filters)
    return render(request, "users.html", rows=page.rows, query=query, state=state, states=STATES, **pager)


@tenant_page
async def user_page(request: Request, grant: Grant) -> Response:
    deps = deps_of(request)
    user_id = _uuid(request.path_params["user_id"])
    if user_id is None:
        return not_found(request)
    async with deps.pool.acquire() as conn:
        events = await directory.timeline(conn, grant.tenant_id, user_id)
        if not events:
            return not_found(request)  # also: another tenant's user
        person = await directory.user(conn, grant.tenant_id, user_id)
        gates = await directory.gates(conn, grant.tenant_id, user_id)
    entries = list(reversed(timeline.entries(events, gates)))
    return render(request, "user.html", person=person, user_id=user_id, entries=entries)


@tenant_page
async def groups_page(request: Request, grant: Grant) -> Response:
    deps = deps_of(request)
    anchor, understood = _anchor(request)
    if not understood:
        return _bad_position(request)
    async with deps.pool.acquire() as conn:
        page = await directory.groups(conn, grant.tenant_id, anchor)
    return render(request, "groups.html", rows=page.rows, **_pager(page, {}))


@tenant_page
async def health_page(request: Request, grant: Grant) -> Response:
    deps = deps_of(request)
    stuck_before = datetime.now(UTC) - STUCK_AFTER
    async with deps.pool.acquire() as conn:
        health = await directory.health(conn, grant.tenant_id, stuck_before)
        held = await holds.summary(conn, uuid.UUID(grant.tenant_id), sample=0)
    return render(
        request,
        "health.html",
        health=health,
        stuck_before=stuck_before,
        stuck_after=STUCK_AFTER,
        held=held[0] if held else None,
    )
