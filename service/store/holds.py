"""Held events: the deprovisioning brake (service/domain/brake.py) applied to the outbox's per-stream gate.

A held event is an unpublished event with `state = 'held'`: the relay claims nothing of its stream (that user's
later events wait behind it, so per-user order holds) while every other stream keeps flowing (outbox.py).

`after_deprovisioning` runs inside the deactivation's or deletion's own transaction, after its event is written,
under a per-tenant advisory lock: a tenant's deprovisionings are counted one at a time, so a burst of concurrent
ones can't all slip under the threshold together. Only deprovisionings take that lock; other writes never wait.

`release` publishes what the identity provider says *now*: a held user who was reactivated meanwhile has the
held deactivation set aside as superseded (marked done, never sent: consumers never cancel that person's bookings)
and the later events flow; every other held stream is simply let go, in order. A held deletion's team removals
(kept by store/leaving.py, not gated: that would stop the groups' other changes) are announced right after.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from service import logs
from service.domain.brake import DEPROVISIONING, BrakePolicy
from service.domain.events import StoredEvent
from service.store import leaving, outbox

log = logs.get(__name__)

_BRAKE_LOCK = 7_202_614  # advisory lock class (two-key form: class, hash of the tenant id)
_LOCK = "SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))"

_POLICY = """
SELECT brake_enabled, brake_minimum, brake_percent, brake_window_s, brake_released_at FROM tenants WHERE id = $1
"""


def _held(row: str = "events") -> str:
    """SQL, true when `row` is a held gate of a user (outbox.py's gate in the `held` state)."""
    return f"{outbox.is_gate(row)} AND {row}.state = '{outbox.HELD}' AND {row}.aggregate = 'user'"


_ENGAGED = f"SELECT EXISTS (SELECT 1 FROM events WHERE tenant_id = $1 AND {_held()})"
_WAITS = f"SELECT EXISTS (SELECT 1 FROM events WHERE tenant_id = $1 AND subject = $2 AND {_held()})"
_RECENT = """
SELECT count(*) FROM events
WHERE tenant_id = $1 AND type IN ('user.deactivated', 'user.deleted') AND occurred_at > $2
"""
_ACTIVE = "SELECT count(*) FROM users WHERE tenant_id = $1 AND active"
_SEQUENCE = "SELECT sequence FROM events WHERE id = $1"
_LOCK_USERS = "SELECT 1 FROM users WHERE tenant_id = $1 AND id = ANY($2::uuid[]) ORDER BY id FOR UPDATE"
_SUPERSEDED = "; superseded at release: the user is active again, never published"
_REARM = "UPDATE tenants SET brake_released_at = now() WHERE id = $1"

_SUMMARY = f"""
SELECT tenant_id, count(DISTINCT subject) AS people, count(*) AS events, min(state_since) AS since,
       (SELECT count(*) FROM held_group_removals r WHERE r.tenant_id = events.tenant_id) AS team_removals
FROM events WHERE {_held()} AND ($1::uuid IS NULL OR tenant_id = $1)
GROUP BY tenant_id ORDER BY since
"""
_SAMPLE = f"""
SELECT DISTINCT ON (events.subject) events.subject, events.type, u.user_name
FROM events LEFT JOIN users u ON u.tenant_id = events.tenant_id AND u.id = events.subject
WHERE events.tenant_id = $1 AND {_held()}
ORDER BY events.subject, events.sequence LIMIT $2
"""


def _policy(row: Any) -> BrakePolicy:
    defaults = BrakePolicy()
    return BrakePolicy(
        enabled=row["brake_enabled"],
        minimum=defaults.minimum if row["brake_minimum"] is None else row["brake_minimum"],
        percent=defaults.percent if row["brake_percent"] is None else row["brake_percent"],
        window=defaults.window if row["brake_window_s"] is None else timedelta(seconds=row["brake_window_s"]),
    )


async def policy(conn: Any, tenant_id: uuid.UUID) -> BrakePolicy | None:
    row = await conn.fetchrow(_POLICY, tenant_id)
    return None if row is None else _policy(row)


async def set_policy(conn: Any, tenant_id: uuid.UUID, new: BrakePolicy) -> bool:
    done: str = await conn.execute(
        "UPDATE tenants SET brake_enabled = $2, brake_minimum = $3, brake_percent = $4, brake_window_s = $5"
        " WHERE id = $1",
        tenant_id,
        new.enabled,
        new.minimum,
        new.percent,
        int(new.window.total_seconds()),
    )
    return done == "UPDATE 1"


async def after_deprovisioning(conn: Any, tenant_id: uuid.UUID, event_id: uuid.UUID, now: datetime) -> bool:
    """Hold the event just written if the tenant's brake says so; True when held. In the write's transaction."""
    await conn.execute(_LOCK, _BRAKE_LOCK, tenant_id)
    row = await conn.fetchrow(_POLICY, tenant_id)
    brake = _policy(row)
    if not brake.enabled:
        return False
    if await conn.fetchval(_ENGAGED, tenant_id):
        await _hold(conn, event_id, "deprovisioning brake: the tenant's deprovisionings are held")
        return True
    start = now - brake.window
    if row["brake_released_at"] is not None:
        start = max(start, row["brake_released_at"])
    recent = int(await conn.fetchval(_RECENT, tenant_id, start))
    if recent <= brake.minimum:  # the threshold is never below the minimum: no need to count the active users
        return False
    active = int(await conn.fetchval(_ACTIVE, tenant_id))
    if not brake.exceeded(recent, active):
        return False
    threshold = brake.threshold(active + recent)
    await _hold(
        conn,
        event_id,
        f"deprovisioning brake: {recent} deprovisionings within {brake.window}, more than the {threshold} allowed",
    )
    log.warning("brake.engaged", tenant_id=str(tenant_id), recent=recent, threshold=threshold)
    return True


async def waits(conn: Any, tenant_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Is one of the user's events held (the rest of its stream waits behind it)?"""
    return bool(await conn.fetchval(_WAITS, tenant_id, user_id))


async def _hold(conn: Any, event_id: uuid.UUID, reason: str) -> None:
    """Close the outbox's gate at the event: it and every later event of the user wait (outbox.py)."""
    await outbox.gate(conn, [await conn.fetchval(_SEQUENCE, event_id)], outbox.HELD, reason)


@dataclass(frozen=True)
class Released:
    users: int  # held users whose events now flow, in order
    superseded: int  # held users active again: their held deprovisioning is set aside, never sent
    team_removals: int  # held deletions' removals from groups, now announced (store/leaving.py)


async def release(conn: Any, tenant_id: uuid.UUID, user_id: uuid.UUID | None = None) -> Released:
    """Let the tenant's held users go (or one of them), each as its latest state says; see the module docstring.

    The held users' rows are locked before the brake's tenant lock, the order a deprovisioning takes them in (its
    user's row, then the brake): the other way round, the identity provider deleting a held person during a
    release deadlocked with it. People held meanwhile (not locked yet) make it start over with them too.
    """
    only = None if user_id is None else [user_id]
    while True:
        subjects = sorted(
            {uuid.UUID(g.subject) for g in await outbox.gated(conn, outbox.HELD, tenant_id, "user", only)}
        )
        async with conn.transaction():
            await conn.execute(_LOCK_USERS, tenant_id, subjects)  # no write slips in between reading and releasing
            await conn.execute(_LOCK, _BRAKE_LOCK, tenant_id)  # and nobody is held meanwhile
            gates = await outbox.gated(conn, outbox.HELD, tenant_id, "user", only)
            held = {g.subject for g in gates}
            if {uuid.UUID(s) for s in held} - set(subjects):
                continue  # held since we looked: lock them too
            latest = await outbox.latest_events(conn, "user", [(str(tenant_id), s) for s in held])
            active_again = {e.subject for e in latest if _active(e)}
            await outbox.set_aside(
                conn, [g.sequence for g in gates if g.subject in active_again], outbox.HELD, _SUPERSEDED
            )
            await outbox.release(conn, [g.sequence for g in gates if g.subject not in active_again], outbox.HELD)
            let_go = len(held) - len(active_again)
            if user_id is None:
                await conn.execute(_REARM, tenant_id)
            await conn.execute("SELECT pg_notify($1, '')", outbox.CHANNEL)  # wake the relay now, not at its next poll
        break
    removals = await leaving.flush(conn, tenant_id)  # after the release's locks are let go: see leaving.py
    log.warning(
        "brake.released",
        tenant_id=str(tenant_id),
        users=let_go,
        superseded=len(active_again),
        team_removals=removals,
    )
    return Released(users=let_go, superseded=len(active_again), team_removals=removals)


def _active(latest: StoredEvent) -> bool:
    return latest.type not in DEPROVISIONING and bool(latest.data.get("active", True))


async def summary(conn: Any, tenant_id: uuid.UUID | None, sample: int = 10) -> list[dict[str, Any]]:
    """Per tenant that holds: how many people and events, since when, and a sample of who (ids and userNames)."""
    out = []
    for row in await conn.fetch(_SUMMARY, tenant_id):
        who = await conn.fetch(_SAMPLE, row["tenant_id"], sample)
        out.append(
            {
                "tenant": str(row["tenant_id"]),
                "people": row["people"],
                "events": row["events"],
                "since": row["since"].isoformat(),
                "team_removals": row["team_removals"],
                "sample": [{"id": str(w["subject"]), "userName": w["user_name"], "type": w["type"]} for w in who],
            }
        )
    return out
