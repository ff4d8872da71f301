"""A tenant's SCIM bearer tokens (table tenant_tokens): issue, rotate with a grace period, revoke, list.

Every change NOTIFYs the tenants channel in its transaction, so each API process drops its cached copy of the
tenant at once: a revoked token stops working on the next request, not after a cache TTL.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.domain.tenants import ActiveToken, hash_token, new_token

CHANNEL = "scimsync_tenants"
_LIVE = "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"


@dataclass(frozen=True)
class TokenInfo:
    """A live token as the admin page lists it (never the token itself)."""

    id: str
    last_four: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


async def notify(conn: Any, tenant_id: str) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, tenant_id)


async def insert(conn: Any, tenant_id: uuid.UUID) -> tuple[str, str]:
    """A new token for the tenant, in the caller's transaction: (the token, shown once; its id)."""
    token, token_id = new_token(), uuid.uuid4()
    await conn.execute(
        "INSERT INTO tenant_tokens (id, tenant_id, token_hash, last_four) VALUES ($1, $2, $3, $4)",
        token_id,
        tenant_id,
        hash_token(token),
        token[-4:],
    )
    return token, str(token_id)


async def rotate(conn: Any, tenant_id: str, grace_seconds: int) -> str | None:
    """Issue a new token; every other live token stops after `grace_seconds` (0: at once). None: no tenant."""
    key = uuid.UUID(tenant_id)
    async with conn.transaction():
        if await conn.fetchval("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", key) is None:
            return None
        if grace_seconds <= 0:
            await conn.execute(f"UPDATE tenant_tokens SET revoked_at = now() WHERE tenant_id = $1 AND {_LIVE}", key)
        else:
            await conn.execute(
                "UPDATE tenant_tokens SET expires_at = least(coalesce(expires_at, 'infinity'),"
                f" now() + make_interval(secs => $2)) WHERE tenant_id = $1 AND {_LIVE}",
                key,
                float(grace_seconds),
            )
        token, _ = await insert(conn, key)
        await notify(conn, tenant_id)
    return token


async def revoke(conn: Any, tenant_id: str, token_id: str) -> bool:
    """Revoke one live token of this tenant (False if it is not one: another tenant's id reads as unknown)."""
    async with conn.transaction():
        done = await conn.execute(
            f"UPDATE tenant_tokens SET revoked_at = now() WHERE tenant_id = $1 AND id = $2 AND {_LIVE}",
            uuid.UUID(tenant_id),
            uuid.UUID(token_id),
        )
        await notify(conn, tenant_id)
    return bool(done == "UPDATE 1")


async def live(conn: Any, tenant_id: uuid.UUID) -> tuple[ActiveToken, ...]:
    """The tenant's usable tokens, for the API's auth (expiry is checked again at use: the copy is cached)."""
    rows = await conn.fetch(
        f"SELECT id, token_hash, expires_at FROM tenant_tokens WHERE tenant_id = $1 AND {_LIVE}", tenant_id
    )
    return tuple(
        ActiveToken(str(r["id"]), bytes(r["token_hash"]), r["expires_at"].timestamp() if r["expires_at"] else None)
        for r in rows
    )


async def listed(conn: Any, tenant_id: str) -> list[TokenInfo]:
    """Live tokens, newest first, with when each was last used (from the request log: no write per request)."""
    rows = await conn.fetch(
        f"""
        SELECT t.id, t.last_four, t.created_at, t.expires_at,
               (SELECT max(r.at) FROM scim_requests r WHERE r.token_id = t.id) AS last_used_at
        FROM tenant_tokens t WHERE t.tenant_id = $1 AND {_LIVE} ORDER BY t.created_at DESC
        """,
        uuid.UUID(tenant_id),
    )
    return [TokenInfo(str(r["id"]), r["last_four"], r["created_at"], r["expires_at"], r["last_used_at"]) for r in rows]
