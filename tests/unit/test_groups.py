"""Groups in the domain: bodies, PATCH → membership delta (never the member list), rendering, projection needs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from service.domain import groups
from service.domain.errors import InvalidPath, InvalidSyntax, InvalidValue, NoTarget
from service.domain.groups import GroupRecord, Member, MembershipDelta
from service.domain.schema import GROUP_TYPE, resolve

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
A, B, C = (str(uuid.UUID(int=i)) for i in (1, 2, 3))
NAMED = {"displayName": "Team"}


def plan(*ops: dict[str, Any], resource: dict[str, Any] | None = None) -> tuple[dict[str, Any], MembershipDelta]:
    return groups.plan_patch(resource or dict(NAMED), {"schemas": [PATCH_OP], "Operations": list(ops)})


def test_prepare_splits_members_from_attributes() -> None:
    body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "DisplayName": "Team",
        "externalId": "x",
        "members": [{"value": A, "display": "a", "$ref": None, "type": "User"}, {"value": B}, {"value": A}],
    }
    assert groups.prepare(body) == ({"displayName": "Team", "externalId": "x"}, [A, B])
    assert groups.prepare({"displayName": "T", "members": []}) == ({"displayName": "T"}, [])
    assert groups.prepare({"displayName": "T"}) == ({"displayName": "T"}, None)  # absent: a PUT keeps them


@pytest.mark.parametrize(
    "members",
    [
        [{"value": "not-a-uuid"}],
        [{"value": A, "type": "Group"}],
        [{"$ref": f"https://x/Groups/{A}"}],
        [{"display": "no value"}],
        [{"value": 7}],
        ["bare-string"],
    ],
)
def test_bad_members_are_invalid_value(members: list[Any]) -> None:
    with pytest.raises(InvalidValue):
        groups.prepare({"displayName": "T", "members": members})


def test_a_member_may_be_named_by_ref_only() -> None:
    assert groups.member_ids([{"$ref": f"https://x/scim/v2/t/Users/{A.upper()}"}]) == [A]


def test_displayName_is_required() -> None:
    with pytest.raises(InvalidValue):
        groups.prepare({"members": []})


def test_okta_membership_patch() -> None:
    resource, delta = plan(
        {"op": "replace", "value": {"id": "ignored", "displayName": "Team"}},
        {"op": "remove", "path": f'members[value eq "{A}"]'},
        {"op": "add", "path": "members", "value": [{"value": B, "display": "b"}]},
    )
    assert resource == NAMED
    assert delta == MembershipDelta(adds=(B,), removes=(A,))


def test_entra_membership_patch() -> None:
    resource, delta = plan(
        {"op": "Add", "path": "members", "value": [{"$ref": None, "value": A}]},
        {"op": "Remove", "path": "members", "value": [{"value": B}]},
        {"op": "Replace", "path": "displayName", "value": "Renamed"},
    )
    assert resource == {"displayName": "Renamed"}
    assert delta == MembershipDelta(adds=(A,), removes=(B,))


def test_operations_apply_in_order() -> None:
    assert plan(
        {"op": "add", "path": "members", "value": [{"value": A}]},
        {"op": "remove", "path": f'members[value eq "{A}"]'},
    )[1] == MembershipDelta(removes=(A,))
    assert plan(
        {"op": "remove", "path": f'members[value eq "{A}" or value eq "{B}"]'},
        {"op": "add", "path": "members", "value": [{"value": A}]},
    )[1] == MembershipDelta(adds=(A,), removes=(B,))


def test_replace_and_remove_all_start_from_no_members() -> None:
    assert plan({"op": "replace", "path": "members", "value": [{"value": A}, {"value": B}]})[1] == MembershipDelta(
        reset=True, adds=(A, B)
    )
    assert plan({"op": "remove", "path": "members"})[1] == MembershipDelta(reset=True)
    assert plan(
        {"op": "remove", "path": "members"},
        {"op": "add", "path": "members", "value": [{"value": C}]},
        {"op": "remove", "path": f'members[value eq "{A}"]'},  # nothing to remove from after a reset
    )[1] == MembershipDelta(reset=True, adds=(C,))
    resource, delta = plan({"op": "replace", "value": {"displayName": "X", "members": [{"value": A}]}})
    assert resource == {"displayName": "X"} and delta == MembershipDelta(reset=True, adds=(A,))
    assert plan({"op": "add", "value": {"members": [{"value": A}]}}) == (NAMED, MembershipDelta(adds=(A,)))


def test_urn_qualified_members_path() -> None:
    path = "urn:ietf:params:scim:schemas:core:2.0:Group:members"
    assert plan({"op": "add", "path": path, "value": [{"value": A}]})[1] == MembershipDelta(adds=(A,))


@pytest.mark.parametrize(
    ("op", "error"),
    [
        ({"op": "replace", "path": f'members[value eq "{A}"].display', "value": "x"}, InvalidPath),
        ({"op": "add", "path": f'members[value eq "{A}"]', "value": {"value": A}}, InvalidPath),
        ({"op": "remove", "path": 'members[type eq "User"]'}, InvalidPath),
        ({"op": "replace", "path": "members.value", "value": A}, InvalidPath),
        ({"op": "remove", "path": 'members[value eq "nope"]'}, InvalidValue),
        ({"op": "add", "path": "members", "value": [{"value": A, "type": "Group"}]}, InvalidValue),
        ({"op": "add", "path": "members"}, InvalidValue),
        ({"op": "remove", "path": "displayName"}, InvalidValue),
        ({"op": "remove"}, NoTarget),
        ({"op": "frobnicate", "path": "members"}, InvalidSyntax),
    ],
)
def test_bad_operations(op: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error, match=r"^Operations\[1\]: "):
        plan({"op": "add", "path": "members", "value": [{"value": B}]}, op)


def test_the_message_must_be_a_patch_op() -> None:
    with pytest.raises(InvalidSyntax):
        groups.plan_patch(NAMED, {"Operations": [{"op": "remove", "path": "members"}]})


def test_unknown_attributes_are_tolerated_like_for_users() -> None:
    assert plan({"op": "replace", "value": {"id": "x", "displayName": "Team", "whatever": 1}}) == (
        NAMED,
        MembershipDelta(),
    )


def test_what_a_projection_needs_loaded() -> None:
    assert groups.wants_members(None, None)
    assert not groups.wants_members(None, ["members"])
    assert not groups.wants_members(None, ["Members", "externalId"])
    assert groups.wants_members(None, ["members.display"])
    assert groups.wants_members(["members.value"], None)
    assert not groups.wants_members(["displayName"], None)
    assert groups.wants_display(["members.display"])
    assert not groups.wants_display(["members"]) and not groups.wants_display(None)


def record(members: tuple[Member, ...] | None) -> GroupRecord:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return GroupRecord(A, {"displayName": "Team", "externalId": "x"}, 3, now, now, members)


def test_render() -> None:
    rendered = groups.render(record((Member(B, "Bob"), Member(C))), "https://h/scim/v2/t")
    assert rendered == {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": A,
        "displayName": "Team",
        "externalId": "x",
        "members": [
            {"value": B, "display": "Bob", "type": "User", "$ref": f"https://h/scim/v2/t/Users/{B}"},
            {"value": C, "type": "User", "$ref": f"https://h/scim/v2/t/Users/{C}"},
        ],
        "meta": {
            "resourceType": "Group",
            "created": "2026-01-02T03:04:05Z",
            "lastModified": "2026-01-02T03:04:05Z",
            "location": f"https://h/scim/v2/t/Groups/{A}",
            "version": 'W/"3"',
        },
    }
    assert "members" not in groups.render(record(None), "b") and "members" not in groups.render(record(()), "b")


def test_event_data_never_carries_the_members_on_update() -> None:
    assert groups.event_data(A, {"displayName": "T"}) == {"id": A, "displayName": "T", "externalId": None}
    assert groups.created_data(A, {"displayName": "T", "externalId": "e"}, [B]) == {
        "id": A,
        "displayName": "T",
        "externalId": "e",
        "members": [B],
    }


def test_group_schema() -> None:
    ref = resolve(GROUP_TYPE, "MEMBERS.value")
    assert ref is not None and ref.key == ("members", "value") and ref.target.mutability == "immutable"
    display = resolve(GROUP_TYPE, "members.display")
    assert display is not None and display.target.returned == "request"
