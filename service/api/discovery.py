"""Discovery endpoints (RFC 7644 §4): what we support, which resource types, which schemas. GET only."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.api.responses import ScimResponse
from service.domain.errors import NotFound
from service.domain.schema import GROUP_TYPE, LIST_RESPONSE, USER_TYPE, ResourceType

RESOURCE_TYPES: tuple[ResourceType, ...] = (USER_TYPE, GROUP_TYPE)
SCHEMAS = tuple(s for rt in RESOURCE_TYPES for s in (rt.schema, *rt.extensions))


def _base(request: Request) -> str:
    return str(request.app.state.deps.settings.scim_base_url(request.scope["tenant"].id))


def _list(resources: list[dict[str, Any]]) -> Response:
    return ScimResponse(
        {
            "schemas": [LIST_RESPONSE],
            "totalResults": len(resources),
            "startIndex": 1,
            "itemsPerPage": len(resources),
            "Resources": resources,
        }
    )


def _resource_type(rt: ResourceType, base: str) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": rt.name,
        "name": rt.name,
        "endpoint": rt.endpoint,
        "description": f"{rt.name} Account" if rt.name == "User" else rt.name,
        "schema": rt.schema.id,
        "schemaExtensions": [{"schema": ext.id, "required": False} for ext in rt.extensions],
        "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/{rt.name}"},
    }


async def service_provider_config(request: Request) -> Response:
    settings = request.app.state.deps.settings
    return ScimResponse(
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://github.com/scimsync/scimsync#readme",
            "patch": {"supported": True},
            "bulk": {
                "supported": True,
                "maxOperations": settings.bulk_max_operations,
                "maxPayloadSize": settings.bulk_max_payload_bytes,
            },
            "filter": {"supported": True, "maxResults": settings.max_page_size},
            "changePassword": {"supported": False},
            "sort": {"supported": True},
            "etag": {"supported": True},
            "authenticationSchemes": [
                {
                    "type": "oauthbearertoken",
                    "name": "OAuth Bearer Token",
                    "description": "The tenant's SCIM bearer token in the Authorization header",
                    "primary": True,
                }
            ],
            "meta": {"resourceType": "ServiceProviderConfig", "location": f"{_base(request)}/ServiceProviderConfig"},
        }
    )


async def resource_types(request: Request) -> Response:
    return _list([_resource_type(rt, _base(request)) for rt in RESOURCE_TYPES])


async def resource_type(request: Request) -> Response:
    name = request.path_params["name"]
    for rt in RESOURCE_TYPES:
        if rt.name.lower() == name.lower():
            return ScimResponse(_resource_type(rt, _base(request)))
    raise NotFound(f"ResourceType {name} not found")


async def schemas(request: Request) -> Response:
    return _list([s.to_scim(_base(request)) for s in SCHEMAS])


async def schema(request: Request) -> Response:
    urn = request.path_params["urn"]
    for s in SCHEMAS:
        if s.id.lower() == urn.lower():
            return ScimResponse(s.to_scim(_base(request)))
    raise NotFound(f"Schema {urn} not found")


routes = [
    Route("/ServiceProviderConfig", service_provider_config, methods=["GET"]),
    Route("/ResourceTypes", resource_types, methods=["GET"]),
    Route("/ResourceTypes/{name}", resource_type, methods=["GET"]),
    Route("/Schemas", schemas, methods=["GET"]),
    Route("/Schemas/{urn}", schema, methods=["GET"]),
]
