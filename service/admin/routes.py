"""The console's routes, mounted by the app's composition root at /admin."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from service.admin import links, provisioning, records
from service.admin.pages import HERE
from service.admin.security import SecurityHeaders, not_found

TENANT = "/tenants/{tenant_id}"

# Every page of one tenant: tests walk this list with another tenant's session and ids.
TENANT_ROUTES = [
    Route(f"{TENANT}/", provisioning.page, methods=["GET"]),
    Route(f"{TENANT}/tokens", provisioning.issue_token, methods=["POST"]),
    Route(f"{TENANT}/tokens/{{token_id}}/revoke", provisioning.revoke_token, methods=["POST"]),
    Route(f"{TENANT}/provisioning", provisioning.switch, methods=["POST"]),
    Route(f"{TENANT}/guides", provisioning.guides, methods=["GET"]),
    Route(f"{TENANT}/activity", records.requests_page, methods=["GET"]),
    Route(f"{TENANT}/users", records.users_page, methods=["GET"]),
    Route(f"{TENANT}/users/{{user_id}}", records.user_page, methods=["GET"]),
    Route(f"{TENANT}/groups", records.groups_page, methods=["GET"]),
    Route(f"{TENANT}/health", records.health_page, methods=["GET"]),
]


async def _not_found(request: Request) -> Response:
    return not_found(request)


def mount() -> Mount:
    return Mount(
        "/admin",
        routes=[
            Route("/api/tenants/{tenant_id}/links", links.operator_links, methods=["POST"]),
            Route("/links/{secret}", links.open_link, methods=["GET", "POST"]),
            Route("/sign-out", links.sign_out, methods=["POST"]),
            *TENANT_ROUTES,
            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="admin-static"),
            Route("/{rest:path}", _not_found, methods=["GET", "POST"]),
        ],
        middleware=[Middleware(SecurityHeaders)],
    )
