"""`POST /.search` at the tenant's root (RFC 7644 §3.4.3): Users and Groups in one ListResponse.

The filter is read against each resource type: one whose schema lacks an attribute the filter names contributes no
resources (`userName eq "x"` finds users only; `displayName eq "x"` both), and a filter neither type understands
is a 400 `invalidFilter`. The order is stable (store/everything.py), so paging never skips or repeats.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.api.body import read_json
from service.api.listing import ListQuery
from service.api.responses import ScimResponse
from service.domain import groups as group_domain
from service.domain import users as user_domain
from service.domain.errors import InvalidFilter, InvalidValue
from service.domain.filter import UnknownFilterAttribute, parse_filter
from service.domain.groups import GroupRecord
from service.domain.resource import project
from service.domain.schema import GROUP_TYPE, LIST_RESPONSE, USER_TYPE, resolve
from service.store import everything

_TYPES = (USER_TYPE, GROUP_TYPE)


def _sides(raw: dict[str, Any]) -> tuple[list[everything.Side], bool]:
    """Each type's filter and sort attribute, and whether the sort descends."""
    text = raw.get("filter")
    if text is not None and not isinstance(text, str):
        raise InvalidFilter("filter must be a string")
    filters: list[everything.Side] = []
    unknown: list[UnknownFilterAttribute] = []
    for rtype in _TYPES:
        try:
            filters.append(everything.Side(expr=parse_filter(text, rtype) if text and text.strip() else None))
        except UnknownFilterAttribute as exc:
            unknown.append(exc)
            filters.append(everything.Side(skip=True))
    if len(unknown) == len(_TYPES):
        raise unknown[0]
    sort_by = raw.get("sortby")
    sorts = [resolve(rtype, str(sort_by)) if sort_by else None for rtype in _TYPES]
    if sort_by and not any(sorts):
        raise InvalidValue(f"sortBy names an attribute neither Users nor Groups have: {sort_by}")
    if len({ref.target.type for ref in sorts if ref}) > 1:
        raise InvalidValue(f"sortBy {sort_by} has different types in Users and Groups")
    order = str(raw.get("sortorder") or "ascending").lower()
    if order not in ("ascending", "descending"):
        raise InvalidValue("sortOrder must be ascending or descending")
    sides = [replace(side, sort=ref) for side, ref in zip(filters, sorts, strict=True)]
    return sides, order == "descending"


def _render(record: Any, base: str, query: ListQuery) -> dict[str, Any]:
    if isinstance(record, GroupRecord):
        return project(group_domain.render(record, base), query.attributes, query.excluded, GROUP_TYPE)
    return project(user_domain.render(record, base), query.attributes, query.excluded, USER_TYPE)


async def search_everything(request: Request) -> Response:
    deps = request.app.state.deps
    body = await read_json(request, deps.settings.max_body_bytes)
    raw = {k.lower(): v for k, v in body.items()}
    # Paging, projection and `schemas` as for /Users/.search; filter and sortBy are read per type below.
    query = ListQuery.from_body(
        {k: v for k, v in body.items() if k.lower() not in ("filter", "sortby", "sortorder")},
        deps.settings.max_page_size,
    )
    (users, groups), descending = _sides(raw)
    tenant_id = str(request.scope["tenant"].id)
    page = await everything.search(
        deps.pool,
        tenant_id,
        users,
        groups,
        descending,
        query.start_index,
        query.count,
        members=group_domain.wants_members(query.attributes, query.excluded),
        display=group_domain.wants_display(query.attributes),
    )
    base = deps.settings.scim_base_url(tenant_id)
    return ScimResponse(
        {
            "schemas": [LIST_RESPONSE],
            "totalResults": page.total,
            "startIndex": query.start_index,
            "itemsPerPage": len(page.resources),
            "Resources": [_render(r, base, query) for r in page.resources],
        }
    )


routes = [Route("/.search", search_everything, methods=["POST"])]
