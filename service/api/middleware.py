"""Pure-ASGI middleware (contextvars survive, no per-request task): request id, audit, tenant auth."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import logs
from service.api.errors import error_response
from service.domain.tenants import token_matches

log = logs.get("scimsync.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContext:
    """Binds a request id (the client's X-Request-Id if sane, else a new one), returns it as a header,
    logs one access line and records the request in the audit log."""

    def __init__(self, app: ASGIApp, deps: Any) -> None:
        self.app = app
        self.deps = deps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        context: dict[str, Any] = {"tenant_id": None}
        scope["scimsync"] = context
        started = time.perf_counter()
        status = 500
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

        started_response = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # The last resort: a bug becomes a SCIM 500 carrying the request id, never a stack trace.
            log.exception("request.failed", error=type(exc).__name__)
            if not started_response:
                await error_response(500, "Internal server error; quote the X-Request-Id")(scope, receive, send_with_id)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            path = scope["path"]
            if path.startswith("/scim/"):
                self.deps.audit.record(context["tenant_id"], scope["method"], path, status, request_id, elapsed_ms)
                log.debug("request.served", method=scope["method"], path=path, status=status, ms=round(elapsed_ms, 2))


class TenantAuth:
    """Bearer-token auth for one tenant's SCIM base URL. Nothing behind it runs unless the token is this
    tenant's own and provisioning is on, so a failed call can't write anything."""

    def __init__(self, app: ASGIApp, deps: Any) -> None:
        self.app = app
        self.deps = deps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tenant_id = scope["path_params"]["tenant_id"]
        scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
        tenant = await self.deps.tenants.get(tenant_id)
        # Same answer for an unknown tenant and a wrong token: no probing which tenants exist.
        if scheme.lower() != "bearer" or tenant is None or not token_matches(token.strip(), tenant.token_hash):
            response = error_response(
                401, "Missing or invalid bearer token", headers={"WWW-Authenticate": 'Bearer realm="scimsync"'}
            )
            await response(scope, receive, send)
            return
        scope["scimsync"]["tenant_id"] = tenant.id
        structlog.contextvars.bind_contextvars(tenant_id=tenant.id)
        if not tenant.enabled:
            await error_response(403, "Provisioning is switched off for this tenant")(scope, receive, send)
            return
        scope["tenant"] = tenant
        await self.app(scope, receive, send)
