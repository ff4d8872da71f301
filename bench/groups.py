"""Group membership cost: PATCH add/remove of one member on a 10,000-member group versus a 10-member group, and
the read side of a 200,000-member group.

    .venv/bin/python -m bench.groups [--members 10000] [--patches 300] [--read-members 200000]

Needs the local stack (`make stack-up`). One client, sequential requests over HTTP against an API process, each
PATCH shaped like Okta's (no-path replace of {id, displayName}, then an add or a remove of one member). Measured
twice: as Okta sends it (the 200 response carries the group with its members) and with
`?excludedAttributes=members` (the membership write alone). Then, with a group of `--read-members` members: the
whole group (`GET /Groups/{id}`: time, body size and the API's peak RSS before and after), the group without its
members, and `filter=members[value eq "…"]`. Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid

import httpx

from bench.harness import api_process, fresh_database, new_tenant
from bench.procs import listening_pid, peak_rss_mb
from service.store import groups as groups_store
from service.store.pool import connect, create_pool

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

_SEED = """
INSERT INTO users (tenant_id, id, user_name, active, version, resource, created_at, updated_at)
SELECT $1, gen_random_uuid(), $2 || g || '@example.com', true, 1,
       jsonb_build_object('userName', $2 || g || '@example.com', 'active', true), now(), now()
FROM generate_series(1, $3) AS g
RETURNING id::text
"""


def emit(name: str, **values: object) -> None:
    print(json.dumps({"bench": name, **values}), flush=True)


async def seed_users(url: str, tenant_id: str, prefix: str, count: int) -> list[str]:
    conn = await connect(url)
    ids = [r[0] for r in await conn.fetch(_SEED, uuid.UUID(tenant_id), prefix, count)]
    await conn.execute("ANALYZE users")
    await conn.close()
    return ids


def okta_patch(group_id: str, name: str, op: dict[str, object]) -> dict[str, object]:
    return {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "value": {"id": group_id, "displayName": name}}, op],
    }


def measure(
    client: httpx.Client, groups: dict[str, str], spare: list[str], patches: int, params: dict[str, str]
) -> dict[str, dict[str, float]]:
    """`patches` PATCHes per group alternating add and remove of one spare user, the groups interleaved so
    that both see the same database (cache, autovacuum, plan cache); latencies in ms per group name."""
    latencies: dict[str, list[float]] = {name: [] for name in groups}
    for i in range(patches + 20):  # the first 20 warm up (prepared statements, connections)
        user = spare[(i // 2) % len(spare)]
        if i % 2 == 0:
            op: dict[str, object] = {"op": "add", "path": "members", "value": [{"value": user, "display": user}]}
        else:
            op = {"op": "remove", "path": f'members[value eq "{user}"]'}
        for name, group_id in groups.items():
            started = time.perf_counter()
            response = client.patch(f"/Groups/{group_id}", json=okta_patch(group_id, name, op), params=params)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code not in (200, 204):
                raise SystemExit(f"bench: PATCH answered {response.status_code}: {response.text[:300]}")
            if i >= 20:
                latencies[name].append(elapsed)
    out = {}
    for name, values in latencies.items():
        values.sort()
        out[name] = {
            "p50_ms": round(statistics.median(values), 2),
            "p99_ms": round(values[int(len(values) * 0.99) - 1], 2),
            "mean_ms": round(statistics.fmean(values), 2),
        }
    return out


def drive(
    url: str, tenant_id: str, token: str, big: list[str], small: list[str], spare: list[str], patches: int
) -> None:
    """Create the two groups through the API, then PATCH each one member at a time."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    with (
        api_process(url) as api,
        httpx.Client(base_url=f"{api}/scim/v2/{tenant_id}", headers=headers, timeout=60) as client,
    ):
        groups = {}
        for name, members in (("big", big), ("small", small)):
            started = time.perf_counter()
            body = {"displayName": name, "members": [{"value": m} for m in members]}
            created = client.post("/Groups", json=body, params={"excludedAttributes": "members"})
            assert created.status_code == 201, created.text
            groups[name] = created.json()["id"]
            emit("create_group", members=len(members), ms=round((time.perf_counter() - started) * 1000, 1))
        # Autovacuum would analyze the 10k new rows within a minute; without statistics the planner takes a
        # group's rows as one and filters them instead of looking the member up in the primary key.
        asyncio.run(_analyze(url))
        for label, params in (
            ("excludedAttributes_members_200", {"excludedAttributes": "members"}),
            ("okta_default_204", {}),
            ("attributes_members_200", {"attributes": "members"}),
        ):
            results = measure(client, groups, spare, patches, params)
            for name, members in (("big", big), ("small", small)):
                emit("patch_one_member", response=label, group_members=len(members), patches=patches, **results[name])


def _timed(client: httpx.Client, path: str, params: dict[str, str], samples: int) -> dict[str, float]:
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        answer = client.get(path, params=params)
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise SystemExit(f"bench: GET {path} answered {answer.status_code}: {answer.text[:300]}")
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2), "p99_ms": round(times[int(len(times) * 0.99) - 1], 2)}


def read_side(
    url: str, tenant_id: str, token: str, group_id: str, member: str, members: int, spare: list[str], patches: int
) -> None:
    """The read side of a big group: the whole group (peak RSS of the API), without its members, and the
    `members[value eq]` filter; then a one-member PATCH on it against one on a 10-member group. One client,
    sequential."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    with (
        api_process(url) as api,
        httpx.Client(base_url=f"{api}/scim/v2/{tenant_id}", headers=headers, timeout=120) as client,
    ):
        pid = listening_pid(int(api.rsplit(":", 1)[1]))
        # Warm up (the pool, prepared statements), then the API's resident set before any big read.
        _timed(client, f"/Groups/{group_id}", {"excludedAttributes": "members"}, 20)
        rss_before = peak_rss_mb(pid)
        started = time.perf_counter()
        size = 0
        with client.stream("GET", f"/Groups/{group_id}") as answer:
            assert answer.status_code == 200, answer.status_code
            for chunk in answer.iter_bytes():
                size += len(chunk)
        whole_ms = round((time.perf_counter() - started) * 1000, 1)
        emit(
            "big_group_get",
            group_members=members,
            ms=whole_ms,
            body_mb=round(size / 1e6, 1),
            api_peak_rss_before_mb=rss_before,
            api_peak_rss_after_mb=peak_rss_mb(pid),
        )
        excluded = _timed(client, f"/Groups/{group_id}", {"excludedAttributes": "members"}, 50)
        emit("big_group_get_excludedAttributes_members", group_members=members, target_ms=10, **excluded)
        filtered = _timed(
            client, "/Groups", {"filter": f'members[value eq "{member}"]', "excludedAttributes": "members"}, 50
        )
        emit("big_group_filter_members_value_eq", group_members=members, target_ms=10, **filtered)
        ten = {"displayName": "read-small", "members": [{"value": m} for m in spare[:10]]}
        small = client.post("/Groups", json=ten)
        assert small.status_code == 201, small.text
        results = measure(client, {"read-side": group_id, "read-small": small.json()["id"]}, spare[10:], patches, {})
        big, of_ten = results["read-side"], results["read-small"]
        emit(
            "patch_one_member_big_vs_10",
            group_members=members,
            patches=patches,
            big_p50_ms=big["p50_ms"],
            ten_p50_ms=of_ten["p50_ms"],
            ratio_p50=round(big["p50_ms"] / of_ten["p50_ms"], 2),
            target_ratio=3,
        )


async def _seed_big_group(url: str, tenant_id: str, members: int) -> tuple[str, str, list[str]]:
    """A group created by the store, its members inserted straight into group_members (no events: only the
    read side is measured here); returns (group id, one member's id, 60 users in no group)."""
    ids = await seed_users(url, tenant_id, "read", members + 60)
    ids, spare = ids[:members], ids[members:]
    pool = await create_pool(url, 1, 2)
    group_id = (await groups_store.create(pool, tenant_id, {"displayName": "read-side"}, [])).id
    await pool.close()
    conn = await connect(url)
    await conn.execute(
        "INSERT INTO group_members (tenant_id, group_id, user_id) SELECT $1, $2, u FROM unnest($3::uuid[]) AS u",
        uuid.UUID(tenant_id),
        uuid.UUID(group_id),
        [uuid.UUID(i) for i in ids],
    )
    await conn.execute("ANALYZE group_members")
    await conn.close()
    return group_id, ids[len(ids) // 2], spare


async def _analyze(url: str) -> None:
    conn = await connect(url)
    await conn.execute("ANALYZE group_members")
    await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--patches", type=int, default=300)
    parser.add_argument("--read-members", type=int, default=200_000, help="the read side's group size (0: skip)")
    args = parser.parse_args()

    url = await fresh_database("scimsync_bench_groups")
    tenant_id, token = await new_tenant(url)
    big_members = await seed_users(url, tenant_id, "big", args.members)
    small_members = await seed_users(url, tenant_id, "small", 10)
    spare = await seed_users(url, tenant_id, "spare", 50)
    await asyncio.to_thread(drive, url, tenant_id, token, big_members, small_members, spare, args.patches)
    conn = await connect(url)
    sizes = await conn.fetch("SELECT group_id, count(*) FROM group_members GROUP BY group_id")
    events = await conn.fetchval("SELECT count(*) FROM events WHERE type = 'group.membership_changed'")
    await conn.close()
    emit("check", member_rows=sorted(r[1] for r in sizes), membership_events=events)
    if args.read_members:
        group_id, member, spare = await _seed_big_group(url, tenant_id, args.read_members)
        await asyncio.to_thread(
            read_side, url, tenant_id, token, group_id, member, args.read_members, spare, args.patches
        )


if __name__ == "__main__":
    asyncio.run(main())
