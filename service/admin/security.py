"""Sessions, CSRF and response headers of the admin console.

The session cookie is HttpOnly (no script reads it), `Secure` when the public URL is https, and SameSite=Strict:
no other site can make the browser send it, not even with a top-level link. Strict would normally break arriving
from a link in an email (that first navigation is cross-site, so the cookie is not sent), but here the link never
needs the cookie: opening it shows a page whose button (a same-site POST) burns the link and sets the cookie.
That button also keeps mail scanners, which follow links with GET, from burning links.

Every POST carries a CSRF token: an HMAC of the session secret, so it needs no storage and dies with the session.
A POST whose Origin header names another site is refused as well.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.admin.pages import deps_of, message
from service.settings import Settings
from service.store import access
from service.store.access import Grant

COOKIE = "scimsync_admin"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # A setup link's URL is a secret: never in a Referer to another site. (Not no-referrer: then Chromium sends
    # `Origin: null` on form posts, and the Origin check below could not tell our own pages from others.)
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),  # a token shown once must not sit in a cache
]

Handler = Callable[[Request, Grant], Awaitable[Response]]


def csrf_token(session_secret: str) -> str:
    return hmac.new(session_secret.encode(), b"scimsync admin csrf", hashlib.sha256).hexdigest()


def csrf_ok(session_secret: str, given: object) -> bool:
    return isinstance(given, str) and hmac.compare_digest(csrf_token(session_secret), given)


def cookie_options(settings: Settings) -> dict[str, Any]:
    return {"httponly": True, "secure": settings.https, "samesite": "strict", "path": "/admin"}


def same_origin(request: Request, settings: Settings) -> bool:
    """A browser's POST names its page's origin; absent (non-browser clients) is allowed, the CSRF token decides."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    public = urlsplit(settings.public_url)
    return origin == f"{public.scheme}://{public.netloc}"


def _canonical(tenant_id: str) -> str | None:
    try:
        return str(uuid.UUID(tenant_id))
    except ValueError:
        return None


def tenant_page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a page of /admin/tenants/{tenant_id}/...: a live session of that very tenant, and a CSRF token on POST.

    A session of another tenant gets the same 404 as an unknown page: it learns nothing about tenant ids.
    """

    async def endpoint(request: Request) -> Response:
        deps = deps_of(request)
        secret = request.cookies.get(COOKIE, "")
        grant = None
        if secret:
            async with deps.pool.acquire() as conn:
                grant = await access.session(conn, secret, deps.settings.admin_idle_minutes)
        if grant is None:
            return message(
                request,
                401,
                "Your session has ended",
                "Sessions end after a period without activity. Ask your account owner for a new setup link.",
            )
        if _canonical(request.path_params["tenant_id"]) != grant.tenant_id:
            return not_found(request)
        request.state.grant = grant
        request.state.csrf = csrf_token(secret)
        if request.method == "POST":
            form = await request.form()
            if not same_origin(request, deps.settings) or not csrf_ok(secret, form.get("csrf")):
                return message(request, 403, "This form has expired", "Reload the page and try again.", grant=grant)
        return await handler(request, grant)

    return endpoint


def not_found(request: Request) -> Response:
    grant = getattr(request.state, "grant", None)
    return message(request, 404, "Page not found", "There is nothing at this address.", grant=grant)


class SecurityHeaders:
    """Pure ASGI: the headers above on every response under /admin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
