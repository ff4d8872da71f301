"""SCIM API benchmark: lookups at 100k users, durable creates against the asyncpg ceiling, PATCHes.

    .venv/bin/python -m bench.api [--users 100000] [--seconds 10]

Needs the local stack (`make stack-up`) and wrk. Every wrk run warms up first (2 s, unmeasured) and any non-2xx
answer voids the run. Creates send Okta's full body; every PATCH changes the user (a new title), checked by
counting the events written. The ceiling is the store's own create (same statement, same body, 32 concurrent,
no HTTP) on the same table, once before and once after the API's creates; the summary compares against their
mean. The load generator (wrk, 32 connections) shares the 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import httpx
import orjson

from bench.harness import api_process, fresh_database, new_tenant, wrk
from service.domain import users as users_domain
from service.domain.resource import normalize
from service.domain.schema import USER_TYPE
from service.store import users as users_store
from service.store.pool import connect, create_pool

_SEED = """
INSERT INTO users (tenant_id, id, user_name, external_id, active, version, resource, created_at, updated_at)
SELECT $1, gen_random_uuid(), 'user' || g || '@example.com', 'ext' || g, true, 1,
       jsonb_build_object(
           'userName', 'user' || g || '@example.com', 'externalId', 'ext' || g, 'active', true,
           'name', jsonb_build_object('givenName', 'Given' || g, 'familyName', 'Family' || g),
           'emails', jsonb_build_array(jsonb_build_object('value', 'user' || g || '@example.com', 'type', 'work'))),
       now(), now()
FROM generate_series(1, $2) AS g
"""

_LOOKUP = """
math.randomseed(os.time())
wrk.headers["Authorization"] = "Bearer {token}"
request = function()
  local n = math.random(1, {users})
  return wrk.format("GET", "{base}/Users?filter=userName%20eq%20%22USER" .. n .. "%40example.com%22")
end
"""

# Okta's create body; the ceiling stores the very same user (normalised as the API would).
OKTA_USER = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "userName": "u@example.com",
    "name": {"givenName": "Ada", "familyName": "Lovelace"},
    "emails": [{"value": "ada@example.com", "type": "work", "primary": True}],
    "externalId": "x",
    "password": "ignored",
    "groups": [],
    "active": True,
}

# Each wrk run (warm-up, measured) gets its own `run` from the clock, so no userName repeats (a 409 voids the run).
_CREATE = """
math.randomseed(os.time())
local counter = 0
local run = "{run}-" .. os.time() .. "-" .. math.random(1, 1000000000)
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "application/scim+json; charset=utf-8"
request = function()
  counter = counter + 1
  local body = '{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"new-' .. run .. '-' ..
    counter .. '@example.com","name":{{"givenName":"Ada","familyName":"Lovelace"}},' ..
    '"emails":[{{"value":"ada@example.com","type":"work","primary":true}}],"externalId":"x' .. counter ..
    '","password":"ignored","groups":[],"active":true}}'
  return wrk.format(nil, "{base}/Users", nil, body)
end
"""

# Every PATCH changes the user (a title no earlier PATCH set), so every measured PATCH writes a row and an event.
_PATCH = """
math.randomseed(os.time())
local ids = {ids}
local counter = 0
local run = os.time() .. "-" .. math.random(1, 1000000000)
wrk.method = "PATCH"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "application/scim+json; charset=utf-8"
request = function()
  counter = counter + 1
  local id = ids[(counter % #ids) + 1]
  local body = '{{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":' ..
    '[{{"op":"replace","value":{{"title":"t-' .. run .. '-' .. counter .. '"}}}}]}}'
  return wrk.format(nil, "{base}/Users/" .. id, nil, body)
end
"""


async def asyncpg_ceiling(url: str, tenant_id: str, seconds: float, connections: int = 32) -> float:
    """Durable creates per second through the store's own create (the API's transaction: user row + outbox event,
    one statement) with Okta's full body, `connections` concurrent, no HTTP: the best the API could do."""
    pool = await create_pool(url, connections, connections)
    resource = users_domain.prepare_new(normalize(OKTA_USER, USER_TYPE))
    prefix = uuid.uuid4().hex[:8]
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            name = f"c-{prefix}-{w}-{i}@example.com"
            await users_store.create(pool, tenant_id, {**resource, "userName": name, "externalId": f"x{i}"})
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(connections)))
    elapsed = time.perf_counter() - started
    await pool.close()
    return done / elapsed


def emit(name: str, **values: object) -> None:
    print(json.dumps({"bench": name, **values}), flush=True)


async def seed(url: str, tenant_id: str, users: int) -> list[str]:
    conn = await connect(url)
    started = time.perf_counter()
    await conn.execute(_SEED, uuid.UUID(tenant_id), users)
    await conn.execute("ANALYZE users")
    emit("seed", users=users, seconds=round(time.perf_counter() - started, 1))
    ids = [
        str(r["id"])
        for r in await conn.fetch("SELECT id FROM users WHERE tenant_id = $1 LIMIT 2000", uuid.UUID(tenant_id))
    ]
    await conn.close()
    return ids


async def _count(url: str, sql: str) -> int:
    conn = await connect(url)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()

    url = await fresh_database("scimsync_bench")
    tenant_id, token = await new_tenant(url)
    ids = await seed(url, tenant_id, args.users)
    base = f"/scim/v2/{tenant_id}"
    results: dict[str, dict[str, float]] = {}
    # The ceiling before and after the API's creates: the table grows by both; their mean is compared.
    ceiling_before = await asyncpg_ceiling(url, tenant_id, args.seconds)
    emit("asyncpg_ceiling_store_create", tx_per_s=round(ceiling_before), connections=32, when="before")
    with api_process(url) as api:
        async with httpx.AsyncClient() as client:
            check = (
                await client.get(
                    f"{api}{base}/Users",
                    params={"filter": 'userName eq "user7@example.com"'},
                    headers={"Authorization": f"Bearer {token}"},
                )
            ).json()
        assert check["totalResults"] == 1, check  # the lookups below really find a user
        fmt = {"token": token, "base": base, "users": args.users, "run": uuid.uuid4().hex[:8]}
        results["lookup"] = wrk(api, _LOOKUP.format(**fmt), args.seconds)
        emit("lookup_userName_eq", users=args.users, **results["lookup"])
        results["create"] = wrk(api, _CREATE.format(**fmt), args.seconds)
        emit("create", **results["create"])
        lua_ids = "{" + ",".join(orjson.dumps(i).decode() for i in ids) + "}"
        updates_before = await _count(url, "SELECT count(*) FROM events WHERE type = 'user.updated'")
        # No separate warm-up: the runs above warmed the API, and the event count below covers exactly this run.
        results["patch"] = wrk(api, _PATCH.format(**fmt, ids=lua_ids), args.seconds, warmup=0)
        updates = await _count(url, "SELECT count(*) FROM events WHERE type = 'user.updated'") - updates_before
        # Every answered PATCH wrote a change (wrk may cut the last in-flight requests: they count neither way).
        assert updates >= results["patch"]["requests"], (updates, results["patch"])
        emit("patch_title", events_written=updates, **results["patch"])
    ceiling_after = await asyncpg_ceiling(url, tenant_id, args.seconds)
    emit("asyncpg_ceiling_store_create", tx_per_s=round(ceiling_after), connections=32, when="after")
    create, ceiling = results["create"]["requests_per_s"], (ceiling_before + ceiling_after) / 2
    emit(
        "summary",
        create_per_s=round(create),
        ceiling_per_s=round(ceiling),
        create_vs_ceiling=round(create / ceiling, 2),
        create_target_met=create >= 0.7 * ceiling,
        patch_per_s=round(results["patch"]["requests_per_s"]),
        lookup_p99_ms=results["lookup"]["p99_ms"],
        lookup_target_met=results["lookup"]["p99_ms"] <= 10,
        machine="2 cores shared with the load generator",
    )


if __name__ == "__main__":
    asyncio.run(main())
