"""A million users in one tenant: lookups, Okta's import pages, incremental sync, and a whole import.

    .venv/bin/python -m bench.million [--users 1000000] [--seconds 8] [--reuse]

Seeding: `COPY` (asyncpg's copy_records_to_table, binary) of rows built by the store's own row builder
(`service.store.users.row`, the row `users.create` writes) from Okta-shaped resources, 50,000 per COPY; the
migration's statement triggers count them into `user_blocks` as they would any insert. No events are written
(nothing here reads them). User i was last modified at 2020-01-01 + i seconds, so `meta.lastModified gt` a
time near the end matches the most recent users, as an incremental sync would. Then `VACUUM ANALYZE users`
(what autovacuum would do to a table that big). `--reuse` keeps the database of an earlier run (seeding 1M
users takes minutes on 2 cores).

Measured with 32 connections (wrk, warm-up first, any non-2xx voids the run): `userName eq`, `externalId eq`,
`emails.value eq` lookups, import pages `startIndex=K&count=100` at random K, and `meta.lastModified gt` pages;
then the first and the last page sequentially (one client, 40 samples each, p50); then a full import of every
user by 4 concurrent pagers at count=100, checking that every page says totalResults = N and every user comes
exactly once. Prints one JSON line per measurement and a summary against the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.harness import api_process, database_url, drop_database, fresh_database, new_tenant, wrk
from service.store import tenants, users
from service.store.pool import connect

DB = "scimsync_bench_million"
START = datetime(2020, 1, 1, tzinfo=UTC)
BATCH = 50_000

_RANDOM_FILTER = """
math.randomseed(os.time())
wrk.headers["Authorization"] = "Bearer {token}"
request = function()
  local n = math.random(1, {users})
  return wrk.format("GET", "{base}/Users?filter={attr}%20eq%20%22{before}" .. n .. "{after}%22")
end
"""

_RANDOM_PAGE = """
math.randomseed(os.time())
wrk.headers["Authorization"] = "Bearer {token}"
request = function()
  local k = math.random(0, {pages} - 1) * 100 + 1
  return wrk.format("GET", "{base}/Users?startIndex=" .. k .. "&count=100")
end
"""

# A page of the users changed since a random moment in the last `window` seconds of the seed (≤ window matches).
_SINCE = """
math.randomseed(os.time())
wrk.headers["Authorization"] = "Bearer {token}"
request = function()
  local t = {last} - math.random(1, {window})
  return wrk.format("GET", "{base}/Users?count=100&filter=meta.lastModified%20gt%20%22" ..
    os.date("!%Y-%m-%dT%H:%M:%SZ", t) .. "%22")
end
"""


def emit(name: str, **values: object) -> None:
    print(json.dumps({"bench": name, **values}), flush=True)


def okta_user(i: int) -> dict[str, Any]:
    return {
        "userName": f"user{i}@example.com",
        "externalId": f"ext{i}",
        "name": {"givenName": f"Given{i}", "familyName": f"Family{i}"},
        "displayName": f"Given{i} Family{i}",
        "emails": [{"value": f"mail{i}@example.org", "type": "work", "primary": True}],
        "active": True,
    }


async def seed(url: str, tenant_id: str, n: int) -> None:
    conn = await connect(url)
    tenant = uuid.UUID(tenant_id)
    started = time.perf_counter()
    for first in range(1, n + 1, BATCH):
        rows = [
            users.row(tenant, uuid.uuid4(), okta_user(i), START + timedelta(seconds=i))
            for i in range(first, min(first + BATCH, n + 1))
        ]
        await conn.copy_records_to_table("users", records=rows, columns=list(users.ROW_COLUMNS))
    copied = time.perf_counter() - started
    await conn.execute("VACUUM ANALYZE users")
    emit("seed", users=n, copy_s=round(copied, 1), total_s=round(time.perf_counter() - started, 1))
    await conn.close()


async def sequential_p50(client: httpx.AsyncClient, path: str, samples: int = 40) -> float:
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        (await client.get(path)).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


async def full_import(client: httpx.AsyncClient, base: str, n: int, pagers: int, every: int = 1) -> dict[str, Any]:
    """Every page of 100 (or one in `every`, spread over the whole range, for a short run) by `pagers` concurrent
    clients; each page must report the exact total, and no user may come twice."""
    pages = (n + 99) // 100
    seen: set[str] = set()
    duplicates = 0

    async def pager(first: int) -> None:
        nonlocal duplicates
        for page in range(first * every, pages, pagers * every):
            answer = await client.get(f"{base}/Users", params={"startIndex": page * 100 + 1, "count": 100})
            answer.raise_for_status()
            body = answer.json()
            assert body["totalResults"] == n, body["totalResults"]
            for resource in body["Resources"]:
                duplicates += resource["id"] in seen
                seen.add(resource["id"])

    started = time.perf_counter()
    await asyncio.gather(*(pager(p) for p in range(pagers)))
    seconds = time.perf_counter() - started
    read = len(range(0, pages, every))
    return {
        "pages": read,
        "of_pages": pages,
        "pagers": pagers,
        "seconds": round(seconds, 1),
        "full_import_s": round(seconds * pages / read, 1),  # measured when every == 1, else scaled up
        "users": len(seen),
        "repeats": duplicates,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--pagers", type=int, default=4)
    parser.add_argument("--import-every", type=int, default=1, help="import one page in N only (a short run)")
    parser.add_argument("--reuse", action="store_true", help="keep the seeded database of an earlier run")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    parser.add_argument("--only", default="lookups,pages,import", help="which parts to run (comma-separated)")
    parser.add_argument("--seed-only", action="store_true", help="seed (or check a --reuse seed) and stop")
    args = parser.parse_args()

    url = database_url(DB)
    if args.reuse:
        conn = await connect(url)
        found = await tenants.find_by_name(conn, "million")
        assert found is not None, "no seeded database to reuse: run without --reuse first"
        tenant_id = found.id
        seeded = await conn.fetchval("SELECT count(*) FROM users WHERE tenant_id = $1", uuid.UUID(tenant_id))
        assert seeded == args.users, f"the seeded tenant has {seeded} users"
        token = await tenants.rotate_token(conn, tenant_id)  # only hashes are stored
        assert token is not None
        await conn.close()
    else:
        url = await fresh_database(DB)
        tenant_id, token = await new_tenant(url, "million")
        await seed(url, tenant_id, args.users)
    if args.seed_only:
        return
    parts = set(args.only.split(","))
    base = f"/scim/v2/{tenant_id}"
    fmt = {"token": token, "base": base, "users": args.users}
    results: dict[str, dict[str, float]] = {}
    summary: dict[str, object] = {"users": args.users, "parts": sorted(parts)}
    with api_process(url) as api:
        lookups = {
            "userName": ("userName", "user", "%40example.com"),
            "externalId": ("externalId", "ext", ""),
            "emails.value": ("emails.value", "MAIL", "%40example.org"),  # case-insensitive, as SCIM says
        }
        if "lookups" in parts:
            for name, (attr, before, after) in lookups.items():
                lua = _RANDOM_FILTER.format(**fmt, attr=attr, before=before, after=after)
                results[name] = wrk(api, lua, args.seconds)
                emit(f"million_lookup_{name}_eq", users=args.users, connections=32, **results[name])
            async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {token}"}) as client:
                for name, (attr, before, after) in lookups.items():
                    value = f"{before}{args.users // 3}{after}".replace("%40", "@")
                    one = await sequential_p50(client, f'{base}/Users?filter={attr} eq "{value}"')
                    emit(f"million_lookup_{name}_eq_one_client", p50_ms=one)
            summary["lookup_p99_ms"] = {k: results[k]["p99_ms"] for k in lookups}
            summary["lookup_target_met"] = all(results[k]["p99_ms"] <= 10 for k in lookups)
        headers = {"Authorization": f"Bearer {token}"}
        if "pages" in parts:
            results["page"] = wrk(api, _RANDOM_PAGE.format(**fmt, pages=args.users // 100), args.seconds)
            emit("million_import_page_random_startIndex", users=args.users, connections=32, **results["page"])
            last = int((START + timedelta(seconds=args.users)).timestamp())
            results["since"] = wrk(api, _SINCE.format(**fmt, last=last, window=3600), args.seconds)
            emit("million_lastModified_gt_page", users=args.users, matches_up_to=3600, **results["since"])
            async with httpx.AsyncClient(base_url=api, headers=headers, timeout=60) as client:
                first = await sequential_p50(client, f"{base}/Users?startIndex=1&count=100")
                final = await sequential_p50(client, f"{base}/Users?startIndex={args.users - 99}&count=100")
            emit("million_first_vs_last_page", first_p50_ms=first, last_p50_ms=final, ratio=round(final / first, 2))
            summary |= {
                "page_p99_ms": results["page"]["p99_ms"],
                "since_p99_ms": results["since"]["p99_ms"],
                "page_target_met": results["page"]["p99_ms"] <= 20 and results["since"]["p99_ms"] <= 20,
                "last_vs_first_page": round(final / first, 2),
            }
        if "import" in parts:
            async with httpx.AsyncClient(base_url=api, headers=headers, timeout=60) as client:
                imported = await full_import(client, base, args.users, args.pagers, args.import_every)
            emit("million_full_import", **imported)
            expected = min(args.users, imported["pages"] * 100)
            summary |= {
                "import_s": imported["full_import_s"],
                "import_scaled_from_one_page_in": args.import_every,
                "import_exact": imported["users"] == expected and imported["repeats"] == 0,
                "import_target_met": imported["full_import_s"] <= 300,
            }
    emit("summary", **summary, machine="2 cores shared with the load generator")
    if args.drop:
        await drop_database(DB)


if __name__ == "__main__":
    asyncio.run(main())
