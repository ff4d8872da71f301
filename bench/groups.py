"""Group membership cost: PATCH add/remove of one member on a 10,000-member group versus a 10-member group.

    .venv/bin/python -m bench.groups [--members 10000] [--patches 300]

Needs the local stack (`make stack-up`). One client, sequential requests over HTTP against an API process, each
PATCH shaped like Okta's (no-path replace of {id, displayName}, then an add or a remove of one member). Measured
twice: as Okta sends it (the 200 response carries the group with its members) and with
`?excludedAttributes=members` (the membership write alone). Prints one JSON line per measurement.
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
from service.store.pool import connect

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


async def _analyze(url: str) -> None:
    conn = await connect(url)
    await conn.execute("ANALYZE group_members")
    await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--patches", type=int, default=300)
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


if __name__ == "__main__":
    asyncio.run(main())
