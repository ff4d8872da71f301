"""The deprovisioning brake, end to end: the real API, relay and both consumers.

An identity provider deactivating 300 of a tenant's 1,000 users within a minute: the first 200 (20%) reach the
consumers, the rest are held in the outbox while the identity provider sees success; bookings of held people are
intact; another tenant is unaffected; 40 held people are reactivated in the IdP meanwhile; `holds release` then
delivers exactly 260 deactivations and leaves the 40 untouched; reconcile and a replay agree afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from consumers.booking import service as booking
from consumers.cli import rebuild_command
from service.domain.brake import BrakePolicy
from service.store import holds, tenants
from service.store.pool import connect
from tests.integration import test_consumers_rebuild
from tests.integration.admin_helpers import signed_in
from tests.integration.conftest import ROOT, TenantInfo
from tests.integration.test_consumers_e2e import DEACTIVATE, REACTIVATE, next_week
from tests.integration.test_consumers_helpers import ConsumerEnv, db_connect, eventually
from tests.integration.topics import TopicReader

own_database = test_consumers_rebuild.own_database  # fixture: a database of the test's own, for `scimsync rebuild`


async def _all(calls: list[Callable[[], Awaitable[httpx.Response]]], width: int = 16) -> list[httpx.Response]:
    gate = asyncio.Semaphore(width)

    async def one(call: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
        async with gate:
            for _ in range(60):
                try:
                    answer = await call()
                except httpx.TransportError:  # a reset connection: as an identity provider would, try again
                    continue
                if answer.status_code != 429:  # over the tenant's rate limit: wait as told, like Okta and Entra
                    return answer
                await asyncio.sleep(float(answer.headers["Retry-After"]))
            raise AssertionError("no answer after 60 tries")

    return await asyncio.gather(*(one(c) for c in calls))


def _cli(env: ConsumerEnv, *args: str) -> tuple[int, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        env={**os.environ, **env.environ(), "SCIMSYNC_LOG_LEVEL": "error"},
        capture_output=True,
        timeout=60,
    )
    if args[0] != "holds" and args[0] != "reconcile":
        return done.returncode, None  # replay reports on stderr
    return done.returncode, orjson.loads(done.stdout) if done.stdout.strip() else None


async def test_a_mass_deactivation_is_held_past_the_threshold_and_released_as_the_idp_says_now(
    env: ConsumerEnv,
    pipeline: list[Any],
    scim: httpx.AsyncClient,
    tenant: TenantInfo,
    db: Any,
    api_url: str,
    own_database: str,
) -> None:
    created = await _all(
        [lambda n=n: scim.post("/Users", json={"userName": f"p{n}@example.com"}) for n in range(1000)]  # type: ignore[misc]
    )
    assert all(r.status_code == 201 for r in created)
    ids = [r.json()["id"] for r in created]
    conn = await db_connect(env)
    try:

        async def eligible(value: bool) -> int:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM booking.users WHERE tenant_id = $1 AND eligible = $2", tenant.id, value
                )
            )

        async def version_in_booking(uid: str) -> int:
            return int(
                await conn.fetchval(
                    "SELECT version FROM booking.users WHERE tenant_id = $1 AND user_id = $2", tenant.id, uid
                )
            )

        async def members_inactive() -> int:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM workspace.members WHERE tenant_id = $1 AND NOT active", tenant.id
                )
            )

        await eventually(lambda: _equals(eligible(True), 1000), 60, "1,000 users eligible in booking")
        targets = ids[:300]
        for n, uid in enumerate(targets):
            desk = await booking.add_desk(conn, tenant.id, f"desk-{n}")
            await booking.book(conn, tenant.id, uid, desk.id, next_week(9), next_week(17))

        # Another tenant, deprovisioning one person during the wave.
        other_tenant, other_token = await tenants.create(db, f"other-{uuid.uuid4().hex[:6]}")
        other_headers = {"Authorization": f"Bearer {other_token}"}
        other_base = str(scim.base_url).replace(tenant.id, other_tenant.id)
        # Fresh clients: the API closes keep-alive connections idle for 5 s, which `scim` has by now.
        async with (
            httpx.AsyncClient(base_url=other_base, headers=other_headers, timeout=30) as other,
            httpx.AsyncClient(base_url=tenant.base_url, headers=tenant.headers, timeout=30) as idp,
        ):
            bystander = (await other.post("/Users", json={"userName": "bystander@example.com"})).json()["id"]
            started = asyncio.get_running_loop().time()
            answers = await _all([lambda uid=uid: idp.patch(f"/Users/{uid}", json=DEACTIVATE) for uid in targets])  # type: ignore[misc]
            assert asyncio.get_running_loop().time() - started < 60  # 300 within a minute
            assert [r.status_code for r in answers] == [200] * 300  # the identity provider sees success throughout
            assert (await other.patch(f"/Users/{bystander}", json=DEACTIVATE)).status_code == 200

        held = {
            str(r["subject"])
            for r in await db.fetch(
                "SELECT subject FROM events WHERE tenant_id = $1 AND state = 'held' AND published_at IS NULL",
                uuid.UUID(tenant.id),
            )
        }
        assert len(held) == 100 and held <= set(targets)

        async def bystander_applied() -> bool:
            return (
                await conn.fetchval(
                    "SELECT NOT eligible FROM booking.users WHERE tenant_id = $1 AND user_id = $2",
                    other_tenant.id,
                    bystander,
                )
                is True
            )

        await eventually(bystander_applied, 30, "the other tenant's deactivation applied")
        await eventually(lambda: _equals(eligible(False), 200), 30, "the first 200 deactivations applied")
        await eventually(lambda: _equals(members_inactive(), 200), 30, "workspace: 200 inactive")
        assert (
            await db.fetchval(
                "SELECT count(*) FROM events WHERE published_at IS NULL AND state IS NULL AND tenant_id = $1",
                uuid.UUID(tenant.id),
            )
            == 0
        )  # nothing else is waiting: the held 100 are all that is kept back
        assert await eligible(False) == 200

        async def confirmed(uids: set[str]) -> int:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM booking.bookings WHERE tenant_id = $1 AND status = 'confirmed'"
                    " AND user_id = ANY($2::uuid[])",
                    tenant.id,
                    [uuid.UUID(u) for u in uids],
                )
            )

        assert await confirmed(held) == 100  # held people keep their bookings
        assert await confirmed(set(targets) - held) == 0

        code, listing = _cli(env, "holds", "list", "--tenant", tenant.id)
        assert code == 1 and listing[0]["people"] == 100 and len(listing[0]["sample"]) == 10
        assert {w["userName"] for w in listing[0]["sample"]} <= {f"p{n}@example.com" for n in range(300)}
        # Loud: one structured log line per wave, and the gauges the alert rules watch.
        api_log = ROOT / ".pytest_cache" / f"api-{urlsplit(api_url).port}.log"
        engaged = [e for e in map(json.loads, api_log.read_text().splitlines()) if e.get("event") == "brake.engaged"]
        engaged = [e for e in engaged if e["tenant_id"] == tenant.id]
        assert [(e["level"], e["recent"], e["threshold"]) for e in engaged] == [("warning", 201, 200)]

        async def gauges() -> bool:  # the API refreshes them in the background
            metrics = (await scim.get(f"{api_url}/metrics")).text.splitlines()
            value = {line.split()[0]: float(line.split()[1]) for line in metrics if line.startswith("scimsync_outbox")}
            return value["scimsync_outbox_held_events"] >= 100 and value["scimsync_outbox_oldest_held_age_seconds"] > 0

        await eventually(gauges, 30, "the held gauges")
        admin = await signed_in(db, api_url, tenant.id)  # the tenant's IT admin sees it too
        try:
            for page in ("/", "/health"):
                shown = (await admin.get(f"/admin/tenants/{tenant.id}{page}")).text
                assert "Deprovisioning held: 100 people" in shown
        finally:
            await admin.aclose()

        back = sorted(held)[:40]
        async with httpx.AsyncClient(base_url=tenant.base_url, headers=tenant.headers, timeout=30) as idp:
            answers = await _all([lambda uid=uid: idp.patch(f"/Users/{uid}", json=REACTIVATE) for uid in back])  # type: ignore[misc]
        assert [r.status_code for r in answers] == [200] * 40
        # Their reactivations wait behind the held deactivations: a later change of someone else goes out, not them.
        assert (await scim.patch(f"/Users/{ids[-1]}", json=TITLE)).status_code == 200
        await eventually(lambda: _equals(version_in_booking(ids[-1]), 2), 30, "a later change of another user")
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM booking.users WHERE tenant_id = $1 AND user_id = ANY($2::uuid[])"
                " AND version = 1 AND eligible",
                tenant.id,
                [uuid.UUID(u) for u in back],
            )
            == 40
        )

        async with TopicReader(env.kafka, env.topic) as topic:
            code, released = _cli(env, "holds", "release", tenant.id)
            assert code == 0 and (released["released"], released["superseded"]) == (60, 40)
            await eventually(lambda: _equals(eligible(False), 260), 30, "260 deactivations applied after release")
            records = await topic.to_the_end()
        deactivations = {
            r.value["id"]: r.key.split(":")[1]
            for r in records
            if r.key.startswith(f"{tenant.id}:") and r.value["type"] == "user.deactivated"
        }
        assert len(deactivations) == 260 and set(deactivations.values()) == set(targets) - set(back)
        await eventually(lambda: _equals(eligible(False), 260), 30, "260 deactivations applied after release")
        await eventually(lambda: _equals(members_inactive(), 260), 30, "workspace: 260 inactive")
        assert await confirmed(set(back)) == 40  # reactivated while held: never cancelled
        assert await confirmed(held - set(back)) == 0
        assert _cli(env, "holds", "list", "--tenant", tenant.id) == (0, [])

        code, report = _cli(env, "reconcile", "--tenant", tenant.id)
        assert code == 0, report
        # A replay of the tenant's whole log (superseded deactivations included) changes nothing downstream.
        code, _ = _cli(env, "replay", "--tenant", tenant.id)
        assert code == 0
        code, report = _cli(env, "reconcile", "--tenant", tenant.id)
        assert code == 0, report
        assert await eligible(False) == 260 and await confirmed(set(back)) == 40

        # A rebuild of both projections from the topics (replayed events included) agrees with them.
        rebuilt = env.settings(database_url=own_database, group_prefix=f"{env.topic}.rebuild.")
        for domain in ("booking", "workspace"):
            assert await rebuild_command(domain, rebuilt) == 0
        other_db = await db_connect(ConsumerEnv(own_database, env.kafka, env.topic))
        try:
            for table in ("booking.users", "workspace.members"):
                assert await _rows(other_db, table, tenant.id) == await _rows(conn, table, tenant.id), table
        finally:
            await other_db.close()
    finally:
        await conn.close()


async def _rows(conn: Any, table: str, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's rows of a projection, without when they were written."""
    rows = await conn.fetch(f"SELECT * FROM {table} WHERE tenant_id = $1 ORDER BY user_id", tenant_id)
    return [{k: v for k, v in r.items() if k != "updated_at"} for r in rows]


TITLE = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [{"op": "replace", "path": "title", "value": "Engineer"}],
}


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_a_replay_or_a_reconcile_fix_during_a_hold_sends_nothing_it_holds(
    env: ConsumerEnv, pipeline: list[Any], scim: httpx.AsyncClient, tenant: TenantInfo, db: Any
) -> None:
    """The SRE's routine tools (the runbook's replay after a Kafka outage, reconcile --fix) must not leak a hold."""
    await holds.set_policy(db, uuid.UUID(tenant.id), BrakePolicy(minimum=0, percent=0))  # hold from the first one
    leaver = (await scim.post("/Users", json={"userName": "leaver@example.com"})).json()["id"]
    stayer = (await scim.post("/Users", json={"userName": "stayer@example.com"})).json()["id"]
    conn = await db_connect(env)
    try:

        async def booking_users() -> int:
            return int(await conn.fetchval("SELECT count(*) FROM booking.users WHERE tenant_id = $1", tenant.id))

        await eventually(lambda: _equals(booking_users(), 2), 30, "both users in booking")
        desk = await booking.add_desk(conn, tenant.id, "desk-1")
        await booking.book(conn, tenant.id, leaver, desk.id, next_week(9), next_week(17))
        assert (await scim.patch(f"/Users/{leaver}", json=DEACTIVATE)).status_code == 200
        held = await db.fetchval(
            "SELECT id FROM events WHERE tenant_id = $1 AND state = 'held' AND published_at IS NULL",
            uuid.UUID(tenant.id),
        )
        assert held is not None
        # Drift for reconcile to repair meanwhile: booking lost the stayer.
        await conn.execute("DELETE FROM booking.users WHERE tenant_id = $1 AND user_id = $2", tenant.id, stayer)

        async with TopicReader(env.kafka, env.topic) as topic:
            code, report = _cli(env, "reconcile", "--tenant", tenant.id, "--fix")
            assert code == 1 and report["repairs_published"] == 1, report
            assert report["waiting_at_gate"] == {"users": 1, "groups": 0, "examples": [leaver]}, report
            assert _cli(env, "replay", "--tenant", tenant.id)[0] == 0
            records = await topic.to_the_end()
        assert str(held) not in {r.value["id"] for r in records}  # neither replayed nor sent as a repair
        await eventually(lambda: _equals(booking_users(), 2), 30, "the stayer repaired")
        assert await conn.fetchval(
            "SELECT eligible FROM booking.users WHERE tenant_id = $1 AND user_id = $2", tenant.id, leaver
        )
        assert (
            await conn.fetchval(
                "SELECT status FROM booking.bookings WHERE tenant_id = $1 AND user_id = $2", tenant.id, leaver
            )
            == "confirmed"
        )
    finally:
        await conn.close()


async def test_a_tenant_with_the_brake_off_is_never_held(scim: httpx.AsyncClient, tenant: TenantInfo, db: Any) -> None:
    await holds.set_policy(db, uuid.UUID(tenant.id), BrakePolicy(enabled=False))
    created = await _all([lambda n=n: scim.post("/Users", json={"userName": f"q{n}@example.com"}) for n in range(60)])  # type: ignore[misc]
    await _all([lambda r=r: scim.delete(f"/Users/{r.json()['id']}") for r in created])  # type: ignore[misc]
    assert (
        await db.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1 AND state = 'held'", uuid.UUID(tenant.id))
        == 0
    )


async def test_past_the_minimum_deletions_are_held_with_a_reason(
    scim: httpx.AsyncClient, tenant: TenantInfo, db: Any
) -> None:
    created = await _all([lambda n=n: scim.post("/Users", json={"userName": f"r{n}@example.com"}) for n in range(60)])  # type: ignore[misc]
    answers = await _all([lambda r=r: scim.delete(f"/Users/{r.json()['id']}") for r in created])  # type: ignore[misc]
    assert {r.status_code for r in answers} == {204}
    rows = await db.fetch(
        "SELECT type, state_reason FROM events WHERE tenant_id = $1 AND state = 'held'", uuid.UUID(tenant.id)
    )
    # 60 deletions of a 60-user tenant: 20% is 12, so the minimum (50) rules; the 51st and later are held.
    assert len(rows) == 10 and {r["type"] for r in rows} == {"user.deleted"}
    assert "deprovisioning brake" in rows[0]["state_reason"]
    # The identity provider finds them gone, held or not.
    assert {(await scim.get(f"/Users/{r.json()['id']}")).status_code for r in created} == {404}
    assert (await scim.get("/Users")).json()["totalResults"] == 0


async def test_a_tenant_policy_set_by_the_cli_and_one_person_released(
    env: ConsumerEnv, scim: httpx.AsyncClient, tenant: TenantInfo
) -> None:
    code, shown = _cli(env, "holds", "policy", tenant.id)
    assert code == 0 and shown == {
        "tenant": tenant.id,
        "enabled": True,
        "minimum": 50,
        "percent": 20,
        "window_minutes": 60.0,
    }
    assert _cli(env, "holds", "policy", tenant.id, "--percent", "101")[0] == 2
    code, shown = _cli(env, "holds", "policy", tenant.id, "--minimum", "2", "--percent", "0", "--window-minutes", "10")
    assert code == 0 and (shown["minimum"], shown["percent"], shown["window_minutes"]) == (2, 0, 10.0)

    users = [(await scim.post("/Users", json={"userName": f"s{n}@example.com"})).json()["id"] for n in range(6)]
    for uid in users[:5]:
        assert (await scim.patch(f"/Users/{uid}", json=DEACTIVATE)).status_code == 200

    async def held() -> set[str]:
        _, listing = _cli(env, "holds", "list", "--tenant", tenant.id)
        return {w["id"] for w in listing[0]["sample"]} if listing else set()

    assert await held() == set(users[2:5])  # more than 2 within 10 minutes: the third and later
    # What the identity provider reads back is what it said, held or not.
    for uid in users[:5]:
        assert (await scim.get(f"/Users/{uid}")).json()["active"] is False
    code, released = _cli(env, "holds", "release", tenant.id, "--user", users[3])
    assert code == 0 and (released["released"], released["superseded"]) == (1, 0)
    assert await held() == {users[2], users[4]}

    # Switched off: nothing more is held, even while earlier holds wait.
    code, shown = _cli(env, "holds", "policy", tenant.id, "--off")
    assert code == 0 and shown["enabled"] is False
    assert (await scim.delete(f"/Users/{users[5]}")).status_code == 204
    assert await held() == {users[2], users[4]}


async def test_a_release_while_the_identity_provider_deletes_a_held_person_deadlocks_neither(
    scim: httpx.AsyncClient, tenant: TenantInfo, db: Any, database_url: str
) -> None:
    """A release and a deprovisioning of one of its held people, at the same moment: both go through."""
    tid = uuid.UUID(tenant.id)
    await holds.set_policy(db, tid, BrakePolicy(minimum=0, percent=0))  # hold from the first one
    uid = (await scim.post("/Users", json={"userName": "racer@example.com"})).json()["id"]
    assert (await scim.patch(f"/Users/{uid}", json=DEACTIVATE)).status_code == 200
    gate, releaser = await connect(database_url), await connect(database_url)
    try:
        # Line both up behind the brake's tenant lock (held here), the release first, then the deletion.
        await gate.execute("SELECT pg_advisory_lock(7202614, hashtext($1::uuid::text))", tid)

        async def waiting() -> int:
            return int(
                await db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type IN ('Lock', 'Advisory')"
                )
            )

        release = asyncio.create_task(holds.release(releaser, tid))
        await eventually(lambda: _equals(waiting(), 1), 10, "the release waiting")
        deletion = asyncio.create_task(scim.delete(f"/Users/{uid}"))
        await eventually(lambda: _equals(waiting(), 2), 10, "the deletion waiting")
        await gate.execute("SELECT pg_advisory_unlock(7202614, hashtext($1::uuid::text))", tid)
        released, deleted = await asyncio.wait_for(asyncio.gather(release, deletion), 30)
    finally:
        await gate.close()
        await releaser.close()
    assert (released.users, deleted.status_code) == (1, 204), deleted.text


GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


async def test_a_held_deletion_keeps_the_person_in_their_teams_until_released(
    env: ConsumerEnv, pipeline: list[Any], scim: httpx.AsyncClient, tenant: TenantInfo, db: Any, api_url: str
) -> None:
    """A held deletion's team removals wait with it, while everyone else's group changes flow; the release sends
    them at the groups' next versions, so the workspace sees no gap."""
    tid = uuid.UUID(tenant.id)
    await holds.set_policy(db, tid, BrakePolicy(minimum=0, percent=0))  # hold from the first one
    leaver, stayer, newcomer = [
        (await scim.post("/Users", json={"userName": f"{n}@example.com"})).json()["id"]
        for n in ("leaver", "stayer", "newcomer")
    ]
    floors = {}
    for name, members in (("Floor 1", [leaver, stayer]), ("Floor 2", [leaver])):
        created = await scim.post(
            "/Groups", json={"schemas": [GROUP], "displayName": name, "members": [{"value": m} for m in members]}
        )
        assert created.status_code == 201, created.text
        floors[name] = created.json()["id"]
    one, two = floors["Floor 1"], floors["Floor 2"]
    conn = await db_connect(env)
    try:

        async def team(group_id: str) -> set[str]:
            rows = await conn.fetch(
                "SELECT user_id FROM workspace.team_members WHERE tenant_id = $1 AND group_id = $2",
                tenant.id,
                group_id,
            )
            return {str(r["user_id"]) for r in rows}

        async def teams_are(expected: dict[str, set[str]]) -> bool:
            return {g: await team(g) for g in expected} == expected

        async def newcomer_in() -> bool:
            return newcomer in await team(one)

        await eventually(lambda: teams_are({one: {leaver, stayer}, two: {leaver}}), 30, "both teams in workspace")
        async with TopicReader(env.kafka, env.group_topic) as topic:
            before = len([r for r in await topic.to_the_end() if r.key.startswith(f"{tenant.id}:")])
            assert (await scim.delete(f"/Users/{leaver}")).status_code == 204  # held: the brake's first one
            added = await scim.patch(
                f"/Groups/{one}",
                json={
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "add", "path": "members", "value": [{"value": newcomer}]}],
                },
            )
            assert added.status_code in (200, 204), added.text
            # Someone else's change flows; the held person stays in both teams.
            await eventually(newcomer_in, 30, "the newcomer in Floor 1")
            assert await teams_are({one: {leaver, stayer, newcomer}, two: {leaver}})
            # The identity provider reads its own truth back: the deleted person is in no group.
            listed = (await scim.get("/Groups")).json()["Resources"]
            assert {g["id"]: sorted(m["value"] for m in g.get("members", [])) for g in listed} == {
                one: sorted([stayer, newcomer]),
                two: [],
            }
            code, listing = _cli(env, "holds", "list", "--tenant", tenant.id)
            assert code == 1 and (listing[0]["people"], listing[0]["team_removals"]) == (1, 2), listing
            admin = await signed_in(db, api_url, tenant.id)  # the tenant's admin is told the teams wait too
            try:
                shown = (await admin.get(f"/admin/tenants/{tenant.id}/health")).text
                assert "Deprovisioning held: 1 person" in shown
                assert "2 group memberships are kept in the directory's teams until then" in shown
            finally:
                await admin.aclose()
            # The SRE's routine repair neither counts the waiting team removals as drift nor sends them.
            code, report = _cli(env, "reconcile", "--tenant", tenant.id, "--fix")
            assert code == 0 and report["repairs_published"] == 0, report
            assert report["waiting_at_gate"]["groups"] == 2, report
            during = [r for r in await topic.to_the_end() if r.key.startswith(f"{tenant.id}:")]
            assert len(during) == before + 1  # the newcomer's addition, nothing else
            assert await teams_are({one: {leaver, stayer, newcomer}, two: {leaver}})

            code, released = _cli(env, "holds", "release", tenant.id)
            assert code == 0 and released["released"] == 1, released
            await eventually(lambda: teams_are({one: {stayer, newcomer}, two: set()}), 30, "the leaver leaves")
            records = await topic.wait_until(
                lambda rs: len([r for r in rs if r.key.startswith(f"{tenant.id}:")]) >= before + 3
            )
        mine = [r for r in records if r.key.startswith(f"{tenant.id}:")]
        versions = {g: [r.version for r in mine if r.key.endswith(g)] for g in (one, two)}
        assert versions == {one: [1, 2, 3], two: [1, 2]}, versions  # consecutive: no gap holds a team
        removals = [r.value["data"] for r in mine[-2:]]
        assert all(d["removed"] == [leaver] and d["added"] == [] for d in removals), removals
        assert (
            await conn.fetchval("SELECT count(*) FROM workspace.held_group_events WHERE tenant_id = $1", tenant.id) == 0
        )
        assert _cli(env, "holds", "list", "--tenant", tenant.id) == (0, [])

        async def in_step() -> bool:
            code, report = _cli(env, "reconcile", "--tenant", tenant.id)
            return code == 0 and report["waiting_at_gate"]["groups"] == 0

        await eventually(in_step, 30, "reconcile: no drift, nothing waiting")
    finally:
        await conn.close()


async def test_held_team_removals_go_out_with_their_release_at_the_groups_next_versions(
    env: ConsumerEnv, scim: httpx.AsyncClient, tenant: TenantInfo, db: Any
) -> None:
    """Removals kept per person (released with that person), also for a deletion behind a held deactivation after
    the brake was switched off; a group deleted meanwhile gets none."""
    tid = uuid.UUID(tenant.id)
    await holds.set_policy(db, tid, BrakePolicy(minimum=0, percent=0))  # hold from the first one
    ada, bob, cy = [(await scim.post("/Users", json={"userName": f"{n}@example.com"})).json()["id"] for n in "abc"]
    everyone = (
        await scim.post(
            "/Groups",
            json={"schemas": [GROUP], "displayName": "All", "members": [{"value": u} for u in (ada, bob, cy)]},
        )
    ).json()["id"]
    temp = (
        await scim.post("/Groups", json={"schemas": [GROUP], "displayName": "Temp", "members": [{"value": ada}]})
    ).json()["id"]
    assert (await scim.delete(f"/Users/{ada}")).status_code == 204
    assert (await scim.delete(f"/Users/{bob}")).status_code == 204
    assert (await scim.patch(f"/Users/{cy}", json=DEACTIVATE)).status_code == 200
    await holds.set_policy(db, tid, BrakePolicy(enabled=False))
    assert (await scim.delete(f"/Users/{cy}")).status_code == 204  # not held itself, but behind cy's deactivation
    assert (await scim.delete(f"/Groups/{temp}")).status_code == 204

    async def group_log(gid: str) -> list[tuple[str, int, list[str]]]:
        rows = await db.fetch(
            "SELECT type, version, data FROM events WHERE aggregate = 'group' AND subject = $1 ORDER BY sequence",
            uuid.UUID(gid),
        )
        return [(r["type"], r["version"], r["data"].get("removed", [])) for r in rows]

    assert await group_log(everyone) == [("group.created", 1, [])]
    assert await group_log(temp) == [("group.created", 1, []), ("group.deleted", 2, [])]
    assert (await scim.get(f"/Groups/{everyone}")).json().get("members", []) == []
    code, listing = _cli(env, "holds", "list", "--tenant", tenant.id)
    assert code == 1 and (listing[0]["people"], listing[0]["team_removals"]) == (3, 3), listing

    code, released = _cli(env, "holds", "release", tenant.id, "--user", bob)
    assert code == 0 and (released["released"], released["team_removals"]) == (1, 1), released
    assert await group_log(everyone) == [("group.created", 1, []), ("group.membership_changed", 2, [bob])]
    code, released = _cli(env, "holds", "release", tenant.id)
    assert code == 0 and (released["released"], released["team_removals"]) == (2, 2), released
    first, second = sorted([ada, cy])  # a group's removals in user id order
    assert (await group_log(everyone))[2:] == [
        ("group.membership_changed", 3, [first]),
        ("group.membership_changed", 4, [second]),
    ]
    assert (await scim.get(f"/Groups/{everyone}")).headers["etag"] == 'W/"4"'
    assert await db.fetchval("SELECT count(*) FROM held_group_removals WHERE tenant_id = $1", tid) == 0
    assert await group_log(temp) == [("group.created", 1, []), ("group.deleted", 2, [])]


async def test_a_release_and_a_group_patch_adding_a_held_person_deadlock_neither(
    scim: httpx.AsyncClient, tenant: TenantInfo, db: Any, database_url: str
) -> None:
    """The release announces kept team removals after letting its held users' rows go: a group PATCH locks its
    group, then (the foreign key check) the user it adds, the other way round."""
    tid = uuid.UUID(tenant.id)
    await holds.set_policy(db, tid, BrakePolicy(minimum=0, percent=0))  # hold from the first one
    leaver, sleeper = [(await scim.post("/Users", json={"userName": f"{n}@example.com"})).json()["id"] for n in "ls"]
    group = (
        await scim.post("/Groups", json={"schemas": [GROUP], "displayName": "Team", "members": [{"value": leaver}]})
    ).json()["id"]
    assert (await scim.delete(f"/Users/{leaver}")).status_code == 204  # held: its removal from Team is kept
    assert (await scim.patch(f"/Users/{sleeper}", json=DEACTIVATE)).status_code == 200  # held too
    patcher, releaser = await connect(database_url), await connect(database_url)
    try:
        patch = patcher.transaction()
        await patch.start()
        await patcher.execute("SELECT 1 FROM groups WHERE tenant_id = $1 AND id = $2 FOR UPDATE", tid, uuid.UUID(group))

        async def waiting() -> int:
            return int(
                await db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                )
            )

        release = asyncio.create_task(holds.release(releaser, tid))
        await eventually(lambda: _equals(waiting(), 1), 10, "the release waiting for the group")
        await patcher.execute(
            "INSERT INTO group_members (tenant_id, group_id, user_id) VALUES ($1, $2, $3)",
            tid,
            uuid.UUID(group),
            uuid.UUID(sleeper),
        )
        await patch.commit()
        released = await asyncio.wait_for(release, 30)
    finally:
        await patcher.close()
        await releaser.close()
    assert (released.users, released.team_removals) == (2, 1)
    log = await db.fetch(
        "SELECT version, data FROM events WHERE aggregate = 'group' AND subject = $1 ORDER BY sequence",
        uuid.UUID(group),
    )
    assert [(r["version"], r["data"].get("removed")) for r in log] == [(1, None), (2, [leaver])]
