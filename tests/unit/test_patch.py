"""apply_patch: every PATCH shape Okta and Entra send (DESIGN §6), RFC 7644 §3.5.2 semantics, errors."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from service.domain.errors import InvalidPath, InvalidSyntax, InvalidValue, Mutability, NoTarget
from service.domain.patch import apply_patch
from service.domain.schema import ENTERPRISE_SCHEMA, GROUP_SCHEMA, PATCH_OP, Attribute, ResourceType, Schema

ENT = ENTERPRISE_SCHEMA

ALICE: dict[str, Any] = {
    "userName": "alice@example.com",
    "externalId": "okta-00u1",
    "name": {"givenName": "Alice", "familyName": "Smith", "formatted": "Alice Smith"},
    "displayName": "Alice Smith",
    "active": True,
    "emails": [{"value": "alice@example.com", "type": "work", "primary": True}],
    "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}],
    ENT: {"department": "Sales", "manager": {"value": "mgr-0"}},
}

# RFC 7643 §4.2, defined here so the member-removal shape is tested whatever schema.py grows
GROUP_TYPE = ResourceType(
    "Group",
    "/Groups",
    Schema(
        GROUP_SCHEMA,
        "Group",
        "Group",
        (
            Attribute("displayName", required=True),
            Attribute(
                "members",
                type="complex",
                multi_valued=True,
                sub_attributes=(Attribute("value", case_exact=True), Attribute("display"), Attribute("type")),
            ),
        ),
    ),
)
GROUP: dict[str, Any] = {"displayName": "Eng", "members": [{"value": "u1"}, {"value": "u2"}, {"value": "U3"}]}


def patch(resource: dict[str, Any], *ops: dict[str, Any], rtype: ResourceType | None = None) -> dict[str, Any]:
    body = {"schemas": [PATCH_OP], "Operations": list(ops)}
    return apply_patch(resource, body, rtype) if rtype else apply_patch(resource, body)


def unchanged_except(result: dict[str, Any], *keys: str) -> None:
    assert {k: v for k, v in result.items() if k not in keys} == {k: v for k, v in ALICE.items() if k not in keys}


# --- Okta --------------------------------------------------------------------------------------------------------


def test_okta_deactivation_without_path() -> None:
    out = patch(ALICE, {"op": "replace", "value": {"active": False}})
    assert out["active"] is False
    unchanged_except(out, "active")


def test_okta_deactivation_with_read_only_keys_in_value() -> None:
    out = patch(ALICE, {"op": "replace", "value": {"id": "abc", "meta": {"version": "1"}, "active": False}})
    assert out["active"] is False
    assert "id" not in out and "meta" not in out
    unchanged_except(out, "active")


def test_okta_password_push_is_accepted_and_not_stored() -> None:
    out = patch(ALICE, {"op": "replace", "value": {"password": "t1meMa$heen"}})
    assert out == ALICE


def test_okta_reactivation() -> None:
    assert patch({**ALICE, "active": False}, {"op": "replace", "value": {"active": True}})["active"] is True


# --- Entra -------------------------------------------------------------------------------------------------------


def test_entra_replace_active_string_false() -> None:
    out = patch(ALICE, {"op": "Replace", "path": "active", "value": "False"})
    assert out["active"] is False
    unchanged_except(out, "active")


def test_entra_dotted_keys_without_path() -> None:
    value = {"name.givenName": "Ann", "name.familyName": "Lee", "active": "True", 'emails[type eq "work"].value': "a@l"}
    out = patch({**ALICE, "active": False}, {"op": "Replace", "value": value})
    assert out["emails"] == [{"value": "a@l", "type": "work", "primary": True}]
    assert out["name"] == {"givenName": "Ann", "familyName": "Lee", "formatted": "Alice Smith"}
    assert out["active"] is True


def test_entra_manager_as_plain_string() -> None:
    out = patch(ALICE, {"op": "Replace", "path": f"{ENT}:manager", "value": "mgr-id"})
    assert out[ENT] == {"department": "Sales", "manager": {"value": "mgr-id"}}


def test_entra_add_manager_to_user_without_extension() -> None:
    user = {k: v for k, v in ALICE.items() if k != ENT}
    assert patch(user, {"op": "Add", "path": f"{ENT}:manager", "value": "m1"})[ENT] == {"manager": {"value": "m1"}}


def test_entra_add_department() -> None:
    out = patch(ALICE, {"op": "Add", "path": f"{ENT}:department", "value": "Eng"})
    assert out[ENT]["department"] == "Eng"


def test_entra_remove_manager() -> None:
    out = patch(ALICE, {"op": "Remove", "path": f"{ENT}:manager"})
    assert out[ENT] == {"department": "Sales"}


def test_removing_the_last_extension_attribute_drops_the_extension() -> None:
    out = patch(ALICE, {"op": "Remove", "path": f"{ENT}:manager"}, {"op": "Remove", "path": f"{ENT}:department"})
    assert ENT not in out


def test_entra_add_work_email_when_none_exists() -> None:
    user = {**ALICE, "emails": [{"value": "a@home.net", "type": "home"}]}
    out = patch(user, {"op": "Add", "path": 'emails[type eq "work"].value', "value": "a@x.com"})
    assert out["emails"] == [{"value": "a@home.net", "type": "home"}, {"type": "work", "value": "a@x.com"}]


def test_entra_replace_existing_work_email_value() -> None:
    out = patch(ALICE, {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "new@example.com"})
    assert out["emails"] == [{"value": "new@example.com", "type": "work", "primary": True}]


def test_entra_replace_mobile_phone_creates_it() -> None:
    out = patch(ALICE, {"op": "Replace", "path": 'phoneNumbers[type eq "mobile"].value', "value": "+1 555 0199"})
    assert out["phoneNumbers"] == [{"value": "+1 555 0100", "type": "work"}, {"type": "mobile", "value": "+1 555 0199"}]


def test_entra_add_roles_with_string_boolean() -> None:
    out = patch(ALICE, {"op": "Add", "path": "roles", "value": [{"value": "x", "primary": "False"}]})
    assert out["roles"] == [{"value": "x", "primary": False}]


def test_entra_remove_group_member_by_value() -> None:
    body = {"op": "Remove", "path": "members", "value": [{"value": "u2"}]}
    out = patch(GROUP, body, rtype=GROUP_TYPE)
    assert out["members"] == [{"value": "u1"}, {"value": "U3"}]


def test_entra_remove_absent_member_is_a_no_op_and_ids_are_case_sensitive() -> None:
    body = {"op": "Remove", "path": "members", "value": [{"value": "u3"}, {"value": "nobody"}]}
    assert patch(GROUP, body, rtype=GROUP_TYPE) == GROUP


def test_entra_add_members_skips_duplicates() -> None:
    body = {"op": "Add", "path": "members", "value": [{"value": "u1"}, {"value": "u9"}]}
    out = patch(GROUP, body, rtype=GROUP_TYPE)
    assert out["members"] == [*GROUP["members"], {"value": "u9"}]


def test_entra_rename_group() -> None:
    out = patch(GROUP, {"op": "Replace", "path": "displayName", "value": "Engineering"}, rtype=GROUP_TYPE)
    assert out == {**GROUP, "displayName": "Engineering"}


def test_remove_group_member_by_filter() -> None:
    out = patch(GROUP, {"op": "remove", "path": 'members[value eq "u1"]'}, rtype=GROUP_TYPE)
    assert out["members"] == [{"value": "u2"}, {"value": "U3"}]


# --- RFC 7644 §3.5.2 semantics --------------------------------------------------------------------------------


def test_add_single_valued_sets() -> None:
    assert patch(ALICE, {"op": "add", "path": "nickName", "value": "Al"})["nickName"] == "Al"


def test_add_multi_valued_appends_and_skips_exact_duplicates() -> None:
    home = {"value": "a@home.net", "type": "home"}
    out = patch(ALICE, {"op": "add", "path": "emails", "value": [ALICE["emails"][0], home]})
    assert out["emails"] == [*ALICE["emails"], home]


def test_add_complex_merges() -> None:
    out = patch(ALICE, {"op": "add", "path": "name", "value": {"middleName": "J"}})
    assert out["name"] == {**ALICE["name"], "middleName": "J"}


def test_replace_complex_merges_sub_attributes() -> None:
    out = patch(ALICE, {"op": "replace", "path": "name", "value": {"givenName": "Ally"}})
    assert out["name"] == {**ALICE["name"], "givenName": "Ally"}


def test_replace_multi_valued_replaces_the_list_and_wraps_a_single_object() -> None:
    out = patch(ALICE, {"op": "replace", "path": "emails", "value": {"value": "b@x.com"}})
    assert out["emails"] == [{"value": "b@x.com"}]


def test_replace_value_path_replaces_the_element_keeping_the_filter() -> None:
    out = patch(ALICE, {"op": "replace", "path": 'emails[type eq "work"]', "value": {"value": "c@x.com"}})
    assert out["emails"] == [{"type": "work", "value": "c@x.com"}]


def test_replace_value_path_without_match_and_no_eq_filter_is_no_target() -> None:
    with pytest.raises(NoTarget) as err:
        patch(ALICE, {"op": "replace", "path": 'emails[value co "nomatch"].value', "value": "x"})
    assert (err.value.status, err.value.scim_type) == (400, "noTarget")
    with pytest.raises(NoTarget):
        patch(ALICE, {"op": "replace", "path": 'emails[type eq "home" or type eq "other"].value', "value": "x"})


def test_value_path_conjunction_creates_element() -> None:
    path = 'addresses[type eq "work" and primary eq true].locality'
    out = patch(ALICE, {"op": "add", "path": path, "value": "Oslo"})
    assert out["addresses"] == [{"type": "work", "primary": True, "locality": "Oslo"}]


def test_remove_without_path_is_no_target() -> None:
    with pytest.raises(NoTarget) as err:
        patch(ALICE, {"op": "remove", "value": {"active": False}})
    assert (err.value.status, err.value.scim_type) == (400, "noTarget")


def test_remove_value_path_removes_matching_elements() -> None:
    user = {**ALICE, "emails": [*ALICE["emails"], {"value": "a@home.net", "type": "home"}]}
    out = patch(user, {"op": "remove", "path": 'emails[type eq "work"]'})
    assert out["emails"] == [{"value": "a@home.net", "type": "home"}]


def test_remove_value_path_sub_attribute() -> None:
    out = patch(ALICE, {"op": "remove", "path": 'emails[type eq "work"].primary'})
    assert out["emails"] == [{"value": "alice@example.com", "type": "work"}]


def test_remove_last_element_drops_the_attribute() -> None:
    assert "phoneNumbers" not in patch(ALICE, {"op": "remove", "path": 'phoneNumbers[type eq "work"]'})


@pytest.mark.parametrize("path", ["nickName", "name.middleName", 'emails[type eq "home"]', "ims", f"{ENT}:division"])
def test_remove_absent_is_a_no_op(path: str) -> None:
    assert patch(ALICE, {"op": "remove", "path": path}) == ALICE


def test_remove_sub_attribute() -> None:
    out = patch(ALICE, {"op": "remove", "path": "name.formatted"})
    assert out["name"] == {"givenName": "Alice", "familyName": "Smith"}


@pytest.mark.parametrize("op", ["add", "replace", "Add"])
def test_add_or_replace_without_value_is_invalid_value(op: str) -> None:
    with pytest.raises(InvalidValue) as err:
        patch(ALICE, {"op": op, "path": "nickName"})
    assert (err.value.status, err.value.scim_type) == (400, "invalidValue")


@pytest.mark.parametrize("path", ["nickname2", "name.nope", 'emails[nope eq "x"].value', 'emails[type eq "work"', 42])
def test_unknown_or_malformed_path_is_invalid_path(path: Any) -> None:
    with pytest.raises(InvalidPath) as err:
        patch(ALICE, {"op": "replace", "path": path, "value": "x"})
    assert (err.value.status, err.value.scim_type) == (400, "invalidPath")


def test_unknown_keys_in_a_no_path_value_are_ignored() -> None:
    value = {"customAttribute": "x", "urn:ietf:params:scim:schemas:extension:Custom:2.0:User:badge": "7", "title": "T"}
    assert patch(ALICE, {"op": "add", "value": value}) == {**ALICE, "title": "T"}


def test_path_under_an_unknown_extension_urn_is_tolerated() -> None:
    path = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User:CustomAttribute"
    assert patch(ALICE, {"op": "Add", "path": path, "value": "x"}) == ALICE


@pytest.mark.parametrize("path", ["id", "meta", "meta.lastModified", "groups", f"{ENT}:manager.displayName"])
def test_read_only_path_is_mutability(path: str) -> None:
    with pytest.raises(Mutability) as err:
        patch(ALICE, {"op": "replace", "path": path, "value": "x"})
    assert (err.value.status, err.value.scim_type) == (400, "mutability")


@pytest.mark.parametrize(
    "op",
    [
        {"op": "remove", "path": "userName"},
        {"op": "replace", "path": "userName", "value": ""},
        {"op": "replace", "value": {"userName": None}},
    ],
)
def test_required_user_name_cannot_go(op: dict[str, Any]) -> None:
    with pytest.raises(InvalidValue, match="userName is required"):
        patch(ALICE, op)


def test_new_primary_clears_the_others() -> None:
    home = {"value": "a@home.net", "type": "home", "primary": True}
    out = patch(ALICE, {"op": "add", "path": "emails", "value": [home]})
    assert out["emails"] == [{"value": "alice@example.com", "type": "work"}, home]


def test_primary_through_a_value_path_clears_the_others() -> None:
    user = {**ALICE, "emails": [*ALICE["emails"], {"value": "a@home.net", "type": "home"}]}
    out = patch(user, {"op": "replace", "path": 'emails[type eq "home"].primary', "value": "True"})
    assert out["emails"] == [{"value": "alice@example.com", "type": "work"}, {**user["emails"][1], "primary": True}]


@pytest.mark.parametrize(
    ("op", "word"),
    [
        ({"op": "replace", "path": "active", "value": "yes"}, "active"),
        ({"op": "replace", "path": "displayName", "value": 42}, "displayName"),
        ({"op": "replace", "path": "emails", "value": "a@x.com"}, "emails"),
        ({"op": "replace", "path": "name", "value": "Ann"}, "name"),
        ({"op": "replace", "value": "Ann"}, "object"),
        ({"op": "replace", "value": {"active": "no"}}, "active"),
    ],
)
def test_wrong_value_types_are_invalid_value(op: dict[str, Any], word: str) -> None:
    with pytest.raises(InvalidValue) as err:
        patch(ALICE, op)
    assert word in err.value.detail


def test_value_path_on_a_single_valued_attribute_is_invalid_path() -> None:
    with pytest.raises(InvalidPath):
        patch(ALICE, {"op": "replace", "path": 'name[givenName eq "Alice"].familyName', "value": "x"})


def test_no_path_value_with_extension_object() -> None:
    out = patch(ALICE, {"op": "replace", "value": {ENT.lower(): {"Department": "Eng", "manager": "m2"}}})
    assert out[ENT] == {"department": "Eng", "manager": {"value": "m2"}}


def test_path_naming_the_whole_extension() -> None:
    assert patch(ALICE, {"op": "add", "path": ENT, "value": {"division": "D"}})[ENT]["division"] == "D"
    assert ENT not in patch(ALICE, {"op": "remove", "path": ENT})


def test_replace_with_empty_string_removes_the_attribute() -> None:
    out = patch(ALICE, {"op": "replace", "path": "displayName", "value": ""})
    assert "displayName" not in out


def test_operations_apply_in_order() -> None:
    ops = [{"op": "add", "path": "title", "value": "A"}, {"op": "replace", "path": "title", "value": "B"}]
    assert patch(ALICE, *ops)["title"] == "B"


# --- message validation, atomicity ----------------------------------------------------------------------------


def test_all_or_nothing_and_input_never_mutated() -> None:
    before = copy.deepcopy(ALICE)
    body: dict[str, Any] = {
        "schemas": [PATCH_OP],
        "Operations": [
            {"op": "replace", "value": {"active": False}},
            {"op": "add", "path": "emails", "value": [{"value": "b@x.com", "primary": True}]},
            {"op": "replace", "path": "id", "value": "new"},
        ],
    }
    with pytest.raises(Mutability) as err:
        apply_patch(ALICE, body)
    assert "Operations[2]" in err.value.detail
    assert before == ALICE
    body["Operations"] = body["Operations"][:2]
    out = apply_patch(ALICE, body)
    assert out["active"] is False
    assert before == ALICE


def test_schemas_and_operations_names_are_lenient_on_case() -> None:
    out = apply_patch(
        ALICE, {"SCHEMAS": [PATCH_OP.upper()], "operations": [{"OP": "Replace", "Path": "title", "Value": "T"}]}
    )
    assert out["title"] == "T"


@pytest.mark.parametrize(
    "body",
    [
        {"Operations": [{"op": "replace", "value": {"active": False}}]},
        {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "Operations": [{"op": "add", "value": {}}]},
        {"schemas": [PATCH_OP]},
        {"schemas": [PATCH_OP], "Operations": []},
        {"schemas": [PATCH_OP], "Operations": {"op": "add", "value": {}}},
        {"schemas": [PATCH_OP], "Operations": ["add"]},
        {"schemas": [PATCH_OP], "Operations": [{"op": "copy", "path": "title", "value": "x"}]},
        {"schemas": [PATCH_OP], "Operations": [{"path": "title", "value": "x"}]},
        [{"op": "add"}],
    ],
)
def test_malformed_message_is_invalid_syntax(body: Any) -> None:
    with pytest.raises(InvalidSyntax) as err:
        apply_patch(ALICE, body)
    assert (err.value.status, err.value.scim_type) == (400, "invalidSyntax")
