"""`/healthz`: the process is alive. `/readyz`: Postgres and Kafka both answer (else 503 naming which)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.api.responses import JsonResponse


async def healthz(request: Request) -> Response:
    return JsonResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    deps = request.app.state.deps
    problems = {name: reason for name, reason in (await deps.readiness()).items() if reason is not None}
    if problems:
        return JsonResponse({"status": "unavailable", "down": problems}, status_code=503)
    return JsonResponse({"status": "ready"})


routes = [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
