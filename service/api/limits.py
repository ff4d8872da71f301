"""Per-tenant limits (pure ASGI, behind TenantAuth): one identity provider must not starve the other tenants.

Two guards, both per API process:
- a token bucket (service/domain/ratelimit.py): over it, `429` with `Retry-After` and a SCIM error body;
- a cap on the tenant's requests in flight (`SCIMSYNC_TENANT_CONCURRENCY`): more wait for a slot, so a burst of
  admitted requests can't fill the event loop and the database pool; other tenants' requests pass them by.

A refusal is answered after a short hold (`SCIMSYNC_RATE_LIMIT_HOLD_MS`, never longer than its Retry-After):
identity providers send from a fixed number of connections, so instant 429s would let a flood spin at
whatever rate the server can refuse it, which is the CPU the other tenants need. A held 429 costs a sleeping
coroutine; at most MAX_HELD are held, beyond that they are answered at once. Holds are jittered (50-100%).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import error_response

MAX_HELD = 10_000


class TenantLimits:
    def __init__(self, app: ASGIApp, deps: Any) -> None:
        self.app = app
        self.deps = deps
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._held = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tenant = scope["tenant"]
        limiter = self.deps.limiter
        limit = limiter.limit_for(tenant.rate_limit_per_second, tenant.rate_limit_burst)
        wait = limiter.take(tenant.id, limit, time.monotonic())
        if wait > 0:
            await self._refuse(tenant.id, wait, scope, receive, send)
            return
        slots = self._slots.get(tenant.id)
        if slots is None:
            slots = self._slots[tenant.id] = asyncio.Semaphore(self.deps.settings.tenant_concurrency)
        async with slots:
            await self.app(scope, receive, send)

    async def _refuse(self, tenant_id: str, wait: float, scope: Scope, receive: Receive, send: Send) -> None:
        self.deps.metrics.rate_limited(tenant_id)
        retry_after = max(1, math.ceil(wait))
        # Jittered: refusals held for the same time would come back as one wave of requests, a latency spike for all.
        hold = min(float(retry_after), self.deps.settings.rate_limit_hold_seconds) * random.uniform(0.5, 1.0)
        if hold > 0 and self._held < MAX_HELD:
            self._held += 1
            try:
                await asyncio.sleep(hold)
            finally:
                self._held -= 1
        detail = f"Too many requests for this tenant; retry after {retry_after} s"
        await error_response(429, detail, headers={"Retry-After": str(retry_after)})(scope, receive, send)
