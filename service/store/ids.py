"""Ids from URLs: anything that is not a uuid can't name a resource of ours, so it is a 404, not a 400."""

from __future__ import annotations

import uuid

from service.domain.errors import NotFound


def resource_id(value: str, kind: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{kind} {value} not found") from None
