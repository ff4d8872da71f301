"""The workplace extension and the legacy schema names in the pure domain: normalisation, resolution, PATCH."""

from __future__ import annotations

import pytest

from service.domain.errors import InvalidValue
from service.domain.patch import apply_patch
from service.domain.resource import normalize
from service.domain.schema import ENTERPRISE_SCHEMA, USER_TYPE, WORKPLACE_SCHEMA, resolve

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def test_normalised_under_its_urn_with_the_role_in_canonical_spelling() -> None:
    body = {"userName": "a", WORKPLACE_SCHEMA.upper(): {"SITE": "HQ", "bookingrole": " FacilityManager ", "x": 1}}
    assert normalize(body) == {"userName": "a", WORKPLACE_SCHEMA: {"site": "HQ", "bookingRole": "facilityManager"}}
    with pytest.raises(InvalidValue, match="bookingRole must be one of employee, teamLead, facilityManager"):
        normalize({"userName": "a", WORKPLACE_SCHEMA: {"bookingRole": "admin"}})
    with pytest.raises(InvalidValue):
        normalize({"userName": "a", WORKPLACE_SCHEMA: {"floor": 4}})


@pytest.mark.parametrize(
    ("path", "key"),
    [
        (f"{WORKPLACE_SCHEMA}:site", (WORKPLACE_SCHEMA, "site")),
        ("urn:scim:schemas:extension:enterprise:2.0:department", (ENTERPRISE_SCHEMA, "department")),
        ("urn:scim:schemas:extension:enterprise:2.0:User:manager.value", (ENTERPRISE_SCHEMA, "manager", "value")),
        ("urn:scim:schemas:core:2.0:User:userName", ("userName",)),
        ("urn:scim:schemas:core:2.0:name.givenName", ("name", "givenName")),
    ],
)
def test_resolved_by_urn_and_legacy_alias(path: str, key: tuple[str, ...]) -> None:
    ref = resolve(USER_TYPE, path)
    assert ref is not None and ref.key == key


def test_legacy_extension_key_is_stored_under_the_rfc_name() -> None:
    body = {"userName": "a", "urn:scim:schemas:extension:enterprise:2.0": {"department": "Ops"}}
    assert normalize(body) == {"userName": "a", ENTERPRISE_SCHEMA: {"department": "Ops"}}


def test_patch_forms() -> None:
    user = {"userName": "a", WORKPLACE_SCHEMA: {"site": "HQ"}}
    okta = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": f"{WORKPLACE_SCHEMA}:floor", "value": "2"}]}
    assert apply_patch(user, okta)[WORKPLACE_SCHEMA] == {"site": "HQ", "floor": "2"}
    entra = {"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "value": {f"{WORKPLACE_SCHEMA}:site": "Annex"}}]}
    assert apply_patch(user, entra)[WORKPLACE_SCHEMA] == {"site": "Annex"}
    legacy = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "add", "path": "urn:scim:schemas:extension:enterprise:2.0:department", "value": "R&D"}],
    }
    assert apply_patch(user, legacy)[ENTERPRISE_SCHEMA] == {"department": "R&D"}
