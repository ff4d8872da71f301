"""Workspace handlers for users (every event but user.deleted carries the whole user: each one is an upsert), and
the domain: members from the user topic, teams from the group topic (teams.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from consumers.runtime import snapshot
from consumers.runtime.domain import Domain, Stream, user_handlers
from consumers.runtime.envelope import Event
from consumers.workspace import teams

UPSERT = """
INSERT INTO workspace.members AS m (tenant_id, user_id, user_name, display_name, given_name, family_name, email,
                                    department, active, version, updated_at, manager_id, site, building, floor, team)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, coalesce($11, now()), $12, $13, $14, $15, $16)
ON CONFLICT (tenant_id, user_id) DO UPDATE SET
    user_name = EXCLUDED.user_name, display_name = EXCLUDED.display_name, given_name = EXCLUDED.given_name,
    family_name = EXCLUDED.family_name, email = EXCLUDED.email, department = EXCLUDED.department,
    active = EXCLUDED.active, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at,
    manager_id = EXCLUDED.manager_id, site = EXCLUDED.site, building = EXCLUDED.building, floor = EXCLUDED.floor,
    team = EXCLUDED.team
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
        snapshot.manager(data),
        *(snapshot.workplace(data, a) for a in ("site", "building", "floor", "team")),
    )


async def member_deleted(conn: Any, event: Event) -> None:
    """The member goes, and leaves every team (teams.USER_LEFT)."""
    sql = f"WITH member AS (DELETE FROM workspace.members WHERE tenant_id = $1 AND user_id = $2) {teams.USER_LEFT}"
    await conn.execute(sql, event.tenant_id, event.user_id)


HANDLERS = user_handlers(member_changed, member_deleted)

DOMAIN = Domain(
    name="workspace",
    schema_sql=Path(__file__).with_name("schema.sql"),
    streams={
        "user_topic": Stream(versions_table="workspace.versions", handlers=HANDLERS),
        "group_topic": Stream(
            versions_table="workspace.group_versions",
            handlers=teams.HANDLERS,
            version_attribute="groupversion",
            id_column="group_id",
            snapshots=False,  # membership_changed carries only the change: a rebuild needs every event
            reset=teams.team_deleted,  # a team's history re-sent by `reconcile --fix` starts from nothing
            held_table="workspace.held_group_events",  # a gap in a group's versions holds it (runtime/gaps.py)
        ),
    },
    # Everything in the schema is derived from the events.
    projection=(
        "workspace.members",
        "workspace.versions",
        "workspace.teams",
        "workspace.team_members",
        "workspace.group_versions",
        "workspace.held_group_events",
    ),
    rebuild_marker="workspace.rebuild_pending",
)
