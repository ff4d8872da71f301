"""A deleted user leaving its groups: announced at once, or held with its deletion by the deprovisioning brake.

SCIM's truth changes at once either way: the user's member rows go in the deletion's transaction, so `GET /Groups`
never lists a deleted user. What the workspace hears depends on the deletion:

- not held (`announce`): each group gets a `group.membership_changed` removing the user, at its next version;
- held (`defer`): no group changes version and no event is written; each removal is kept in
  `held_group_removals`. Gating the group's stream instead would stop every other member's changes with it.

`flush` (run by `scimsync holds release`) announces the kept removals of every user no longer held, with the same
event, at the group's next version then, so consumers see consecutive versions; a group deleted meanwhile took its
rows with it. It runs in a transaction of its own that locks groups only, in id order (as a deletion does), after
the release's own (users, then the brake): holding users or the brake while waiting for a group would deadlock with
a deletion (its user, its groups, then the brake) or a group PATCH adding a held person (its group, then that user).
A flush that didn't happen (the process died between the two) is made up by the next release, which flushes every
removal whose deletion isn't held any more.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from service.store import outbox

# Lock the user's groups in id order before touching member rows: a group PATCH that re-adds the user waits for us
# instead of deadlocking with us, and each group's events stay in its commit order. The caller holds the user's row
# lock, so no group can add it meanwhile (the foreign key check waits) and none is missed.
_LOCK_GROUPS = """
SELECT 1 FROM groups
WHERE tenant_id = $1 AND id IN (SELECT group_id FROM group_members WHERE tenant_id = $1 AND user_id = $2)
ORDER BY id FOR UPDATE
"""
_LEAVE = "DELETE FROM group_members WHERE tenant_id = $1 AND user_id = $2 RETURNING group_id"

# One `group.membership_changed` per (group, user, traceparent) in `removed`, removing that user, at the group's next
# versions (a group's removals in user id order). Groups gone meanwhile get none. $1 tenant, $2 time.
_ANNOUNCE = """
WITH removed AS ({removed}), numbered AS (
    SELECT group_id, user_id, traceparent, row_number() OVER (PARTITION BY group_id ORDER BY user_id) AS n
    FROM removed
), bumped AS (
    UPDATE groups SET version = groups.version + c.n, updated_at = $2
    FROM (SELECT group_id, max(n) AS n FROM numbered GROUP BY group_id) AS c
    WHERE groups.tenant_id = $1 AND groups.id = c.group_id
    RETURNING groups.id, groups.version - c.n AS before
)
INSERT INTO events (id, tenant_id, aggregate, subject, type, version, occurred_at, data, traceparent)
SELECT gen_random_uuid(), $1, 'group', b.id, 'group.membership_changed', b.before + r.n, $2,
       jsonb_build_object('id', b.id::text, 'added', '[]'::jsonb, 'removed', jsonb_build_array(r.user_id::text)),
       r.traceparent
FROM bumped AS b JOIN numbered AS r ON r.group_id = b.id
ORDER BY b.id, r.n
"""
_ANNOUNCE_NOW = _ANNOUNCE.format(
    removed="SELECT unnest($3::uuid[]) AS group_id, $4::uuid AS user_id, $5::text AS traceparent"
)

_DEFER = """
INSERT INTO held_group_removals (tenant_id, group_id, user_id, held_since, traceparent)
SELECT $1, g, $2, $4, $5 FROM unnest($3::uuid[]) AS g
"""

# A kept removal whose deletion is released: its user's stream has no held gate any more.
_RELEASED = f"""
r.tenant_id = $1 AND NOT EXISTS (
    SELECT 1 FROM events WHERE {outbox.is_gate()} AND events.state = '{outbox.HELD}' AND events.aggregate = 'user'
        AND events.tenant_id = r.tenant_id AND events.subject = r.user_id)
"""
_LOCK_RELEASED = f"""
SELECT id FROM groups WHERE tenant_id = $1 AND id IN (SELECT r.group_id FROM held_group_removals r WHERE {_RELEASED})
ORDER BY id FOR UPDATE
"""
# Only the groups locked: a removal released after the lock is the next flush's.
_FLUSH = _ANNOUNCE.format(
    removed=f"DELETE FROM held_group_removals r WHERE {_RELEASED} AND r.group_id = ANY($3::uuid[])"
    " RETURNING r.group_id, r.user_id, r.traceparent"
)


async def leave(conn: Any, tenant: uuid.UUID, user: uuid.UUID) -> list[uuid.UUID]:
    """Delete the user's member rows (its groups locked first); the groups it was in. The user's row is locked."""
    await conn.execute(_LOCK_GROUPS, tenant, user)
    return [r["group_id"] for r in await conn.fetch(_LEAVE, tenant, user)]


async def announce(
    conn: Any, tenant: uuid.UUID, user: uuid.UUID, groups: list[uuid.UUID], now: datetime, traceparent: str | None
) -> None:
    """The user left `groups` (`leave`): write each group's event now."""
    if groups:
        await conn.execute(_ANNOUNCE_NOW, tenant, now, groups, user, traceparent)


async def defer(
    conn: Any, tenant: uuid.UUID, user: uuid.UUID, groups: list[uuid.UUID], now: datetime, traceparent: str | None
) -> None:
    """The user left `groups` (`leave`) in a held deletion: keep the removals for its release."""
    if groups:
        await conn.execute(_DEFER, tenant, user, groups, now, traceparent)


async def flush(conn: Any, tenant: uuid.UUID) -> int:
    """Announce the tenant's kept removals whose deletion is released; how many. In a transaction of its own."""
    async with conn.transaction():
        groups = [r["id"] for r in await conn.fetch(_LOCK_RELEASED, tenant)]
        if not groups:
            return 0
        done: str = await conn.execute(_FLUSH, tenant, datetime.now(UTC), groups)
    return int(done.rsplit(" ", 1)[-1])
