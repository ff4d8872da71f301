from datetime import UTC, datetime

import pytest

from service.domain import users
from service.domain.errors import InvalidValue
from service.domain.tenants import TOKEN_PREFIX, hash_token, new_token, token_matches

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_tokens_are_random_and_only_their_hash_matches() -> None:
    token, other = new_token(), new_token()
    assert token.startswith(TOKEN_PREFIX) and token != other and len(token) > 40
    assert token_matches(token, hash_token(token))
    assert not token_matches(other, hash_token(token))
    assert token.encode() not in hash_token(token)


def record(**resource: object) -> users.UserRecord:
    return users.UserRecord("u1", {"userName": "a@x.com", **resource}, 3, WHEN, WHEN)


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        (None, {"userName": "a", "active": True}, users.CREATED),
        ({"userName": "a", "active": True}, None, users.DELETED),
        ({"userName": "a", "active": True}, {"userName": "a", "active": True}, None),
        ({"userName": "a", "active": True}, {"userName": "b", "active": True}, users.UPDATED),
        ({"userName": "a", "active": True}, {"userName": "b", "active": False}, users.DEACTIVATED),
        ({"userName": "a", "active": False}, {"userName": "a", "active": True}, users.REACTIVATED),
        ({"userName": "a", "active": False}, {"userName": "a"}, users.REACTIVATED),  # no `active` means active
    ],
)
def test_which_event_a_change_is(before: dict[str, object] | None, after: dict[str, object] | None, kind: str) -> None:
    assert users.event_type(before, after) == kind


def test_a_put_without_active_never_reactivates_a_leaver() -> None:
    assert users.prepare_replacement(record(active=False), {"userName": "a@x.com"})["active"] is False
    assert users.prepare_new({"userName": "a@x.com"})["active"] is True


@pytest.mark.parametrize("resource", [{}, {"userName": ""}, {"userName": "   "}, {"userName": 5}])
def test_a_user_needs_a_user_name(resource: dict[str, object]) -> None:
    with pytest.raises(InvalidValue):
        users.validate(resource)


def test_render_and_event_data() -> None:
    rendered = users.render(record(active=False), "https://x/scim/v2/t")
    assert rendered["meta"] == {
        "resourceType": "User",
        "created": "2026-01-02T03:04:05Z",
        "lastModified": "2026-01-02T03:04:05Z",
        "location": "https://x/scim/v2/t/Users/u1",
        "version": 'W/"3"',
    }
    assert rendered["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:User"]
    assert users.event_data("u1", {"userName": "a"}) == {"id": "u1", "userName": "a", "active": True}
    assert users.event_data("u1", None) == {"id": "u1"}
