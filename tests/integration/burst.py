"""`python -m tests.integration.burst URL TOKEN N CONCURRENCY`: one tenant's identity provider gone wild.

Sends N GETs to the tenant's /Users over CONCURRENCY keep-alive connections as fast as they are answered; prints
`started` when the connections are open, then one JSON summary line. A separate process, so its CPU doesn't
slow the test process that measures another tenant's latency.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import orjson

from tests.integration.rawhttp import RawClient


async def main(base_url: str, token: str, total: int, concurrency: int) -> dict[str, object]:
    url = urlsplit(base_url)
    clients = [await RawClient.open(url.hostname or "", url.port or 80) for _ in range(concurrency)]
    headers = {"Authorization": f"Bearer {token}"}
    path = f"{url.path}/Users?count=1"
    statuses: Counter[int] = Counter()
    retry_after: Counter[str] = Counter()
    bad_429_bodies = 0
    remaining = total
    print("started", flush=True)
    started = time.perf_counter()

    async def worker(client: RawClient) -> None:
        nonlocal remaining, bad_429_bodies
        while remaining > 0:
            remaining -= 1
            response = await client.request("GET", path, headers)
            statuses[response.status] += 1
            if response.status == 429:
                retry_after[response.headers.get("retry-after", "missing")] += 1
                body = orjson.loads(response.body)
                if body.get("status") != "429" or "urn:ietf:params:scim:api:messages:2.0:Error" not in body["schemas"]:
                    bad_429_bodies += 1

    await asyncio.gather(*(worker(c) for c in clients))
    seconds = time.perf_counter() - started
    for client in clients:
        await client.close()
    return {
        "statuses": {str(k): v for k, v in statuses.items()},
        "retry_after": dict(retry_after),
        "bad_429_bodies": bad_429_bodies,
        "seconds": seconds,
    }


if __name__ == "__main__":
    base, tok, n, c = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    sys.stdout.write(orjson.dumps(asyncio.run(main(base, tok, n, c))).decode() + "\n")
