"""Content negotiation (RFC 7644 §3.8): `application/scim+json` unless the client accepts only `application/json`.

OneLogin's documentation requires `application/json` responses and says so in `Accept`; Okta and Entra send
`application/scim+json` or nothing. The body is the same JSON either way: only the header changes, for every
response (errors too), in one pure-ASGI middleware so no endpoint has to think about it.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SCIM = "application/scim+json"
JSON = "application/json"


def _accepted(accept: str) -> dict[str, float]:
    """Media range → quality, for the two types we can send (wildcards don't choose between them)."""
    qualities: dict[str, float] = {}
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.lower()
        if media in (SCIM, JSON):
            qualities[media] = max(quality, qualities.get(media, 0.0))
    return qualities


def media_type(accept: str | None) -> str:
    """What to answer with: JSON only when the client accepts it and doesn't accept (or prefers less) SCIM's type."""
    if not accept:
        return SCIM
    qualities = _accepted(accept)
    json_q, scim_q = qualities.get(JSON, 0.0), qualities.get(SCIM, 0.0)
    return JSON if json_q > 0 and json_q > scim_q else SCIM


class ContentNegotiation:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or media_type(Headers(scope=scope).get("accept")) == SCIM:
            await self.app(scope, receive, send)
            return

        async def send_json(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    (name, JSON.encode() + value[len(SCIM) :])
                    if name.lower() == b"content-type" and value.lower().startswith(SCIM.encode())
                    else (name, value)
                    for name, value in message.get("headers", [])
                ]
            await send(message)

        await self.app(scope, receive, send_json)
