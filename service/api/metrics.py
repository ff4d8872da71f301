"""`/metrics`: Prometheus text format 0.0.4, rendered from memory, so a scrape costs no query.

The gauges (the relay's lag as seen from the event log, whether Postgres and Kafka answer) are refreshed in
the background every `SCIMSYNC_METRICS_REFRESH_MS` (gauges.py). The API reports the relay's lag (not the relay)
so the numbers exist even when no relay runs — that is when they matter.

Exposure: with `SCIMSYNC_METRICS_PORT` set, /metrics is served only on that port (bound to
`SCIMSYNC_METRICS_HOST`) and the public port answers 404; with `SCIMSYNC_METRICS_TOKEN` set, the public
/metrics wants `Authorization: Bearer <token>`. Neither: open on the API's port (the local default).
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.api.errors import error_response

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def metrics(request: Request) -> Response:
    deps = request.app.state.deps
    settings = deps.settings
    if settings.metrics_port:
        return error_response(404, "No such endpoint")
    if settings.metrics_token:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(), settings.metrics_token):
            return error_response(401, "Missing or invalid metrics token", headers={"WWW-Authenticate": "Bearer"})
    return Response(render(deps), headers={"Content-Type": CONTENT_TYPE})


def render(deps: Any) -> str:
    """Everything the API exports, all from memory: its registry and the audit log's own counters."""
    text: str = deps.metrics.render(time.monotonic())
    audit = getattr(deps, "audit", None)
    if audit is not None:
        text += (
            "# HELP scimsync_audit_dropped_rows_total Audit rows dropped (too many waited, or Postgres refused them).\n"
            "# TYPE scimsync_audit_dropped_rows_total counter\n"
            f"scimsync_audit_dropped_rows_total {audit.dropped}\n"
            "# HELP scimsync_audit_pending_rows Audit rows waiting to be written.\n"
            "# TYPE scimsync_audit_pending_rows gauge\n"
            f"scimsync_audit_pending_rows {audit.pending}\n"
        )
    return text


routes = [Route("/metrics", metrics, methods=["GET"])]
