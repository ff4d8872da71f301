"""`scimsync reconcile`: do the booking and workspace projections match the source of truth?

Compares `users`, `groups` and `group_members` with `workspace.members`, `workspace.teams`,
`workspace.team_members`, `booking.users` and `booking.bookings`, straight in SQL (the projections live in
the same database here; reconcile reads them, it never writes them). `--fix` re-publishes, with the
`scimsync_repair` header, the latest event of every user that differs (the consumers re-apply it even at
the version they already hold) and the whole history of every group that differs, marked
`scimsync_repair_through: N` (its latest version): a group event is a change, not a snapshot, so the
consumer resets the team at its first event and re-applies the rest (consumers/runtime/domain.py). Repairs are
re-publications like a replay: `scimsync_replay: 1` too, and each event's stored `traceparent`.

A user or group whose event stream waits at the outbox's gate (held by the deprovisioning brake, or parked) differs
on purpose: it is reported apart (`waiting_at_gate`), not as drift, and `--fix` re-sends nothing of it (that would
let a held deactivation out, or a stream's later events past its gate). So does a team that still lists a person
whose deletion is held (the removal is kept for the release: store/leaving.py). `scimsync holds list` and
`scimsync relay parked` say why it waits.

Exit status: 0 no drift, 1 drift found (repairs published with --fix), 2 could not check.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from service.relay.publisher import Publisher
from service.settings import Settings
from service.store import outbox

REPAIR_HEADER = ("scimsync_repair", b"1")
REPAIR_THROUGH = "scimsync_repair_through"

# Each check: (name, what it means, SQL returning (tenant_id, id) of every drifted user or group).
# `$1` is the tenant filter (NULL: every tenant).
_USER_CHECKS: list[tuple[str, str, str]] = [
    (
        "workspace.missing",
        "a user with no workspace member",
        """SELECT u.tenant_id, u.id FROM users u
           LEFT JOIN workspace.members m ON m.tenant_id = u.tenant_id AND m.user_id = u.id
           WHERE m.user_id IS NULL""",
    ),
    (
        "workspace.extra",
        "a workspace member whose user is gone",
        """SELECT m.tenant_id, m.user_id FROM workspace.members m
           LEFT JOIN users u ON u.tenant_id = m.tenant_id AND u.id = m.user_id
           WHERE u.id IS NULL""",
    ),
    (
        "workspace.stale_version",
        "a workspace member at another version than its user",
        """SELECT u.tenant_id, u.id FROM users u
           JOIN workspace.members m ON m.tenant_id = u.tenant_id AND m.user_id = u.id
           WHERE m.version <> u.version""",
    ),
    (
        "workspace.wrong_attributes",
        "a workspace member at its user's version but with another active flag or userName",
        """SELECT u.tenant_id, u.id FROM users u
           JOIN workspace.members m ON m.tenant_id = u.tenant_id AND m.user_id = u.id
           WHERE m.version = u.version AND (m.active <> u.active OR m.user_name <> u.user_name)""",
    ),
    (
        "booking.missing",
        "a user the booking domain doesn't know",
        """SELECT u.tenant_id, u.id FROM users u
           LEFT JOIN booking.users b ON b.tenant_id = u.tenant_id AND b.user_id = u.id
           WHERE b.user_id IS NULL""",
    ),
    (
        "booking.extra",
        "a booking user still eligible or not marked deleted whose user is gone",
        """SELECT b.tenant_id, b.user_id FROM booking.users b
           LEFT JOIN users u ON u.tenant_id = b.tenant_id AND u.id = b.user_id
           WHERE u.id IS NULL AND (NOT b.deleted OR b.eligible)""",
    ),
    (
        "booking.stale_version",
        "a booking user at another version than its user",
        """SELECT u.tenant_id, u.id FROM users u
           JOIN booking.users b ON b.tenant_id = u.tenant_id AND b.user_id = u.id
           WHERE b.version <> u.version""",
    ),
    (
        "booking.wrong_eligibility",
        "a booking user at its user's version, eligible while inactive or the other way round",
        """SELECT u.tenant_id, u.id FROM users u
           JOIN booking.users b ON b.tenant_id = u.tenant_id AND b.user_id = u.id
           WHERE b.version = u.version AND (b.eligible <> u.active OR b.deleted)""",
    ),
    (
        "booking.active_bookings_of_inactive_users",
        "a confirmed future booking of a user who is inactive or gone",
        """SELECT DISTINCT k.tenant_id, k.user_id FROM booking.bookings k
           LEFT JOIN users u ON u.tenant_id = k.tenant_id AND u.id = k.user_id
           WHERE k.status = 'confirmed' AND k.starts_at > now() AND (u.id IS NULL OR NOT u.active)""",
    ),
]

# Teams that still have a member whose removal is held with its deletion (store/leaving.py): that difference waits
# for `scimsync holds release`, like a gated stream, and no group event exists yet that could repair it.
_TEAMS_WAITING = """SELECT DISTINCT r.tenant_id, r.group_id FROM held_group_removals r
    JOIN workspace.team_members tm ON tm.tenant_id = r.tenant_id AND tm.group_id = r.group_id AND tm.user_id = r.user_id
"""

_TEAM_CHECKS: list[tuple[str, str, str]] = [
    (
        "teams.missing",
        "a group with no workspace team",
        """SELECT g.tenant_id, g.id FROM groups g
           LEFT JOIN workspace.teams t ON t.tenant_id = g.tenant_id AND t.group_id = g.id
           WHERE t.group_id IS NULL""",
    ),
    (
        "teams.extra",
        "a workspace team whose group is gone",
        """SELECT t.tenant_id, t.group_id FROM workspace.teams t
           LEFT JOIN groups g ON g.tenant_id = t.tenant_id AND g.id = t.group_id
           WHERE g.id IS NULL""",
    ),
    (
        "teams.stale_version",
        "a team at another version than its group",
        """SELECT g.tenant_id, g.id FROM groups g
           JOIN workspace.teams t ON t.tenant_id = g.tenant_id AND t.group_id = g.id
           WHERE t.version <> g.version""",
    ),
    (
        "teams.wrong_members",
        "a team at its group's version whose members differ (a removal held with its deletion aside)",
        """SELECT DISTINCT d.tenant_id, d.group_id FROM (
               (SELECT m.tenant_id, m.group_id, m.user_id FROM group_members m
                EXCEPT SELECT tm.tenant_id, tm.group_id, tm.user_id FROM workspace.team_members tm)
               UNION ALL
               (SELECT tm.tenant_id, tm.group_id, tm.user_id FROM workspace.team_members tm
                JOIN groups g ON g.tenant_id = tm.tenant_id AND g.id = tm.group_id
                EXCEPT SELECT m.tenant_id, m.group_id, m.user_id FROM group_members m
                EXCEPT SELECT r.tenant_id, r.group_id, r.user_id FROM held_group_removals r)
           ) AS d
           JOIN groups g ON g.tenant_id = d.tenant_id AND g.id = d.group_id
           JOIN workspace.teams t ON t.tenant_id = g.tenant_id AND t.group_id = g.id AND t.version = g.version""",
    ),
]


@dataclass
class Report:
    drift: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # check → (tenant_id, id)
    checked_users: int = 0
    checked_groups: int = 0
    repairs_published: int = 0
    unfixable: list[str] = field(default_factory=list)  # ids with no event to re-publish
    gated: dict[str, list[str]] = field(default_factory=dict)  # "users"/"groups" → ids that differ behind a gate

    @property
    def drifted(self) -> bool:
        return any(self.drift.values())

    def found_by(self, checks: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
        """(tenant id, id) of everything one of `checks` found, sorted."""
        return sorted({pair for name, _, _ in checks for pair in self.drift.get(name, ())})

    def summary(self) -> dict[str, Any]:
        return {
            "drift": self.drifted,
            "checked": {"users": self.checked_users, "groups": self.checked_groups},
            "found": {name: len(pairs) for name, pairs in self.drift.items()},
            "examples": {name: [i for _, i in pairs[:5]] for name, pairs in self.drift.items() if pairs},
            "repairs_published": self.repairs_published,
            "unfixable": self.unfixable[:20],
            "waiting_at_gate": {
                "users": len(self.gated.get("users", [])),
                "groups": len(self.gated.get("groups", [])),
                "examples": [*self.gated.get("users", []), *self.gated.get("groups", [])][:5],
            },
        }


def _scoped(sql: str) -> str:
    """Wrap a check so `$1` (a tenant id, or NULL for all) narrows it."""
    return f"SELECT * FROM ({sql}) AS c(tenant_id, id) WHERE $1::uuid IS NULL OR c.tenant_id = $1::uuid"


async def check(conn: Any, tenant_id: str | None) -> Report:
    tenant = uuid.UUID(tenant_id) if tenant_id else None
    report = Report()
    for name, _meaning, sql in _USER_CHECKS + _TEAM_CHECKS:
        rows = await conn.fetch(_scoped(sql), tenant)
        report.drift[name] = sorted((str(r["tenant_id"]), str(r["id"])) for r in rows)
    for kind, aggregate, checks in (("users", "user", _USER_CHECKS), ("groups", "group", _TEAM_CHECKS)):
        gated = await outbox.blocked_subjects(conn, aggregate, report.found_by(checks))
        report.gated[kind] = sorted(gated)
        for name, _, _ in checks:
            report.drift[name] = [pair for pair in report.drift[name] if pair[1] not in gated]
    drifted = {i for _, i in report.found_by(_TEAM_CHECKS)}
    waiting = {str(r["id"]) for r in await conn.fetch(_scoped(_TEAMS_WAITING), tenant)} - drifted
    report.gated["groups"] = sorted(set(report.gated["groups"]) | waiting)
    scope = "WHERE $1::uuid IS NULL OR tenant_id = $1::uuid"
    report.checked_users = int(await conn.fetchval(f"SELECT count(*) FROM users {scope}", tenant))
    report.checked_groups = int(await conn.fetchval(f"SELECT count(*) FROM groups {scope}", tenant))
    return report


async def repair(conn: Any, settings: Settings, report: Report) -> None:
    """Re-publish the latest event of every drifted user and the history of every drifted group, as repairs."""
    users, groups = report.found_by(_USER_CHECKS), report.found_by(_TEAM_CHECKS)
    latest = await outbox.latest_events(conn, "user", users)
    histories = await outbox.histories(conn, "group", groups)
    found = {e.subject for e in latest} | set(histories)
    report.unfixable = [i for _, i in users + groups if i not in found]
    publisher = Publisher(
        settings.kafka_bootstrap_servers,
        settings.topics(),
        settings.topic_partitions,
        security=settings.kafka.client_options(),
        replay=True,  # marked `scimsync_replay: 1`; each event keeps its stored traceparent
    )
    try:
        # Connect first, then re-read erasures: a user deleted while Kafka was slow to answer goes out erased, as
        # the log now has it, never with the personal data read before (the relay does the same before a re-send).
        await publisher.connect()
        if latest:
            latest = await outbox.erase_deleted(conn, latest)
            (await publisher.publish(latest, extra_headers=[REPAIR_HEADER])).require_all()
        for history in histories.values():
            through = (REPAIR_THROUGH, str(history[-1].version).encode())
            (await publisher.publish(history, extra_headers=[REPAIR_HEADER, through])).require_all()
    finally:
        await publisher.close()
    report.repairs_published = len(latest) + sum(len(h) for h in histories.values())


def meanings() -> dict[str, str]:
    return {name: meaning for name, meaning, _ in _USER_CHECKS + _TEAM_CHECKS}
