"""`scimsync reconcile`: finds drift between the projections and the source of truth; `--fix` repairs it.

The whole pipeline runs (API, relay, both consumers as processes, fixture `pipeline`); drift is injected
with SQL into the projections, as a consumer bug or a manual edit would leave it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from consumers.booking import service as booking
from tests.integration.conftest import TenantInfo
from tests.integration.test_consumers_helpers import ConsumerEnv, db_connect, eventually

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


async def reconcile(env: ConsumerEnv, tenant: TenantInfo, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "reconcile", "--tenant", tenant.id, *args,
        env=env.environ(SCIMSYNC_LOG_LEVEL="warning"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, json.loads(out), err.decode()


async def converged(env: ConsumerEnv, tenant: TenantInfo) -> None:
    async def clean() -> bool:
        code, _, _ = await reconcile(env, tenant)
        return code == 0

    await eventually(clean, within=40, what="the projections to match the source of truth")


async def test_reconcile_finds_injected_drift_and_fix_repairs_it(
    env: ConsumerEnv, pipeline: list[Any], scim: httpx.AsyncClient, tenant: TenantInfo
) -> None:
    ids = []
    for name in ("ann", "ben", "cat", "dan"):
        user = await scim.post("/Users", json={"userName": f"{name}@example.com", "displayName": name.title()})
        ids.append(user.json()["id"])
    ann, ben, cat, dan = ids
    deactivate = {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False}}]}
    assert (await scim.patch(f"/Users/{dan}", json=deactivate)).status_code == 200
    group = await scim.post("/Groups", json={"displayName": "Team", "members": [{"value": ann}, {"value": ben}]})
    gid = group.json()["id"]
    await converged(env, tenant)
    code, report, _ = await reconcile(env, tenant)
    assert code == 0 and report["drift"] is False and report["checked"] == {"users": 4, "groups": 1}

    conn = await db_connect(env)
    try:
        tid = uuid.UUID(tenant.id)
        desk = await booking.add_desk(conn, tenant.id, "D1")
        start = datetime.now(UTC) + timedelta(days=7)
        # Drift a consumer bug could leave behind:
        await conn.execute("DELETE FROM workspace.members WHERE tenant_id = $1 AND user_id = $2", tid, uuid.UUID(ann))
        await conn.execute(
            "UPDATE workspace.members SET active = false WHERE tenant_id = $1 AND user_id = $2", tid, uuid.UUID(ben)
        )
        await conn.execute(
            "UPDATE booking.users SET eligible = false WHERE tenant_id = $1 AND user_id = $2", tid, uuid.UUID(cat)
        )
        await conn.execute(  # a future booking of a deactivated user that was never cancelled
            "INSERT INTO booking.bookings (tenant_id, user_id, desk_id, starts_at, ends_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            tid, uuid.UUID(dan), uuid.UUID(desk.id), start, start + timedelta(hours=8),
        )  # fmt: skip
        code, report, err = await reconcile(env, tenant)
        assert code == 1 and report["drift"] is True
        found = {name: n for name, n in report["found"].items() if n}
        assert found == {
            "workspace.missing": 1,
            "workspace.wrong_attributes": 1,
            "booking.wrong_eligibility": 1,
            "booking.active_bookings_of_inactive_users": 1,
        }
        assert report["examples"]["workspace.missing"] == [ann]
        assert "drift: 1 x workspace.missing" in err

        # --fix re-publishes those users' latest events as repairs; the consumers re-apply them.
        code, report, _ = await reconcile(env, tenant, "--fix")
        assert code == 1 and report["repairs_published"] == 4 and report["unfixable"] == []
        await converged(env, tenant)
        member = await conn.fetchrow(
            "SELECT active FROM workspace.members WHERE tenant_id = $1 AND user_id = $2", tid, uuid.UUID(ann)
        )
        assert member is not None and member["active"] is True
        cancelled = await conn.fetchrow(
            "SELECT status, cancel_reason FROM booking.bookings WHERE tenant_id = $1 AND user_id = $2",
            tid, uuid.UUID(dan),
        )  # fmt: skip
        assert (cancelled["status"], cancelled["cancel_reason"]) == ("cancelled", "user_deactivated")

        # Team drift: a member lost, a stranger added, a whole team gone. A group event is a change, not a
        # snapshot, so --fix re-sends each drifted group's history and the consumer rebuilds those teams.
        other = (await scim.post("/Groups", json={"displayName": "Other", "members": [{"value": cat}]})).json()["id"]
        rename = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "Team A"}]}
        assert (await scim.patch(f"/Groups/{gid}", json=rename)).status_code == 204
        await converged(env, tenant)
        await conn.execute(
            "DELETE FROM workspace.team_members WHERE tenant_id = $1 AND group_id = $2 AND user_id = $3",
            tid, uuid.UUID(gid), uuid.UUID(ben),
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO workspace.team_members (tenant_id, group_id, user_id) VALUES ($1, $2, $3)",
            tid, uuid.UUID(gid), uuid.UUID(dan),
        )  # fmt: skip
        await conn.execute("DELETE FROM workspace.teams WHERE group_id = $1", uuid.UUID(other))
        await conn.execute("DELETE FROM workspace.team_members WHERE group_id = $1", uuid.UUID(other))
        code, report, _ = await reconcile(env, tenant)
        assert code == 1
        assert {n: c for n, c in report["found"].items() if c} == {"teams.missing": 1, "teams.wrong_members": 1}
        code, report, _ = await reconcile(env, tenant, "--fix")
        assert code == 1 and report["repairs_published"] == 3  # Team: created, updated; Other: created
        await converged(env, tenant)
        teams = await conn.fetch(
            "SELECT t.display_name, array_agg(m.user_id::text ORDER BY m.user_id) AS members FROM workspace.teams t"
            " JOIN workspace.team_members m USING (tenant_id, group_id) WHERE t.tenant_id = $1"
            " GROUP BY t.display_name ORDER BY t.display_name",
            tid,
        )
        assert [(t["display_name"], t["members"]) for t in teams] == [
            ("Other", [cat]),
            ("Team A", sorted([ann, ben])),
        ]
    finally:
        await conn.close()


async def test_reconcile_that_cannot_check_exits_2(tenant: TenantInfo, stack: Any) -> None:
    bad = {**os.environ, "DATABASE_URL": "postgresql://nobody:wrong@127.0.0.1:1/none"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "reconcile", env=bad, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2 and b"Traceback" not in err
