"""`/Users` endpoints: thin. Parse the request, call the store with a domain function, render."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.api import writes
from service.api.body import read_json
from service.api.listing import ListQuery, list_response
from service.api.responses import ScimResponse
from service.domain import users as domain
from service.domain.resource import project
from service.domain.schema import USER_TYPE
from service.domain.users import UserRecord
from service.domain.versions import etag
from service.store import users as store


def _tenant(request: Request) -> str:
    return str(request.scope["tenant"].id)


def _base_url(request: Request) -> str:
    return str(request.app.state.deps.settings.scim_base_url(_tenant(request)))


def _one(request: Request, record: UserRecord, status: int = 200) -> Response:
    body = domain.render(record, _base_url(request))
    attributes, excluded = ListQuery.projection(dict(request.query_params))
    headers = {"ETag": etag(record.version)}
    if status == 201:
        headers["Location"] = body["meta"]["location"]
    return ScimResponse(project(body, attributes, excluded, USER_TYPE), status_code=status, headers=headers)


def _target(request: Request) -> writes.Tenant:
    return writes.Tenant(request.app.state.deps.pool, _tenant(request))


async def _body(request: Request) -> dict[str, Any]:
    return await read_json(request, request.app.state.deps.settings.max_body_bytes)


async def create_user(request: Request) -> Response:
    record = await writes.create_user(_target(request), await _body(request))
    return _one(request, record, status=201)


async def get_user(request: Request) -> Response:
    record = await store.get(request.app.state.deps.pool, _tenant(request), request.path_params["id"])
    return _one(request, record)


async def list_users(request: Request) -> Response:
    query = ListQuery.from_params(dict(request.query_params), request.app.state.deps.settings.max_page_size)
    return await _search(request, query)


async def search_users(request: Request) -> Response:
    deps = request.app.state.deps
    body = await read_json(request, deps.settings.max_body_bytes)
    return await _search(request, ListQuery.from_body(body, deps.settings.max_page_size))


async def _search(request: Request, query: ListQuery) -> Response:
    page = await store.search(
        request.app.state.deps.pool, _tenant(request), query.filter, query.sort, query.start_index, query.count
    )
    base = _base_url(request)
    return list_response(query, page.total, [domain.render(user, base) for user in page.users], USER_TYPE)


async def replace_user(request: Request) -> Response:
    if_match = request.headers.get("if-match")
    record = await writes.replace_user(_target(request), request.path_params["id"], await _body(request), if_match)
    return _one(request, record)


async def patch_user(request: Request) -> Response:
    if_match = request.headers.get("if-match")
    record = await writes.patch_user(_target(request), request.path_params["id"], await _body(request), if_match)
    return _one(request, record)


async def delete_user(request: Request) -> Response:
    await writes.delete_user(_target(request), request.path_params["id"], request.headers.get("if-match"))
    return Response(status_code=204)


routes = [
    Route("/Users", list_users, methods=["GET"]),
    Route("/Users", create_user, methods=["POST"]),
    Route("/Users/.search", search_users, methods=["POST"]),
    Route("/Users/{id}", get_user, methods=["GET"]),
    Route("/Users/{id}", replace_user, methods=["PUT"]),
    Route("/Users/{id}", patch_user, methods=["PATCH"]),
    Route("/Users/{id}", delete_user, methods=["DELETE"]),
]
