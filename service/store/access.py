"""Admin console access: one-time setup links and the sessions they start. Only SHA-256 hashes are stored.

A link is burned by the same statement that checks it (`UPDATE ... WHERE used_at IS NULL RETURNING`), so two concurrent
uses can't both start a session. Sessions end after idle time, and 12 hours after they began whatever happens.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.domain.tenants import hash_token

MAX_SESSION_HOURS = 12


@dataclass(frozen=True)
class Grant:
    """Who a link or session is for: one tenant, and the label the link was issued with (shown as "who")."""

    tenant_id: str
    label: str


async def issue_link(conn: Any, tenant_id: str, minutes: int, label: str) -> tuple[str, datetime] | None:
    """A new link secret and its expiry; None when there is no such tenant."""
    secret = secrets.token_urlsafe(32)
    try:
        key = uuid.UUID(tenant_id)
    except ValueError:
        return None
    async with conn.transaction():
        if await conn.fetchval("SELECT 1 FROM tenants WHERE id = $1", key) is None:
            return None
        expires = await conn.fetchval(
            "INSERT INTO admin_links (token_hash, tenant_id, label, expires_at)"
            " VALUES ($1, $2, $3, now() + make_interval(mins => $4)) RETURNING expires_at",
            hash_token(secret),
            key,
            label,
            minutes,
        )
        await record_action(conn, str(key), "operator", "setup link issued", f"for {label}, valid {minutes} min")
        # Housekeeping, rare enough to ride along: links and sessions that can no longer be used.
        await conn.execute("DELETE FROM admin_links WHERE expires_at < now() - interval '7 days'")
        await conn.execute(
            "DELETE FROM admin_sessions WHERE created_at < now() - make_interval(hours => $1 + 24)", MAX_SESSION_HOURS
        )
    return secret, expires


async def peek_link(conn: Any, secret: str) -> Grant | None:
    """The link's grant if it is still usable; does not burn it (a mail scanner's GET must not)."""
    row = await conn.fetchrow(
        "SELECT tenant_id, label FROM admin_links WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()",
        hash_token(secret),
    )
    return Grant(str(row["tenant_id"]), row["label"]) if row else None


async def open_link(conn: Any, secret: str) -> tuple[Grant, str] | None:
    """Burn the link and start a session: (its grant, the session secret for the cookie). None: used or expired."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "UPDATE admin_links SET used_at = now()"
            " WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING tenant_id, label",
            hash_token(secret),
        )
        if row is None:
            return None
        session = secrets.token_urlsafe(32)
        await conn.execute(
            "INSERT INTO admin_sessions (token_hash, tenant_id, label) VALUES ($1, $2, $3)",
            hash_token(session),
            row["tenant_id"],
            row["label"],
        )
    return Grant(str(row["tenant_id"]), row["label"]), session


async def session(conn: Any, secret: str, idle_minutes: int) -> Grant | None:
    """The session's grant if it is live, and mark it used now (idle expiry counts from here)."""
    row = await conn.fetchrow(
        "UPDATE admin_sessions SET last_seen_at = now() WHERE token_hash = $1 AND ended_at IS NULL"
        " AND last_seen_at > now() - make_interval(mins => $2) AND created_at > now() - make_interval(hours => $3)"
        " RETURNING tenant_id, label",
        hash_token(secret),
        idle_minutes,
        MAX_SESSION_HOURS,
    )
    return Grant(str(row["tenant_id"]), row["label"]) if row else None


async def end_session(conn: Any, secret: str) -> None:
    await conn.execute("UPDATE admin_sessions SET ended_at = now() WHERE token_hash = $1", hash_token(secret))


async def record_action(conn: Any, tenant_id: str, actor: str, action: str, detail: str | None = None) -> None:
    """An admin action for the tenant's activity page (who: the setup link's label, or "operator")."""
    await conn.execute(
        "INSERT INTO admin_actions (tenant_id, actor, action, detail) VALUES ($1, $2, $3, $4)",
        uuid.UUID(tenant_id),
        actor,
        action,
        detail,
    )
