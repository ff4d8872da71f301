"""The admin console's Users search at scale: one tenant of N users, the Users page's read for a search.

    .venv/bin/python -m bench.admin_search [--users 1000000] [--samples 5] [--reuse]

Seeds like bench.million (COPY of Okta-shaped users: userName `user{i}@example.com`, one email
`mail{i}@example.org`), in its own database. `--reuse` keeps an earlier run's database and applies any migration
it lacks first (timed: that is what `scimsync migrate` costs on a table that big). Then times
`service.store.directory.users`, the whole read behind one Users page (the rows, the position, the capped count and
whether there is a next page, in one snapshot), for searches an admin types: a part of one userName, of one
email, of both, a common word, a two-letter word, nothing found; then the next page of a search with many matches.
Prints one JSON line per search (p50 and max of `--samples` runs, after one warm-up) and a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid

from bench.harness import database_url, fresh_database, new_tenant
from bench.million import seed
from service.store import directory, migrator, tenants
from service.store.pool import connect

DB = "scimsync_bench_admin_search"


def searches(n: int) -> dict[str, tuple[str, str]]:
    """name -> (what the admin types, the state picked)."""
    one = n * 2 // 3
    return {
        "one_userName": (f"user{one}@", "all"),
        "one_email": (f"mail{one}@", "all"),
        "digits_in_both": (str(one), "all"),
        "one_deactivated": (f"user{one}@", "deactivated"),
        "many_matches": ("user12", "all"),
        "everyone": ("example", "all"),
        "two_letters": ("r9", "all"),
        "many_sorting_last": ("user9", "all"),
        "nothing_found": ("nobody-here", "all"),
    }


def emit(name: str, **values: object) -> None:
    print(json.dumps({"bench": name, **values}), flush=True)


async def timed(conn: object, tenant_id: str, query: str, state: str, samples: int) -> tuple[list[float], int]:
    page = await directory.users(conn, tenant_id, query, state)  # warm-up
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        page = await directory.users(conn, tenant_id, query, state)
        times.append((time.perf_counter() - started) * 1000)
    return times, len(page.rows)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--reuse", action="store_true", help="keep the seeded database of an earlier run")
    args = parser.parse_args()

    url = database_url(DB)
    if args.reuse:
        conn = await connect(url)
        started = time.perf_counter()
        applied = await migrator.migrate(conn)
        emit("migrate", applied=applied, seconds=round(time.perf_counter() - started, 1))
        if applied:
            await conn.execute("ANALYZE users")
        found = await tenants.find_by_name(conn, "admin-search")
        assert found is not None, "no seeded database to reuse: run without --reuse first"
        tenant_id = found.id
        seeded = await conn.fetchval("SELECT count(*) FROM users WHERE tenant_id = $1", uuid.UUID(tenant_id))
        assert seeded == args.users, f"the seeded tenant has {seeded} users"
    else:
        url = await fresh_database(DB)
        tenant_id, _ = await new_tenant(url, "admin-search")
        await seed(url, tenant_id, args.users)
        conn = await connect(url)

    p50s: dict[str, float] = {}
    for name, (query, state) in searches(args.users).items():
        times, shown = await timed(conn, tenant_id, query, state, args.samples)
        p50s[name] = round(statistics.median(times), 1)
        emit(
            f"admin_users_search_{name}",
            q=query,
            state=state,
            rows=shown,
            p50_ms=p50s[name],
            max_ms=round(max(times), 1),
        )
    first = await directory.users(conn, tenant_id, "user12", "all")
    assert first.next is not None
    started = time.perf_counter()
    for _ in range(args.samples):
        await directory.users(conn, tenant_id, "user12", "all", ("after", uuid.UUID(first.next)))
    p50s["next_page"] = round((time.perf_counter() - started) * 1000 / args.samples, 1)
    emit("admin_users_search_next_page", q="user12", mean_ms=p50s["next_page"])
    await conn.close()
    emit("summary", users=args.users, worst_p50_ms=max(p50s.values()), target_ms=500, met=max(p50s.values()) <= 500)


if __name__ == "__main__":
    asyncio.run(main())
