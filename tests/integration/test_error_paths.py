"""Error paths nobody had tried: the last-resort 500, uniqueness on rename, racing If-Match writers, cross-tenant
writes, an oversized chunked body, and the erasure of a deleted user's events that were never published."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from service.store import tenants
from service.store.pool import connect

from .conftest import ROOT, TenantInfo
from .test_relay import RelayProcess, by_key, relays, topic, versions_seen  # noqa: F401 (fixtures)
from .test_scim_protocol import PATCH_OP, assert_scim_error, user_count
from .topics import read_topic

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


async def test_a_bug_is_a_500_without_a_traceback_that_quotes_the_request_id(
    scim: httpx.AsyncClient, db: Any, api_url: str
) -> None:
    # A real failure inside Postgres that no handler expects: a trigger that raises for one userName.
    await db.execute(
        """CREATE OR REPLACE FUNCTION test_boom() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF NEW.user_name = 'boom@example.com' THEN RAISE EXCEPTION 'secret internal detail'; END IF;
             RETURN NEW;
           END $$"""
    )
    await db.execute("CREATE TRIGGER test_boom BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION test_boom()")
    try:
        given = await scim.post("/Users", json={"userName": "boom@example.com"}, headers={"X-Request-Id": "bug-42"})
        made = await scim.post("/Users", json={"userName": "boom@example.com"})
    finally:
        await db.execute("DROP TRIGGER test_boom ON users")
    for response in (given, made):
        assert_scim_error(response, 500)
        for leak in ("secret", "Traceback", "RaiseError", "asyncpg", "File "):
            assert leak not in response.text
    assert given.headers["x-request-id"] == "bug-42"
    assert len(made.headers["x-request-id"]) == 32
    # The request id finds the log line with the exception (the session API logs to .pytest_cache/api-PORT.log).
    log = Path(ROOT / ".pytest_cache" / f"api-{urlsplit(api_url).port}.log")
    lines = [line for line in log.read_text().splitlines() if '"request_id":"bug-42"' in line]
    assert any('"event":"request.failed"' in line and "RaiseError" in line for line in lines), lines


async def test_renaming_onto_a_taken_user_name_is_409_and_changes_nothing(scim: httpx.AsyncClient) -> None:
    taken = (await scim.post("/Users", json={"userName": "taken@example.com"})).json()
    mover = (await scim.post("/Users", json={"userName": "mover@example.com"})).json()
    put = await scim.put(f"/Users/{mover['id']}", json={"userName": "TAKEN@example.com"})
    assert_scim_error(put, 409, "uniqueness")
    patch = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "userName", "value": "Taken@Example.com"}]}
    assert_scim_error(await scim.patch(f"/Users/{mover['id']}", json=patch), 409, "uniqueness")
    no_path = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"userName": "taken@example.com"}}]}
    assert_scim_error(await scim.patch(f"/Users/{mover['id']}", json=no_path), 409, "uniqueness")
    for user, name in ((mover, "mover@example.com"), (taken, "taken@example.com")):
        now = (await scim.get(f"/Users/{user['id']}")).json()
        assert now["userName"] == name and now["meta"]["version"] == 'W/"1"'
    # Groups: the same for displayName.
    await scim.post("/Groups", json={"displayName": "Taken"})
    group = (await scim.post("/Groups", json={"displayName": "Mover"})).json()
    assert_scim_error(await scim.put(f"/Groups/{group['id']}", json={"displayName": "taken"}), 409, "uniqueness")


async def test_two_writers_with_the_same_if_match_one_wins_one_gets_412(scim: httpx.AsyncClient) -> None:
    user = (await scim.post("/Users", json={"userName": "race@example.com"})).json()
    etag = user["meta"]["version"]
    for round_ in range(5):
        ops = [
            {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "title", "value": f"writer {w} {round_}"}]}
            for w in (1, 2)
        ]
        answers = await asyncio.gather(
            *(scim.patch(f"/Users/{user['id']}", json=op, headers={"If-Match": etag}) for op in ops)
        )
        assert sorted(a.status_code for a in answers) == [200, 412], [a.text for a in answers]
        winner = next(a for a in answers if a.status_code == 200).json()
        assert_scim_error(next(a for a in answers if a.status_code == 412), 412)
        assert (await scim.get(f"/Users/{user['id']}")).json()["title"] == winner["title"]
        etag = winner["meta"]["version"]
    # PUT and DELETE race the same way.
    answers = await asyncio.gather(
        scim.put(f"/Users/{user['id']}", json={"userName": "race@example.com"}, headers={"If-Match": etag}),
        scim.delete(f"/Users/{user['id']}", headers={"If-Match": etag}),
    )
    # The PUT first: the DELETE's version is stale (412). The DELETE first: the user is gone (404).
    assert sorted(a.status_code for a in answers) in ([200, 412], [204, 404])


async def test_another_tenants_users_and_groups_are_404_to_every_write(
    scim: httpx.AsyncClient, tenant: TenantInfo, db: Any, api_url: str
) -> None:
    other, other_token = await tenants.create(db, "victim")
    async with httpx.AsyncClient(
        base_url=f"{api_url}/scim/v2/{other.id}", headers={"Authorization": f"Bearer {other_token}"}
    ) as victim:
        user = (await victim.post("/Users", json={"userName": "victim@example.com"})).json()
        group = (
            await victim.post("/Groups", json={"displayName": "victims", "members": [{"value": user["id"]}]})
        ).json()
        before = (await victim.get(f"/Users/{user['id']}")).json(), (await victim.get(f"/Groups/{group['id']}")).json()
        patch = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}
        member_patch = {"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": "members"}]}
        attempts = [
            scim.put(f"/Users/{user['id']}", json={"userName": "victim@example.com", "active": False}),
            scim.patch(f"/Users/{user['id']}", json=patch),
            scim.delete(f"/Users/{user['id']}"),
            scim.get(f"/Users/{user['id']}"),
            scim.put(f"/Groups/{group['id']}", json={"displayName": "victims", "members": []}),
            scim.patch(f"/Groups/{group['id']}", json=member_patch),
            scim.delete(f"/Groups/{group['id']}"),
            scim.get(f"/Groups/{group['id']}"),
        ]
        for attempt in attempts:
            assert_scim_error(await attempt, 404)
        after = (await victim.get(f"/Users/{user['id']}")).json(), (await victim.get(f"/Groups/{group['id']}")).json()
        assert after == before
    # Nor can the attacker add the victim's user to a group of its own.
    own = await scim.post("/Groups", json={"displayName": "mine", "members": [{"value": user["id"]}]})
    assert_scim_error(own, 400, "invalidValue")
    assert await user_count(db, tenant.id) == 0
    events = await db.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1", uuid.UUID(other.id))
    assert events == 2  # the victim's own create of the user and of the group


async def test_a_body_over_the_limit_sent_chunked_is_413(scim: httpx.AsyncClient, db: Any, tenant: TenantInfo) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"userName": "big@example.com", "displayName": "'
        for _ in range(300):
            yield b"x" * 4096  # 1.2 MB in all, never announced in a Content-Length
        yield b'"}'

    response = await scim.post("/Users", content=chunks())
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert_scim_error(response, 413)
    assert await user_count(db, tenant.id) == 0


async def test_events_unpublished_when_their_user_is_deleted_go_out_erased(
    scim: httpx.AsyncClient,
    tenant: TenantInfo,
    relays: Callable[..., RelayProcess],  # noqa: F811
    stack: Any,
    topic: str,  # noqa: F811
) -> None:
    secrets = ("Forgettable", "forget.me@private.example", "Secret Dept")
    created = await scim.post(
        "/Users",
        json={"userName": "forget.me@private.example", "name": {"givenName": "Forgettable"}, ENTERPRISE: {}},
    )
    user_id = created.json()["id"]
    patch = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "add", "path": f"{ENTERPRISE}:department", "value": "Secret Dept"}],
    }
    assert (await scim.patch(f"/Users/{user_id}", json=patch)).status_code == 200
    assert (await scim.delete(f"/Users/{user_id}")).status_code == 204
    relays()  # only now: none of the three events was published before the delete
    key = f"{tenant.id}:{user_id}"
    records = by_key(await read_topic(stack.kafka, topic, versions_seen(tenant.id, {key: 3})), tenant.id)[key]
    assert [r.value["type"] for r in records] == ["user.created", "user.updated", "user.deleted"]
    assert [r.value["data"] for r in records[:2]] == [{"id": user_id, "erased": True}] * 2
    assert records[2].value["data"] == {"id": user_id}
    for record in records:
        assert not any(s in orjson.dumps(record.value).decode() for s in secrets)


async def test_a_write_that_postgres_ends_in_a_deadlock_is_a_503_to_retry(
    scim: httpx.AsyncClient, db: Any, database_url: str, tenant: TenantInfo
) -> None:
    # A deadlock is nobody's bug and not the client's fault: Postgres picked this write to abort, and the same write
    # sent again goes through.
    user = (await scim.post("/Users", json={"userName": "deadlock@example.com"})).json()
    answer = await _in_a_deadlock(
        db, database_url, tenant, user["id"], scim.patch(f"/Users/{user['id']}", json=_DEACTIVATE)
    )
    assert_scim_error(answer, 503)
    assert int(answer.headers["retry-after"]) > 0
    assert "Traceback" not in answer.text
    stored = (await scim.get(f"/Users/{user['id']}")).json()
    assert stored["active"] is True and stored["meta"]["version"] == user["meta"]["version"]  # nothing half-written
    again = await scim.patch(f"/Users/{user['id']}", json=_DEACTIVATE)
    assert again.status_code == 200 and again.json()["active"] is False


async def test_a_bulk_operation_ended_by_a_deadlock_is_its_own_503_and_the_rest_still_run(
    scim: httpx.AsyncClient, db: Any, database_url: str, tenant: TenantInfo
) -> None:
    user = (await scim.post("/Users", json={"userName": "bulk-deadlock@example.com"})).json()
    operations = [
        {"method": "PATCH", "path": f"/Users/{user['id']}", "data": _DEACTIVATE},
        {"method": "POST", "path": "/Users", "bulkId": "after", "data": {"userName": "after-deadlock@example.com"}},
    ]
    bulk_request = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": operations}
    answer = await _in_a_deadlock(db, database_url, tenant, user["id"], scim.post("/Bulk", json=bulk_request))
    assert answer.status_code == 200, answer.text
    results = answer.json()["Operations"]
    assert [r["status"] for r in results] == ["503", "201"]
    assert results[0]["response"]["status"] == "503" and "send it again" in results[0]["response"]["detail"]
    assert (await scim.get(f"/Users/{user['id']}")).json()["active"] is True


async def _in_a_deadlock(db: Any, database_url: str, tenant: TenantInfo, user_id: str, request: Any) -> httpx.Response:
    """Send `request` (a user's deactivation) into a deadlock that Postgres ends by aborting the API's side. A
    deactivation locks its user's row, then the tenant's brake lock (store/holds.py); another session holding the
    brake lock and then asking for that row closes the cycle."""
    other = await connect(database_url)
    try:
        other_tx = other.transaction()
        await other_tx.start()
        await other.execute("SET LOCAL deadlock_timeout = '5s'")  # the API's session, waiting longer, detects it
        await other.execute("SELECT pg_advisory_xact_lock(7202614, hashtext($1::uuid::text))", uuid.UUID(tenant.id))
        sent = asyncio.create_task(request)
        await _until_waiting_for_a_lock(db, "pg_advisory_xact_lock")
        row_lock = asyncio.create_task(
            other.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", uuid.UUID(user_id))
        )
        answer: httpx.Response = await asyncio.wait_for(sent, 30)
        await asyncio.wait_for(row_lock, 30)
        await other_tx.rollback()
    finally:
        await other.close()
    return answer


_DEACTIVATE = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}


async def _until_waiting_for_a_lock(db: Any, query_part: str) -> None:
    for _ in range(300):
        if await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%'",
            query_part,
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no session waits for a lock in {query_part}")
