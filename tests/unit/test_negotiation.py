"""Choosing the response media type from `Accept` (service/api/negotiation.py)."""

from __future__ import annotations

import pytest

from service.api.negotiation import JSON, SCIM, media_type


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, SCIM),
        ("", SCIM),
        ("*/*", SCIM),
        ("application/scim+json", SCIM),
        ("application/json", JSON),  # OneLogin
        ("Application/JSON; charset=utf-8", JSON),
        ("application/json, application/scim+json", SCIM),
        ("application/scim+json;q=0.5, application/json", JSON),
        ("application/json;q=0.4, application/scim+json;q=0.9", SCIM),
        ("application/json;q=0", SCIM),
        ("application/json;q=bogus", SCIM),
        ("text/html, application/json;q=0.9, */*;q=0.8", JSON),
        ("text/html", SCIM),
    ],
)
def test_media_type(accept: str | None, expected: str) -> None:
    assert media_type(accept) == expected
