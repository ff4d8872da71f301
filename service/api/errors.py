"""The one place that turns errors into RFC 7644 §3.12 error bodies. No stack trace ever leaves here."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from service import logs
from service.api.responses import ScimResponse
from service.domain.errors import ScimError
from service.domain.schema import ERROR
from service.store.pool import DATABASE_ERRORS, contended, distrust_connections, unreachable

log = logs.get(__name__)
RETRY_AFTER_SECONDS = 5  # Okta and Entra retry a 503; a Postgres restart or failover takes seconds
CONTENTION = "Postgres rolled this write back to settle a conflict with a concurrent one; send it again"
RETRY_CONTENDED_SECONDS = 1  # a deadlock or serialization failure is over once Postgres has rolled one side back


def error_body(status: int, detail: str, scim_type: str | None = None) -> dict[str, object]:
    """The RFC 7644 §3.12 error body; also each failed operation's `response` in a BulkResponse."""
    body: dict[str, object] = {"schemas": [ERROR], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return body


def error_response(
    status: int, detail: str, scim_type: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    return ScimResponse(error_body(status, detail, scim_type), status_code=status, headers=headers)


async def scim_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ScimError)
    headers = {"WWW-Authenticate": 'Bearer realm="scimsync"'} if exc.status == 401 else None
    return error_response(exc.status, exc.detail, exc.scim_type, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no route) and 405 (no such method), in SCIM form."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers) if exc.headers else None
    detail = {404: "No such endpoint", 405: f"Method {request.method} not allowed here"}.get(
        exc.status_code, exc.detail
    )
    return error_response(exc.status_code, detail, headers=headers)


async def database_error(request: Request, exc: Exception) -> Response:
    """Postgres is away (restart, failover, network), or rolled the write back to end a deadlock with a concurrent
    one: a 503 the client retries, not a 500 that reads as our bug. The tenant lookup before every SCIM call goes
    through here too, so a token is never refused for it.
    Any other database error is a bug: re-raised, it becomes the last-resort 500 (api/middleware.py)."""
    if contended(exc):
        log.warning("request.database_contention", error=type(exc).__name__)
        return error_response(503, CONTENTION, headers={"Retry-After": str(RETRY_CONTENDED_SECONDS)})
    if not unreachable(exc):
        raise exc
    log.warning("request.database_unreachable", error=type(exc).__name__)
    await distrust_connections(getattr(request.app.state.deps, "pool", None))
    return error_response(
        503,
        "The database is unreachable for the moment; retry later",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


HANDLERS = {ScimError: scim_error, HTTPException: http_error, **dict.fromkeys(DATABASE_ERRORS, database_error)}
