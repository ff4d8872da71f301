"""Team handlers: `workspace.teams` and `workspace.team_members` from the group lifecycle events.

The runtime has already moved `workspace.group_versions` forward (and locked the row) when a handler runs.
Each handler is idempotent for the group's latest event (repair events re-apply it, runtime/domain.py).
`updated_at` is the event's time, so a rebuilt projection is equal, row for row, to the one it replaced.
"""

from __future__ import annotations

from typing import Any

from consumers.runtime.domain import Handler
from consumers.runtime.envelope import Event

# group.created carries the whole team: it becomes exactly that (a re-applied creation drops members it doesn't
# list). One statement: the team, the members it no longer lists, the members it lists.
CREATED = """
WITH team AS (
    INSERT INTO workspace.teams AS t (tenant_id, group_id, display_name, external_id, version, updated_at)
    VALUES ($1, $2, $3, $4, $5, coalesce($6, now()))
    ON CONFLICT (tenant_id, group_id) DO UPDATE SET
        display_name = EXCLUDED.display_name, external_id = EXCLUDED.external_id,
        version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
), gone AS (
    DELETE FROM workspace.team_members
    WHERE tenant_id = $1 AND group_id = $2 AND NOT (user_id = ANY ($7::uuid[]))
)
INSERT INTO workspace.team_members (tenant_id, group_id, user_id)
SELECT $1, $2, member FROM unnest($7::uuid[]) AS member
ON CONFLICT DO NOTHING
"""

# group.updated carries every attribute of the team (never members): an upsert.
UPDATED = """
INSERT INTO workspace.teams AS t (tenant_id, group_id, display_name, external_id, version, updated_at)
VALUES ($1, $2, $3, $4, $5, coalesce($6, now()))
ON CONFLICT (tenant_id, group_id) DO UPDATE SET
    display_name = EXCLUDED.display_name, external_id = EXCLUDED.external_id,
    version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
"""

# Only the change. Members are added only to a team that exists (it does: a group's events apply in version order,
# a missing one holds the group, runtime/gaps.py); the user may be unknown to the directory.
MEMBERSHIP_CHANGED = """
WITH team AS (
    UPDATE workspace.teams SET version = $3, updated_at = coalesce($4, now())
    WHERE tenant_id = $1 AND group_id = $2
    RETURNING group_id
), gone AS (
    DELETE FROM workspace.team_members WHERE tenant_id = $1 AND group_id = $2 AND user_id = ANY ($6::uuid[])
)
INSERT INTO workspace.team_members (tenant_id, group_id, user_id)
SELECT $1, team.group_id, member FROM team, unnest($5::uuid[]) AS member
ON CONFLICT DO NOTHING
"""

DELETED = """
WITH team AS (DELETE FROM workspace.teams WHERE tenant_id = $1 AND group_id = $2)
DELETE FROM workspace.team_members WHERE tenant_id = $1 AND group_id = $2
"""

# user.deleted (user topic): the user leaves every team. The group topic says so too (a membership_changed per
# group), but the two topics aren't ordered relative to each other, so the directory doesn't wait for it.
USER_LEFT = "DELETE FROM workspace.team_members WHERE tenant_id = $1 AND user_id = $2"


def _external_id(data: dict[str, Any]) -> str | None:
    value = data.get("externalId")
    return value if isinstance(value, str) else None


async def team_created(conn: Any, event: Event) -> None:
    data = event.data
    members = [str(m) for m in data.get("members") or ()]
    await conn.execute(
        CREATED,
        event.tenant_id,
        event.subject,
        data["displayName"],
        _external_id(data),
        event.version,
        event.time,
        members,
    )


async def team_updated(conn: Any, event: Event) -> None:
    data = event.data
    await conn.execute(
        UPDATED, event.tenant_id, event.subject, data["displayName"], _external_id(data), event.version, event.time
    )


async def team_membership_changed(conn: Any, event: Event) -> None:
    data = event.data
    added = [str(m) for m in data.get("added") or ()]
    removed = [str(m) for m in data.get("removed") or ()]
    await conn.execute(MEMBERSHIP_CHANGED, event.tenant_id, event.subject, event.version, event.time, added, removed)


async def team_deleted(conn: Any, event: Event) -> None:
    await conn.execute(DELETED, event.tenant_id, event.subject)


HANDLERS: dict[str, Handler] = {
    "group.created": team_created,
    "group.updated": team_updated,
    "group.membership_changed": team_membership_changed,
    "group.deleted": team_deleted,
}
