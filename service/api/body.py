"""Reading a request body: media type, size limit and JSON syntax, each with its SCIM error."""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.requests import Request

from service.domain.errors import InvalidSyntax, InvalidValue, PayloadTooLarge, UnsupportedMediaType
from service.domain.text import first_unstorable

_ACCEPTED = ("application/scim+json", "application/json")


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    content_type = request.headers.get("content-type")
    # A missing Content-Type is tolerated (some clients omit it); a different one is refused.
    if content_type is not None and content_type.split(";")[0].strip().lower() not in _ACCEPTED:
        raise UnsupportedMediaType(f"Content-Type must be application/scim+json, got {content_type}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body exceeds {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _lone_surrogate(raw) or InvalidSyntax(f"Request body is not valid JSON: {exc}") from None
    # NUL can only arrive as a \u escape (orjson refuses raw control characters and lone surrogates), so
    # the walk over every string is skipped for the bodies without one: nearly all of them.
    if b"\\u" in raw and (why := first_unstorable(body)) is not None:
        raise InvalidValue(f"Request body contains {why}, which can't be stored")
    if not isinstance(body, dict):
        raise InvalidSyntax("Request body must be a JSON object")
    return body


def _lone_surrogate(raw: bytes) -> InvalidValue | None:
    """orjson refuses a lone surrogate escape (`\\ud800`) as bad JSON, but JSON's grammar allows it (RFC 8259 §8.2):
    like NUL it is a value that can't be stored, so it gets NUL's answer. Only looked for in a body orjson refused."""
    if b"\\ud" not in raw and b"\\uD" not in raw:
        return None
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    why = first_unstorable(body)
    return None if why is None else InvalidValue(f"Request body contains {why}, which can't be stored")
