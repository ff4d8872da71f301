"""normalize / present_schemas / project: POST and PUT bodies as Okta and Entra send them (DESIGN §6)."""

from __future__ import annotations

from typing import Any

import pytest

from service.domain.errors import InvalidSyntax, InvalidValue
from service.domain.resource import normalize, present_schemas, project
from service.domain.schema import ENTERPRISE_SCHEMA, USER_SCHEMA

ENT = ENTERPRISE_SCHEMA


def test_okta_create_body() -> None:
    body = {
        "schemas": [USER_SCHEMA],
        "userName": "isaac.brock@example.com",
        "name": {"givenName": "Isaac", "familyName": "Brock"},
        "emails": [{"primary": True, "value": "isaac.brock@example.com", "type": "work"}],
        "displayName": "Isaac Brock",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": True,
    }
    assert normalize(body) == {
        "userName": "isaac.brock@example.com",
        "name": {"givenName": "Isaac", "familyName": "Brock"},
        "emails": [{"primary": True, "value": "isaac.brock@example.com", "type": "work"}],
        "displayName": "Isaac Brock",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "active": True,
    }


def test_entra_create_body() -> None:
    body = {
        "UserName": "UserName123",
        "Active": True,
        "DisplayName": "BobIsAwesome",
        "schemas": [USER_SCHEMA, ENT],
        "externalId": "${Team}",
        "name": {"formatted": "Ryan Leenay", "familyName": "Leenay", "givenName": "Ryan"},
        "emails": [{"Primary": "True", "type": "work", "value": "testing@bob.com"}],
        ENT: {"Department": "some department", "manager": "mgr-1"},
        "roles": [],
    }
    assert normalize(body) == {
        "userName": "UserName123",
        "active": True,
        "displayName": "BobIsAwesome",
        "externalId": "${Team}",
        "name": {"formatted": "Ryan Leenay", "familyName": "Leenay", "givenName": "Ryan"},
        "emails": [{"primary": True, "type": "work", "value": "testing@bob.com"}],
        ENT: {"department": "some department", "manager": {"value": "mgr-1"}},
    }


def test_names_are_case_insensitive_values_are_kept_as_given() -> None:
    out = normalize(
        {"USERNAME": "Bob@Example.COM", "ACTIVE": False, "Emails": [{"Value": "Bob@X.com", "TYPE": "Work"}]}
    )
    assert out == {"userName": "Bob@Example.COM", "active": False, "emails": [{"value": "Bob@X.com", "type": "Work"}]}


@pytest.mark.parametrize(("raw", "expected"), [("True", True), ("False", False), ("true", True), ("FALSE", False)])
def test_entra_string_booleans(raw: str, expected: bool) -> None:
    assert normalize({"userName": "u", "active": raw})["active"] is expected


@pytest.mark.parametrize("raw", ["yes", "1", 1, 0, ["true"], {"value": True}])
def test_other_booleans_are_invalid(raw: Any) -> None:
    with pytest.raises(InvalidValue) as err:
        normalize({"userName": "u", "active": raw})
    assert err.value.status == 400
    assert err.value.scim_type == "invalidValue"
    assert "active" in err.value.detail


def test_manager_as_plain_string_and_read_only_display_name() -> None:
    out = normalize({"userName": "u", ENT: {"manager": {"value": "m1", "displayName": "Boss"}}})
    assert out[ENT] == {"manager": {"value": "m1"}}
    assert normalize({"userName": "u", ENT: {"manager": "m2"}})[ENT] == {"manager": {"value": "m2"}}


def test_urn_qualified_keys_and_any_case_extension_key() -> None:
    out = normalize(
        {
            "userName": "u",
            f"{ENT}:department": "Eng",
            f"{ENT}:manager": "m1",
            ENT.upper(): {"costCenter": "42"},
            f"{USER_SCHEMA}:title": "CTO",
        }
    )
    assert out == {
        "userName": "u",
        "title": "CTO",
        ENT: {"department": "Eng", "manager": {"value": "m1"}, "costCenter": "42"},
    }


def test_single_complex_is_wrapped_in_a_list() -> None:
    out = normalize({"userName": "u", "emails": {"value": "a@x.com", "type": "work"}})
    assert out["emails"] == [{"value": "a@x.com", "type": "work"}]


def test_unknown_read_only_and_password_are_ignored() -> None:
    out = normalize(
        {
            "userName": "u",
            "id": "client-chosen",
            "meta": {"resourceType": "User"},
            "groups": [{"value": "g1"}],
            "password": "secret",
            "customAttribute": "x",
            "urn:ietf:params:scim:schemas:extension:CustomExtension:2.0:User": {"costCenter": "1"},
            "urn:ietf:params:scim:schemas:extension:CustomExtension:2.0:User:badge": "7",
            "name": {"givenName": "A", "nonsense": "x"},
        }
    )
    assert out == {"userName": "u", "name": {"givenName": "A"}}


def test_empty_values_are_omitted() -> None:
    out = normalize(
        {"userName": "u", "nickName": "", "title": None, "name": {}, "emails": [], "phoneNumbers": [{}], ENT: {}}
    )
    assert out == {"userName": "u"}


@pytest.mark.parametrize(
    ("body", "word"),
    [
        ({"userName": 42}, "userName"),
        ({"userName": "u", "name": "Ann Lee"}, "name"),
        ({"userName": "u", "displayName": ["a", "b"]}, "displayName"),
        ({"userName": "u", "emails": "a@x.com"}, "emails"),
        ({"userName": "u", "emails": [{"value": ["a@x.com"]}]}, "emails[0].value"),
        ({"userName": "u", ENT: "Eng"}, ENT),
    ],
)
def test_wrong_types_are_invalid_value(body: dict[str, Any], word: str) -> None:
    with pytest.raises(InvalidValue) as err:
        normalize(body)
    assert err.value.scim_type == "invalidValue"
    assert word in err.value.detail


@pytest.mark.parametrize("body", [{}, {"userName": ""}, {"userName": "   "}, {"userName": None}, {"active": True}])
def test_user_name_is_required(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidValue, match="userName is required"):
        normalize(body)


def test_body_must_be_an_object() -> None:
    with pytest.raises(InvalidSyntax):
        normalize([{"userName": "u"}])


def test_at_most_one_primary_first_wins() -> None:
    out = normalize({"userName": "u", "emails": [{"value": "a", "primary": True}, {"value": "b", "primary": "True"}]})
    assert out["emails"] == [{"value": "a", "primary": True}, {"value": "b"}]


def test_normalize_is_idempotent() -> None:
    once = normalize({"UserName": "u", "emails": {"value": "a"}, f"{ENT}:manager": "m", "active": "False"})
    assert normalize(once) == once


def test_present_schemas() -> None:
    assert present_schemas({"userName": "u"}) == [USER_SCHEMA]
    assert present_schemas({"userName": "u", ENT: {"department": "x"}}) == [USER_SCHEMA, ENT]


# --- project ---------------------------------------------------------------------------------------------------

FULL = {
    "schemas": [USER_SCHEMA, ENT],
    "id": "2819c223",
    "externalId": "ext-1",
    "meta": {"resourceType": "User", "created": "2024-01-01T00:00:00Z", "location": "https://x/Users/2819c223"},
    "userName": "bjensen",
    "name": {"givenName": "Barbara", "familyName": "Jensen"},
    "active": True,
    "emails": [{"value": "b@x.com", "type": "work", "primary": True}, {"value": "b@home", "type": "home"}],
    ENT: {"department": "Eng", "manager": {"value": "m1", "displayName": "Boss"}},
}


def test_project_without_parameters_is_unchanged() -> None:
    assert project(FULL, None, None) == FULL


def test_project_attributes_keeps_id_and_schemas() -> None:
    assert project(FULL, ["userName"], None) == {"schemas": [USER_SCHEMA], "id": "2819c223", "userName": "bjensen"}


def test_project_attributes_case_insensitive_and_dotted() -> None:
    out = project(FULL, ["USERNAME", "Name.GivenName", "emails.value"], None)
    assert out == {
        "schemas": [USER_SCHEMA],
        "id": "2819c223",
        "userName": "bjensen",
        "name": {"givenName": "Barbara"},
        "emails": [{"value": "b@x.com"}, {"value": "b@home"}],
    }


def test_project_attributes_urn_qualified() -> None:
    out = project(FULL, [f"{ENT}:department", f"{ENT}:manager.value", "meta.created"], None)
    assert out == {
        "schemas": [USER_SCHEMA, ENT],
        "id": "2819c223",
        "meta": {"created": "2024-01-01T00:00:00Z"},
        ENT: {"department": "Eng", "manager": {"value": "m1"}},
    }


def test_project_attributes_whole_extension() -> None:
    out = project(FULL, [ENT.lower()], None)
    assert out == {"schemas": [USER_SCHEMA, ENT], "id": "2819c223", ENT: FULL[ENT]}


def test_project_excluded() -> None:
    out = project(FULL, None, ["emails", "name.familyName", f"{ENT}:manager", "id", "schemas"])
    assert out["id"] == "2819c223"  # returned: always cannot be excluded
    assert out["schemas"] == [USER_SCHEMA, ENT]
    assert "emails" not in out
    assert out["name"] == {"givenName": "Barbara"}
    assert out[ENT] == {"department": "Eng"}
    assert out["meta"] == FULL["meta"]


def test_project_excluding_the_whole_extension_drops_its_urn() -> None:
    out = project(FULL, None, [ENT])
    assert ENT not in out
    assert out["schemas"] == [USER_SCHEMA]


def test_project_unknown_names_are_ignored() -> None:
    assert project(FULL, None, ["bogus", "name.bogus"]) == FULL
    assert project(FULL, ["bogus"], None) == {"schemas": [USER_SCHEMA], "id": "2819c223"}


def test_project_attributes_wins_over_excluded() -> None:
    out = project(FULL, ["userName"], ["userName"])
    assert out["userName"] == "bjensen"


def test_project_never_returns_password() -> None:
    assert "password" not in project({**FULL, "password": "x"}, None, None)
