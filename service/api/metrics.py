"""`/metrics`: Prometheus text format 0.0.4, the relay's lag as seen from the event log.

The API reports it (not the relay) so the numbers exist even when no relay runs — that is when they matter.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.store import outbox
from service.store.pool import UNREACHABLE

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def metrics(request: Request) -> Response:
    deps = request.app.state.deps
    audit = deps.audit
    body = (
        "# HELP scimsync_audit_dropped_rows_total Audit rows dropped because too many waited for Postgres.\n"
        "# TYPE scimsync_audit_dropped_rows_total counter\n"
        f"scimsync_audit_dropped_rows_total {audit.dropped}\n"
        "# HELP scimsync_audit_pending_rows Audit rows waiting to be written.\n"
        "# TYPE scimsync_audit_pending_rows gauge\n"
        f"scimsync_audit_pending_rows {audit.pending}\n"
    )
    try:
        lag = await outbox.lag(deps.pool)
    except UNREACHABLE:
        # Postgres away: the process's own counters above matter most now; the lag gauges are absent.
        return Response(body, headers={"Content-Type": CONTENT_TYPE})
    body += (
        "# HELP scimsync_outbox_unpublished_events Events in the event log not yet published to Kafka.\n"
        "# TYPE scimsync_outbox_unpublished_events gauge\n"
        f"scimsync_outbox_unpublished_events {lag.unpublished}\n"
        "# HELP scimsync_outbox_oldest_unpublished_age_seconds Age of the oldest unpublished event (0 if none).\n"
        "# TYPE scimsync_outbox_oldest_unpublished_age_seconds gauge\n"
        f"scimsync_outbox_oldest_unpublished_age_seconds {lag.oldest_age_seconds:.3f}\n"
    )
    return Response(body, headers={"Content-Type": CONTENT_TYPE})


routes = [Route("/metrics", metrics, methods=["GET"])]
