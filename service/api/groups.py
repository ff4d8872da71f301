"""`/Groups` endpoints: thin, like `/Users`. Members are loaded only when the response shows them."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.api import writes
from service.api.body import read_json
from service.api.group_stream import get_whole_group
from service.api.listing import ListQuery, list_response
from service.api.responses import ScimResponse
from service.domain import groups as domain
from service.domain.groups import GroupRecord
from service.domain.resource import project
from service.domain.schema import GROUP_TYPE
from service.domain.versions import etag
from service.store import groups as store


def _tenant(request: Request) -> str:
    return str(request.scope["tenant"].id)


def _base_url(request: Request) -> str:
    return str(request.app.state.deps.settings.scim_base_url(_tenant(request)))


def _projection(request: Request) -> tuple[list[str] | None, list[str] | None]:
    return ListQuery.projection(dict(request.query_params))


async def _one(request: Request, record: GroupRecord, status: int = 200) -> Response:
    attributes, excluded = _projection(request)
    if record.members is None and domain.wants_members(attributes, excluded):
        pool, display = request.app.state.deps.pool, domain.wants_display(attributes)
        [record] = await store.with_members(pool, _tenant(request), [record], display)
    body = domain.render(record, _base_url(request))
    headers = {"ETag": etag(record.version)}
    if status == 201:
        headers["Location"] = body["meta"]["location"]
    return ScimResponse(project(body, attributes, excluded, GROUP_TYPE), status_code=status, headers=headers)


def _target(request: Request) -> writes.Tenant:
    return writes.Tenant(request.app.state.deps.pool, _tenant(request))


async def _body(request: Request) -> dict[str, Any]:
    return await read_json(request, request.app.state.deps.settings.max_body_bytes)


async def create_group(request: Request) -> Response:
    record = await writes.create_group(_target(request), await _body(request))
    return await _one(request, record, status=201)


async def get_group(request: Request) -> Response:
    attributes, excluded = _projection(request)
    if attributes is None and excluded is None:  # the whole group: streamed when big
        return await get_whole_group(request, _tenant(request), _base_url(request))
    record = await store.get(
        request.app.state.deps.pool,
        _tenant(request),
        request.path_params["id"],
        members=domain.wants_members(attributes, excluded),
        display=domain.wants_display(attributes),
    )
    return await _one(request, record)


async def list_groups(request: Request) -> Response:
    deps = request.app.state.deps
    query = ListQuery.from_params(dict(request.query_params), deps.settings.max_page_size, GROUP_TYPE)
    return await _search(request, query)


async def search_groups(request: Request) -> Response:
    deps = request.app.state.deps
    body = await read_json(request, deps.settings.max_body_bytes)
    return await _search(request, ListQuery.from_body(body, deps.settings.max_page_size, GROUP_TYPE))


async def _search(request: Request, query: ListQuery) -> Response:
    page = await store.search(
        request.app.state.deps.pool,
        _tenant(request),
        query.filter,
        query.sort,
        query.start_index,
        query.count,
        members=domain.wants_members(query.attributes, query.excluded),
        display=domain.wants_display(query.attributes),
    )
    base = _base_url(request)
    return list_response(query, page.total, [domain.render(group, base) for group in page.groups], GROUP_TYPE)


async def replace_group(request: Request) -> Response:
    if_match = request.headers.get("if-match")
    record = await writes.replace_group(_target(request), request.path_params["id"], await _body(request), if_match)
    return await _one(request, record)


async def patch_group(request: Request) -> Response:
    if_match = request.headers.get("if-match")
    record = await writes.patch_group(_target(request), request.path_params["id"], await _body(request), if_match)
    if ListQuery.projection(dict(request.query_params)) == (None, None):
        # 204 (RFC 7644 §3.5.2): echoing a 10,000-member group on every membership PATCH would cost
        # 20x the write itself. Okta and Entra both accept it; ask with `attributes` to get the group.
        return Response(status_code=204, headers={"ETag": etag(record.version)})
    return await _one(request, record)


async def delete_group(request: Request) -> Response:
    await writes.delete_group(_target(request), request.path_params["id"], request.headers.get("if-match"))
    return Response(status_code=204)


routes = [
    Route("/Groups", list_groups, methods=["GET"]),
    Route("/Groups", create_group, methods=["POST"]),
    Route("/Groups/.search", search_groups, methods=["POST"]),
    Route("/Groups/{id}", get_group, methods=["GET"]),
    Route("/Groups/{id}", replace_group, methods=["PUT"]),
    Route("/Groups/{id}", patch_group, methods=["PATCH"]),
    Route("/Groups/{id}", delete_group, methods=["DELETE"]),
]
