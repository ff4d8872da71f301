"""Getting in: the operator API that issues setup links, opening a link, signing out."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from service.admin.pages import deps_of, message, render
from service.admin.security import COOKIE, cookie_options, csrf_ok, same_origin
from service.settings import Settings
from service.store import access

DEFAULT_MINUTES = 15
MAX_MINUTES = 7 * 24 * 60
_GONE = (
    "This link can't be used",
    "It has been used already, or it has expired. Setup links work once, for a "
    "short time. Ask your account owner for a new one.",
)


def link_url(settings: Settings, secret: str) -> str:
    return f"{settings.public_url}/admin/links/{secret}"


async def issue(conn: Any, settings: Settings, tenant_id: str, minutes: int, label: str) -> dict[str, Any] | None:
    """What the CLI and the operator API hand out; None when there is no such tenant."""
    issued = await access.issue_link(conn, tenant_id, minutes, label)
    if issued is None:
        return None
    secret, expires = issued
    return {
        "tenant_id": tenant_id,
        "url": link_url(settings, secret),
        "expires_at": expires.isoformat(),
        "label": label,
    }


def _operator(request: Request, settings: Settings) -> bool:
    if settings.operator_key is None:
        return False
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # Digests first: compare_digest on equal lengths, so the time taken says nothing about the key's length.
    expected = hashlib.sha256(settings.operator_key.encode()).digest()
    return scheme.lower() == "bearer" and hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(), expected)


async def operator_links(request: Request) -> Response:
    """POST /admin/api/tenants/{tenant_id}/links {"minutes": 15, "label": "..."}: a setup link for the host product."""
    deps = deps_of(request)
    if deps.settings.operator_key is None:
        return JSONResponse({"detail": "Not found"}, status_code=404)
    if not _operator(request, deps.settings):
        return JSONResponse({"detail": "Missing or invalid operator key"}, 401, {"WWW-Authenticate": "Bearer"})
    try:
        body = orjson.loads(await request.body() or b"{}")
        minutes = int(body.get("minutes", DEFAULT_MINUTES))
        label = str(body.get("label", "setup link"))[:200]
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return JSONResponse({"detail": 'Body must be JSON like {"minutes": 15, "label": "Jane (IT)"}'}, 400)
    if not 1 <= minutes <= MAX_MINUTES:
        return JSONResponse({"detail": f"minutes must be between 1 and {MAX_MINUTES}"}, 400)
    async with deps.pool.acquire() as conn:
        issued = await issue(conn, deps.settings, request.path_params["tenant_id"], minutes, label)
    if issued is None:
        return JSONResponse({"detail": "No such tenant"}, 404)
    return JSONResponse(issued, 201)


async def open_link(request: Request) -> Response:
    """GET shows a button; only its POST burns the link (mail scanners GET links; they must not use them up)."""
    deps = deps_of(request)
    secret = request.path_params["secret"]
    async with deps.pool.acquire() as conn:
        if request.method == "GET":
            grant = await access.peek_link(conn, secret)
            if grant is None:
                return message(request, 410, *_GONE)
            return render(request, "link.html", label=grant.label)
        if not same_origin(request, deps.settings):
            return message(request, 403, "This form has expired", "Open the link again.")
        opened = await access.open_link(conn, secret)
    if opened is None:
        return message(request, 410, *_GONE)
    grant, session = opened
    response = RedirectResponse(f"/admin/tenants/{grant.tenant_id}/", status_code=303)
    response.set_cookie(COOKIE, session, **cookie_options(deps.settings))
    return response


async def sign_out(request: Request) -> Response:
    """Ends the session (its cookie alone no longer works) and drops the cookie: only with the page's CSRF token,
    or any site could sign an admin out by posting here."""
    deps = deps_of(request)
    secret = request.cookies.get(COOKIE, "")
    form = await request.form()
    if secret:
        if not same_origin(request, deps.settings) or not csrf_ok(secret, form.get("csrf")):
            return message(request, 403, "This form has expired", "Reload the page and try again.")
        async with deps.pool.acquire() as conn:
            await access.end_session(conn, secret)
    response = message(request, 200, "Signed out", "You can close this tab.")
    response.delete_cookie(COOKIE, **{k: v for k, v in cookie_options(deps.settings).items() if k != "httponly"})
    return response
