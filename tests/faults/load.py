"""A bounded SCIM load on 127.0.0.1: creates, PATCHes, deactivations and group joins over several tenants.

Every response is recorded (when it was sent and answered, its status, its Retry-After). Like Okta and Entra, the
driver retries a request that got a 503 (after Retry-After, capped at 1 s) or no answer at all, so the writes it
meant to make are made once the fault is over; a create retried after an ambiguous failure may then answer 409.
Bounded by `max_ops` writes and `max_seconds`; paced at `rate` requests per second over `concurrency` workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
# What each kind of write answers when it worked.
OK = {"create": {201}, "update": {200}, "deactivate": {200}, "reactivate": {200}, "join": {204}, "group": {201}}
MIX = [("create", 35), ("update", 30), ("deactivate", 12), ("reactivate", 8), ("join", 15)]


@dataclass(frozen=True)
class Tenant:
    id: str
    token: str
    base_url: str


@dataclass(frozen=True)
class Outcome:
    op: str
    sent: float  # time.monotonic()
    answered: float
    status: int  # 0: no HTTP answer (connection refused/reset, timeout)
    retry_after: str | None
    retried: bool  # an earlier attempt of the same write failed


@dataclass
class Load:
    api_url: str
    tenants: list[Tenant]
    rate: float = 120.0
    max_ops: int = 4000
    max_seconds: float = 60.0
    concurrency: int = 6
    seed: int = 1
    outcomes: list[Outcome] = field(default_factory=list)
    users: dict[str, list[str]] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._stop = asyncio.Event()
        self._next_slot = 0.0
        self._started = 0
        self._serial = 0
        self._task: asyncio.Task[None] | None = None
        # 30 s, as patient as an identity provider: "no answer" then means stuck, not a slow moment of a busy machine.
        self._client = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=self.concurrency + 2))

    async def start(self) -> Load:
        for tenant in self.tenants:
            self.users[tenant.id] = []
            self.groups[tenant.id] = []
            for name in ("Floor 1", "Floor 2"):
                response = await self._write(tenant, "group", "POST", "/Groups", {"displayName": name})
                assert response is not None and response.status_code == 201, response and response.text
                self.groups[tenant.id].append(response.json()["id"])
        self._deadline = time.monotonic() + self.max_seconds
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self, within: float = 60) -> None:
        """Stop starting writes; let the ones in flight finish (a retried write may wait for the fault's end)."""
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, within)
        await self._client.aclose()

    @property
    def writes(self) -> int:
        return self._started

    async def wait_for_writes(self, count: int, within: float = 90) -> None:
        """Until at least `count` writes have been started (pacing the test on the load, not on a clock)."""
        deadline = time.monotonic() + within
        while self._started < count:
            assert self._task is not None and not self._task.done(), "the load ended early"
            assert time.monotonic() < deadline, f"only {self._started} writes within {within} s"
            await asyncio.sleep(0.02)

    async def wait_for_ok(self, since: float, count: int, within: float = 30) -> float:
        """Until `count` writes sent after `since` (monotonic) have worked. → when the first of them was answered."""
        deadline = time.monotonic() + within
        while len(ok := [o.answered for o in self.outcomes if o.sent > since and o.status in OK[o.op]]) < count:
            assert self._task is not None and not self._task.done(), "the load ended early"
            assert time.monotonic() < deadline, f"only {len(ok)} writes sent since then worked within {within} s"
            await asyncio.sleep(0.02)
        return min(ok)

    async def _run(self) -> None:
        workers = [asyncio.create_task(self._worker()) for _ in range(self.concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()

    def _more(self) -> bool:
        return not self._stop.is_set() and self._started < self.max_ops and time.monotonic() < self._deadline

    async def _worker(self) -> None:
        while self._more():
            now = time.monotonic()
            self._next_slot = max(self._next_slot, now) + 1 / self.rate
            await asyncio.sleep(self._next_slot - now)
            if not self._more():
                return
            self._started += 1
            await self._one(self._rng.choice(self.tenants))

    async def _one(self, tenant: Tenant) -> None:
        users = self.users[tenant.id]
        op = "create" if len(users) < 3 else self._rng.choices([m for m, _ in MIX], [w for _, w in MIX])[0]
        if op == "create":
            self._serial += 1
            name = f"load.{self._serial}.{uuid.uuid4().hex[:6]}@example.com"
            body: dict[str, Any] = {"userName": name, "name": {"givenName": "Load", "familyName": str(self._serial)}}
            response = await self._write(tenant, op, "POST", "/Users", body)
            if response is not None and response.status_code == 201:
                users.append(response.json()["id"])
            return
        user = self._rng.choice(users)
        if op == "join":
            group = self._rng.choice(self.groups[tenant.id])
            value = [{"value": user}]
            body = {"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": value}]}
            await self._write(tenant, op, "PATCH", f"/Groups/{group}", body)
            return
        operation: dict[str, Any] = {
            "update": {"op": "replace", "path": "title", "value": f"title {self._rng.randrange(10**6)}"},
            "deactivate": {"op": "replace", "value": {"active": False}},
            "reactivate": {"op": "replace", "value": {"active": True}},
        }[op]
        await self._write(tenant, op, "PATCH", f"/Users/{user}", {"schemas": [PATCH], "Operations": [operation]})

    async def _write(self, tenant: Tenant, op: str, method: str, path: str, body: Any) -> httpx.Response | None:
        headers = {"Authorization": f"Bearer {tenant.token}", "Content-Type": "application/scim+json"}
        retried = False
        while True:
            sent = time.monotonic()
            response: httpx.Response | None = None
            with contextlib.suppress(httpx.TransportError):
                response = await self._client.request(method, tenant.base_url + path, json=body, headers=headers)
            status = 0 if response is None else response.status_code
            retry_after = None if response is None else response.headers.get("retry-after")
            self.outcomes.append(Outcome(op, sent, time.monotonic(), status, retry_after, retried))
            if status not in (0, 503) or time.monotonic() > self._deadline + 120:
                return response
            retried = True
            await asyncio.sleep(_pause(retry_after))


def _pause(retry_after: str | None) -> float:
    try:
        return min(max(float(retry_after or 0.2), 0.05), 1.0)
    except ValueError:
        return 0.2


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    statuses = Counter(o.status for o in outcomes)
    return {
        "requests": len(outcomes),
        "statuses": dict(sorted(statuses.items())),
        "5xx": sum(n for s, n in statuses.items() if s >= 500),
        "500": statuses.get(500, 0),
        "503": statuses.get(503, 0),
        "no_answer": statuses.get(0, 0),
        "slowest_answer_s": round(max((o.answered - o.sent for o in outcomes), default=0.0), 2),
    }
