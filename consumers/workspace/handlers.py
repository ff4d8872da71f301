"""Workspace handlers: every event but user.deleted carries the whole user, so each one is an upsert."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from consumers.runtime import snapshot
from consumers.runtime.domain import Domain, Handler
from consumers.runtime.envelope import Event

UPSERT = """
INSERT INTO workspace.members AS m (tenant_id, user_id, user_name, display_name, given_name, family_name, email,
                                    department, active, version, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, coalesce($11, now()))
ON CONFLICT (tenant_id, user_id) DO UPDATE SET
    user_name = EXCLUDED.user_name, display_name = EXCLUDED.display_name, given_name = EXCLUDED.given_name,
    family_name = EXCLUDED.family_name, email = EXCLUDED.email, department = EXCLUDED.department,
    active = EXCLUDED.active, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
"""


async def member_changed(conn: Any, event: Event) -> None:
    data = event.data
    await conn.execute(
        UPSERT,
        event.tenant_id,
        event.user_id,
        snapshot.user_name(data) or event.user_id,
        snapshot.display_name(data),
        snapshot.name_part(data, "givenName"),
        snapshot.name_part(data, "familyName"),
        snapshot.email(data),
        snapshot.department(data),
        data["active"],
        event.version,
        event.time,
    )


async def member_deleted(conn: Any, event: Event) -> None:
    sql = "DELETE FROM workspace.members WHERE tenant_id = $1 AND user_id = $2"
    await conn.execute(sql, event.tenant_id, event.user_id)


HANDLERS: dict[str, Handler] = {
    "user.created": member_changed,
    "user.updated": member_changed,
    "user.deactivated": member_changed,
    "user.reactivated": member_changed,
    "user.deleted": member_deleted,
}

DOMAIN = Domain(
    name="workspace",
    schema_sql=Path(__file__).with_name("schema.sql"),
    versions_table="workspace.versions",
    handlers=HANDLERS,
)
