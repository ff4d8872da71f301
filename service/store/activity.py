"""What the admin console's activity page reads: one tenant's SCIM requests (newest first) and admin actions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.store.audit import BODY_DAYS


@dataclass(frozen=True)
class Request:
    id: int
    at: datetime
    method: str
    path: str
    status: int
    duration_ms: float
    user_agent: str | None
    scim_type: str | None
    detail: str | None
    body: str | None  # redacted JSON text, only for refused requests younger than BODY_DAYS


@dataclass(frozen=True)
class Action:
    at: datetime
    actor: str
    action: str
    detail: str | None


async def requests(
    conn: Any, tenant_id: str, errors_only: bool, before_id: int | None, limit: int
) -> tuple[list[Request], int | None]:
    """A page of requests, newest first, and the id to ask for the next (older) page with, if there is one."""
    rows = await conn.fetch(
        f"""
        SELECT id, at, method, path, status, duration_ms, user_agent, scim_type, detail,
               CASE WHEN at > now() - make_interval(days => {BODY_DAYS}) THEN body::text END AS body
        FROM scim_requests
        WHERE tenant_id = $1 AND ($2::bigint IS NULL OR id < $2) AND (NOT $3 OR status >= 400)
        ORDER BY id DESC LIMIT $4
        """,
        uuid.UUID(tenant_id),
        before_id,
        errors_only,
        limit + 1,
    )
    page = [Request(**dict(r)) for r in rows[:limit]]
    return page, (page[-1].id if len(rows) > limit else None)


async def actions(conn: Any, tenant_id: str, limit: int = 50) -> list[Action]:
    rows = await conn.fetch(
        "SELECT at, actor, action, detail FROM admin_actions WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2",
        uuid.UUID(tenant_id),
        limit,
    )
    return [Action(**dict(r)) for r in rows]
