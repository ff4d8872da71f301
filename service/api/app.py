"""The API's composition root: builds the Starlette app and wires its dependencies at start-up."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from consumers.runtime.metrics import serve as serve_metrics
from service import logs, readiness, tracing
from service.admin.routes import mount as admin_mount
from service.api import bulk, discovery, groups, hangup, health, metrics, prometheus, root_search, users
from service.api.errors import HANDLERS
from service.api.gauges import GaugeRefresher
from service.api.limits import TenantLimits
from service.api.middleware import RequestContext, TenantAuth
from service.api.negotiation import ContentNegotiation
from service.domain.ratelimit import Limit, RateLimiter
from service.settings import Settings
from service.store.audit import AuditLog
from service.store.pool import create_pool
from service.store.tenants import TenantDirectory

log = logs.get(__name__)


@dataclass
class Dependencies:
    """What endpoints and middleware use; filled in when the app starts."""

    settings: Settings
    pool: Any = None
    tenants: Any = None
    audit: Any = None
    kafka: Any = field(default=None)
    metrics: prometheus.ApiMetrics = field(default_factory=prometheus.ApiMetrics)
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(Limit(0, 1)))

    def render_metrics(self) -> str:
        return metrics.render(self)

    async def readiness(self) -> dict[str, str | None]:
        db, kafka = await asyncio.gather(readiness.postgres(self.pool), self.kafka.check())
        return {"postgres": db, "kafka": kafka}


def create_app(settings: Settings) -> Starlette:
    deps = Dependencies(
        settings,
        metrics=prometheus.ApiMetrics(tenant_label=settings.metrics_tenant_label),
        limiter=RateLimiter(Limit(settings.rate_limit_per_second, settings.rate_limit_burst)),
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        traced = tracing.setup("scimsync-api")  # in each worker process; off without an OTLP endpoint
        # Postgres away at start (e.g. a failover while the pod starts): start anyway, answer 503 until it is back.
        deps.pool = await create_pool(
            settings.database_url, settings.db_pool_min, settings.db_pool_max, tolerate_unreachable=True
        )
        deps.tenants = TenantDirectory(deps.pool)
        deps.audit = AuditLog(
            deps.pool, retention_days=settings.audit_retention_days, max_pending=settings.audit_max_pending
        )
        deps.kafka = readiness.KafkaProbe(settings.kafka_bootstrap_servers, settings.kafka.client_options())
        await deps.tenants.start()
        await deps.audit.start()
        gauges = GaugeRefresher(deps.metrics, deps.readiness, deps.pool, settings.metrics_refresh_seconds)
        await gauges.start()
        metrics_server = None
        if settings.metrics_port:  # Prometheus scrapes this internal port; the public one has no /metrics
            metrics_server = await serve_metrics(deps.render_metrics, settings.metrics_port, settings.metrics_host)
        # Everything allocated so far lives as long as the process: keep it out of the collector's scans, and
        # collect the young generation less often. Full collections were the API's worst latency spikes.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        log.info("api.started", public_url=settings.public_url, tracing=traced)
        try:
            yield
        finally:
            if metrics_server is not None:
                metrics_server.close()
            await gauges.stop()
            await deps.audit.stop()
            await deps.tenants.stop()
            await deps.kafka.close()
            await deps.pool.close()
            await asyncio.to_thread(tracing.shutdown)  # the last spans leave before the process does
            log.info("api.stopped")

    scim = Mount(
        "/scim/v2/{tenant_id}",
        routes=[*users.routes, *groups.routes, *bulk.routes, *root_search.routes, *discovery.routes],
        middleware=[Middleware(TenantAuth, deps=deps), Middleware(TenantLimits, deps=deps)],
    )
    app = _App(
        routes=[*health.routes, *metrics.routes, scim, admin_mount()],
        middleware=[Middleware(ContentNegotiation), Middleware(RequestContext, deps=deps)],
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )
    app.state.deps = deps
    return app


class _App(Starlette):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            hangup.offer(scope, send)  # the server's own send: middleware wraps it from here on
        await super().__call__(scope, receive, send)


def app_from_env() -> Starlette:
    """The factory a multi-worker uvicorn calls in each worker process."""
    settings = Settings.from_env()
    logs.configure(settings.log_level, fmt=settings.log_format)
    return create_app(settings)
