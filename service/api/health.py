"""`/healthz`: the process is alive. `/readyz`: Postgres and Kafka both answer (else 503 naming which).

`/readyz?require=postgres` checks only what serving SCIM needs: a Kubernetes readiness probe must not take every
API pod out of the Service while Kafka is down, because SCIM calls keep succeeding then (the outbox waits).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.api.responses import JsonResponse


async def healthz(request: Request) -> Response:
    return JsonResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    deps = request.app.state.deps
    required = set(request.query_params.get("require", "postgres,kafka").split(","))
    problems = {
        name: reason for name, reason in (await deps.readiness()).items() if reason is not None and name in required
    }
    if problems:
        return JsonResponse({"status": "unavailable", "down": problems}, status_code=503)
    return JsonResponse({"status": "ready"})


routes = [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
