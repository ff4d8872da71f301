"""Pure-ASGI middleware (contextvars survive, no per-request task): request id, audit, tracing, tenant auth."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import orjson
import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from starlette.datastructures import Headers
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import logs, tracing
from service.api.errors import error_response
from service.domain.redaction import redacted_body

log = logs.get("scimsync.access")
_SCIM_PREFIX = "/scim/v2/{tenant_id}"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_UNTRACED = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes: no trace worth keeping


class RequestContext:
    """Binds a request id (the client's X-Request-Id if sane, else a new one), returns it as a header,
    logs one access line and records the request in the audit log.

    Tracing (service/tracing.py): on, a SERVER span per request, named by its route template, a child of the
    request's `traceparent` header if it sent one. Off, no span: only a `traceparent` header the request sent is
    kept (tracing.incoming) for the events it writes."""

    def __init__(self, app: ASGIApp, deps: Any) -> None:
        self.app = app
        self.deps = deps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        given = headers.get("x-request-id", "")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        context: dict[str, Any] = {"tenant_id": None, "token_id": None}
        audited = scope["path"].startswith("/scim/")
        # For the admin's activity page: a refused request's body (redacted) and our SCIM error. The request's
        # chunks are kept by reference (no copy) and joined only if the request fails.
        request_chunks: list[bytes] = []
        response_body = bytearray()

        async def receive_copy() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(request_chunks) < 64:
                request_chunks.append(message.get("body", b""))
            return message

        scope["scimsync"] = context
        started = time.perf_counter()
        status = 500
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        span, attached, kept = None, None, None
        traceparent = headers.get("traceparent")
        if tracing.enabled():
            if scope["path"] not in _UNTRACED:
                span = tracing.tracer().start_span(
                    scope["method"],
                    context=tracing.parent(traceparent),
                    kind=trace.SpanKind.SERVER,
                    attributes={"http.request.method": scope["method"], "scimsync.request_id": request_id},
                )
                attached = otel_context.attach(trace.set_span_in_context(span))
        elif traceparent is not None:
            kept = tracing.incoming.set(tracing.normalise(traceparent))

        started_response = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body" and status >= 400 and len(response_body) < 8192:
                response_body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive_copy if audited else receive, send_with_id)
        except Exception as exc:
            # The last resort: a bug becomes a SCIM 500 carrying the request id, never a stack trace.
            log.exception("request.failed", error=type(exc).__name__)
            if span is not None:
                span.set_attribute("error.type", type(exc).__name__)
            if not started_response:
                await error_response(500, "Internal server error; quote the X-Request-Id")(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            elapsed_ms = elapsed * 1000
            path = scope["path"]
            route = route_template(scope)
            if route != "/metrics":
                self.deps.metrics.observe_request(route, scope["method"], status, elapsed, context["tenant_id"])
            if span is not None:
                _end_request_span(span, scope["method"], route, status, context["tenant_id"])
            if attached is not None:
                otel_context.detach(attached)
            if kept is not None:
                tracing.incoming.reset(kept)
            if audited:
                error = _scim_error(bytes(response_body)) if status >= 400 else {}
                if status >= 400:
                    self.deps.metrics.refused(status, error.get("scimType"))
                self.deps.audit.record(
                    context["tenant_id"],
                    scope["method"],
                    path,
                    status,
                    request_id,
                    elapsed_ms,
                    user_agent=headers.get("user-agent"),
                    token_id=context["token_id"],
                    scim_type=error.get("scimType"),
                    detail=error.get("detail"),
                    body=redacted_body(b"".join(request_chunks)) if status >= 400 else None,
                )
                log.debug("request.served", method=scope["method"], path=path, status=status, ms=round(elapsed_ms, 2))


def _end_request_span(span: trace.Span, method: str, route: str, status: int, tenant_id: str | None) -> None:
    """Name the span by its route template (never the raw path: ids; never the query: a filter can name a person)."""
    span.update_name(f"{method} {route}")
    span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if tenant_id is not None:
        span.set_attribute("scimsync.tenant_id", tenant_id)
    if status >= 500:
        span.set_status(trace.StatusCode.ERROR)
    span.end()


def route_template(scope: Scope) -> str:
    """The matched route's template (`/scim/v2/{tenant_id}/Users/{id}`), never the raw path: bounded labels."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if template is None:
        return "unmatched"
    if isinstance(route, Mount):  # refused before the SCIM routes ran (401, 403, 429)
        return f"{template}/*"
    return f"{_SCIM_PREFIX}{template}" if scope["path"].startswith("/scim/") else str(template)


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
        # The tenant's admin sees refused calls to its URL too (e.g. Okta still holding a revoked token).
        scope["scimsync"]["tenant_id"] = tenant.id if tenant is not None else None
        used = tenant.token_for(token.strip(), time.time()) if tenant is not None else None
        # Same answer for an unknown tenant and a wrong token: no probing which tenants exist.
        if scheme.lower() != "bearer" or used is None:
            response = error_response(
                401, "Missing or invalid bearer token", headers={"WWW-Authenticate": 'Bearer realm="scimsync"'}
            )
            await response(scope, receive, send)
            return
        assert tenant is not None
        scope["scimsync"]["token_id"] = used.id
        structlog.contextvars.bind_contextvars(tenant_id=tenant.id)
        if not tenant.enabled:
            await error_response(403, "Provisioning is switched off for this tenant")(scope, receive, send)
            return
        scope["tenant"] = tenant
        await self.app(scope, receive, send)


def _scim_error(body: bytes) -> dict[str, str]:
    """detail and scimType of the SCIM error we answered (RFC 7644 §3.12), as strings; {} if it isn't one."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {k: str(parsed[k])[:1000] for k in ("detail", "scimType") if parsed.get(k) is not None}
