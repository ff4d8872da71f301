"""The provisioning page: SCIM Base URL, bearer tokens (generate, rotate with grace, revoke), on/off switch."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service.admin.pages import deps_of, render
from service.admin.security import not_found, tenant_page
from service.store import access, holds, tenants, tokens
from service.store.access import Grant

GRACE = {"0": "stop at once", "3600": "keep working for 1 hour", "86400": "keep working for 24 hours"}


async def _page(request: Request, grant: Grant, new_token: str | None = None) -> Response:
    deps = deps_of(request)
    async with deps.pool.acquire() as conn:
        tenant = await tenants.get(conn, grant.tenant_id)
        listed = await tokens.listed(conn, grant.tenant_id)
        held = await holds.summary(conn, uuid.UUID(grant.tenant_id), sample=0)
    if tenant is None:
        return not_found(request)
    return render(
        request,
        "provisioning.html",
        tenant=tenant,
        tokens=listed,
        base_url=deps.settings.scim_base_url(tenant.id),
        new_token=new_token,
        grace=GRACE,
        canonical=f"/admin/tenants/{tenant.id}/" if new_token else None,
        held=held[0] if held else None,
    )


@tenant_page
async def page(request: Request, grant: Grant) -> Response:
    return await _page(request, grant)


@tenant_page
async def issue_token(request: Request, grant: Grant) -> Response:
    """Generate (no live token) or rotate; the new token is in this response only, never stored in clear."""
    deps = deps_of(request)
    grace = str((await request.form()).get("grace", "0"))
    if grace not in GRACE:
        grace = "0"
    async with deps.pool.acquire() as conn:
        had = bool(await tokens.listed(conn, grant.tenant_id))
        token = await tokens.rotate(conn, grant.tenant_id, int(grace))
        if token is None:
            return not_found(request)
        what = f"token rotated (previous tokens {GRACE[grace]})" if had else "token generated"
        await access.record_action(conn, grant.tenant_id, grant.label, what, f"new token ends in {token[-4:]}")
    return await _page(request, grant, new_token=token)


@tenant_page
async def revoke_token(request: Request, grant: Grant) -> Response:
    deps = deps_of(request)
    token_id = request.path_params["token_id"]
    async with deps.pool.acquire() as conn:
        live = {t.id: t for t in await tokens.listed(conn, grant.tenant_id)}
        if token_id not in live or not await tokens.revoke(conn, grant.tenant_id, token_id):
            return not_found(request)
        ending = live[token_id].last_four or "(issued before tokens were listed)"
        await access.record_action(conn, grant.tenant_id, grant.label, "token revoked", f"token ending in {ending}")
    return RedirectResponse(f"/admin/tenants/{grant.tenant_id}/", status_code=303)


@tenant_page
async def switch(request: Request, grant: Grant) -> Response:
    deps = deps_of(request)
    enabled = (await request.form()).get("enabled") == "true"
    async with deps.pool.acquire() as conn:
        if not await tenants.set_enabled(conn, grant.tenant_id, enabled):
            return not_found(request)
        action = "provisioning enabled" if enabled else "provisioning disabled"
        await access.record_action(conn, grant.tenant_id, grant.label, action)
    return RedirectResponse(f"/admin/tenants/{grant.tenant_id}/", status_code=303)


@tenant_page
async def guides(request: Request, grant: Grant) -> Response:
    deps = deps_of(request)
    async with deps.pool.acquire() as conn:
        tenant = await tenants.get(conn, grant.tenant_id)
    if tenant is None:
        return not_found(request)
    base_url = deps.settings.scim_base_url(tenant.id)
    return render(request, "guides.html", tenant=tenant, base_url=base_url, entra_url=f"{base_url}?aadOptscim062020")
