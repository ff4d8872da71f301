"""SCIM API benchmark: lookups at 100k users, durable creates against the asyncpg ceiling, PATCHes.

    .venv/bin/python -m bench.api [--users 100000] [--seconds 10]

Needs the local stack (`make stack-up`) and wrk. Prints one JSON line per measurement and a summary
against DESIGN.md §7's targets. The load generator (wrk, 32 connections) shares the 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import httpx
import orjson

from bench.harness import api_process, fresh_database, new_tenant, wrk
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

_CREATE = """
local counter = 0
local run = "{run}"
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

_PATCH = """
math.randomseed(os.time())
local ids = {ids}
wrk.method = "PATCH"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "application/scim+json; charset=utf-8"
request = function()
  local id = ids[math.random(1, #ids)]
  local active = math.random(0, 1) == 1 and "true" or "false"
  local body = '{{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":' ..
    '[{{"op":"replace","value":{{"active":' .. active .. '}}}}]}}'
  return wrk.format(nil, "{base}/Users/" .. id, nil, body)
end
"""

_CEILING_ONE = """
WITH u AS (
    INSERT INTO users (tenant_id, id, user_name, external_id, active, version, resource, created_at, updated_at)
    VALUES ($1, $2, $3, NULL, true, 1, $4, $5, $5) RETURNING id)
INSERT INTO events (id, tenant_id, aggregate, subject, type, version, occurred_at, data)
SELECT $6, $1, 'user', u.id, 'user.created', 1, $5, $4 FROM u
"""


async def asyncpg_ceiling(url: str, tenant_id: str, seconds: float, one_statement: bool) -> float:
    """Durable creates per second straight from asyncpg, 32 concurrent: the best the API could do."""
    pool = await create_pool(url, 32, 32)
    tenant = uuid.UUID(tenant_id)
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        async with pool.acquire() as conn:
            while time.perf_counter() < deadline:
                user_id, now = uuid.uuid4(), datetime.now(UTC)
                resource = {"userName": f"c-{user_id}@example.com", "active": True}
                if one_statement:
                    await conn.execute(_CEILING_ONE, tenant, user_id, resource["userName"], resource, now, uuid.uuid4())
                else:
                    async with conn.transaction():
                        await conn.execute(
                            "INSERT INTO users (tenant_id, id, user_name, active, version, resource, created_at,"
                            " updated_at) VALUES ($1, $2, $3, true, 1, $4, $5, $5)",
                            tenant,
                            user_id,
                            resource["userName"],
                            resource,
                            now,
                        )
                        await conn.execute(
                            "INSERT INTO events (id, tenant_id, aggregate, subject, type, version, occurred_at, data)"
                            " VALUES ($1, $2, 'user', $3, 'user.created', 1, $4, $5)",
                            uuid.uuid4(),
                            tenant,
                            user_id,
                            now,
                            resource,
                        )
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(32)))
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
        results["patch"] = wrk(api, _PATCH.format(**fmt, ids=lua_ids), args.seconds)
        emit("patch_active", **results["patch"])
    one = await asyncpg_ceiling(url, tenant_id, args.seconds, one_statement=True)
    emit("asyncpg_ceiling_one_statement", tx_per_s=round(one))
    four = await asyncpg_ceiling(url, tenant_id, args.seconds, one_statement=False)
    emit("asyncpg_ceiling_begin_insert_insert_commit", tx_per_s=round(four))
    create = results["create"]["requests_per_s"]
    emit(
        "summary",
        create_vs_ceiling=round(create / one, 2),
        create_target_met=create >= 0.6 * one and create >= 2000,
        lookup_p99_ms=results["lookup"]["p99_ms"],
        lookup_target_met=results["lookup"]["p99_ms"] <= 20,
    )


if __name__ == "__main__":
    asyncio.run(main())
