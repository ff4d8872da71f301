"""The SCIM schemas we serve (RFC 7643 §4.1, §4.3, §7), as data.

One definition feeds everything: `/Schemas`, name resolution (attribute names are case-insensitive),
input normalisation, PATCH and the filter compiler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
WORKPLACE_SCHEMA = "urn:ietf:params:scim:schemas:extension:workplace:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str = "string"  # string boolean decimal integer dateTime binary reference complex
    multi_valued: bool = False
    required: bool = False
    case_exact: bool = False
    mutability: str = "readWrite"  # readOnly readWrite immutable writeOnly
    returned: str = "default"  # always never default request
    uniqueness: str = "none"
    description: str = ""
    canonical_values: tuple[str, ...] = ()
    closed: bool = False  # only `canonical_values` are accepted (any case), stored in their canonical spelling
    reference_types: tuple[str, ...] = ()
    sub_attributes: tuple[Attribute, ...] = ()

    def sub(self, name: str) -> Attribute | None:
        """The sub-attribute called `name`, whatever its case."""
        lowered = name.lower()
        return next((a for a in self.sub_attributes if a.name.lower() == lowered), None)

    def to_scim(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "multiValued": self.multi_valued,
            "description": self.description or self.name,
            "required": self.required,
            "mutability": self.mutability,
            "returned": self.returned,
        }
        if self.type in ("string", "reference", "binary"):
            out["caseExact"] = self.case_exact
            out["uniqueness"] = self.uniqueness
        if self.canonical_values:
            out["canonicalValues"] = list(self.canonical_values)
        if self.reference_types:
            out["referenceTypes"] = list(self.reference_types)
        if self.sub_attributes:
            out["subAttributes"] = [a.to_scim() for a in self.sub_attributes]
        return out


@dataclass(frozen=True)
class Schema:
    id: str
    name: str
    description: str
    attributes: tuple[Attribute, ...]
    # Older names clients still send (draft SCIM 2.0 URNs, e.g. OneLogin's and some Ping connectors'): accepted
    # wherever the id is, never rendered.
    aliases: tuple[str, ...] = ()
    _index: dict[str, Attribute] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({a.name.lower(): a for a in self.attributes})

    @property
    def ids(self) -> tuple[str, ...]:
        """The id and its aliases."""
        return (self.id, *self.aliases)

    def attribute(self, name: str) -> Attribute | None:
        return self._index.get(name.lower())

    def to_scim(self, location: str) -> dict[str, Any]:
        return {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": [a.to_scim() for a in self.attributes],
            "meta": {"resourceType": "Schema", "location": f"{location}/Schemas/{self.id}"},
        }


def _multi(name: str, types: tuple[str, ...], value_type: str = "string", **kw: Any) -> Attribute:
    """The value/display/type/primary shape shared by emails, phoneNumbers, ims, photos, ... ."""
    return Attribute(
        name,
        type="complex",
        multi_valued=True,
        sub_attributes=(
            Attribute("value", type=value_type, **kw),
            Attribute("display"),
            Attribute("type", canonical_values=types),
            Attribute("primary", type="boolean"),
        ),
    )


# Attributes every resource has (RFC 7643 §3.1). `id` and `meta` are ours; `externalId` is the client's.
ID = Attribute("id", case_exact=True, mutability="readOnly", returned="always", uniqueness="server")
EXTERNAL_ID = Attribute("externalId", case_exact=True)
META = Attribute(
    "meta",
    type="complex",
    mutability="readOnly",
    sub_attributes=(
        Attribute("resourceType", case_exact=True, mutability="readOnly"),
        Attribute("created", type="dateTime", mutability="readOnly"),
        Attribute("lastModified", type="dateTime", mutability="readOnly"),
        Attribute("location", type="reference", case_exact=True, mutability="readOnly", reference_types=("uri",)),
        Attribute("version", case_exact=True, mutability="readOnly"),
    ),
)
COMMON = (ID, EXTERNAL_ID, META)

USER = Schema(
    id=USER_SCHEMA,
    name="User",
    description="User Account",
    aliases=("urn:scim:schemas:core:2.0:User", "urn:scim:schemas:core:2.0"),
    attributes=(
        Attribute("userName", required=True, uniqueness="server"),
        Attribute(
            "name",
            type="complex",
            sub_attributes=tuple(
                Attribute(n)
                for n in ("formatted", "familyName", "givenName", "middleName", "honorificPrefix", "honorificSuffix")
            ),
        ),
        Attribute("displayName"),
        Attribute("nickName"),
        Attribute("profileUrl", type="reference", reference_types=("external",)),
        Attribute("title"),
        Attribute("userType"),
        Attribute("preferredLanguage"),
        Attribute("locale"),
        Attribute("timezone"),
        Attribute("active", type="boolean"),
        Attribute("password", mutability="writeOnly", returned="never"),
        _multi("emails", ("work", "home", "other")),
        _multi("phoneNumbers", ("work", "home", "mobile", "fax", "pager", "other")),
        _multi("ims", ("aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo")),
        _multi("photos", ("photo", "thumbnail"), value_type="reference", reference_types=("external",)),
        Attribute(
            "addresses",
            type="complex",
            multi_valued=True,
            sub_attributes=(
                *(Attribute(n) for n in ("formatted", "streetAddress", "locality", "region", "postalCode", "country")),
                Attribute("type", canonical_values=("work", "home", "other")),
                Attribute("primary", type="boolean"),
            ),
        ),
        Attribute(
            "groups",
            type="complex",
            multi_valued=True,
            mutability="readOnly",
            sub_attributes=(
                Attribute("value", mutability="readOnly"),
                Attribute("$ref", type="reference", mutability="readOnly", reference_types=("User", "Group")),
                Attribute("display", mutability="readOnly"),
                Attribute("type", mutability="readOnly", canonical_values=("direct", "indirect")),
            ),
        ),
        _multi("entitlements", ()),
        _multi("roles", ()),
        _multi("x509Certificates", (), value_type="binary"),
    ),
)

ENTERPRISE_USER = Schema(
    id=ENTERPRISE_SCHEMA,
    name="EnterpriseUser",
    description="Enterprise User",
    aliases=("urn:scim:schemas:extension:enterprise:2.0:User", "urn:scim:schemas:extension:enterprise:2.0"),
    attributes=(
        Attribute("employeeNumber"),
        Attribute("costCenter"),
        Attribute("organization"),
        Attribute("division"),
        Attribute("department"),
        Attribute(
            "manager",
            type="complex",
            sub_attributes=(
                Attribute("value"),
                Attribute("$ref", type="reference", reference_types=("User",)),
                Attribute("displayName", mutability="readOnly"),
            ),
        ),
    ),
)


# Where people work, for desk booking and the member directory. Every attribute is a simple string, because that is
# all Entra's "Edit attribute list" can map to a custom extension (no complex or multi-valued custom attributes),
# and the URN has the `urn:ietf:params:scim:schemas:extension:<name>:2.0:User` shape Entra's custom mapping expects.
BOOKING_ROLES = ("employee", "teamLead", "facilityManager")
WORKPLACE_USER = Schema(
    id=WORKPLACE_SCHEMA,
    name="WorkplaceUser",
    description="Where a user works: office site, building, floor, team, and their role in desk booking",
    attributes=(
        Attribute("site", description="The office site (campus or city office), e.g. HQ"),
        Attribute("building", description="The building within the site"),
        Attribute("floor", description='The floor, as the customer names it ("4", "Mezzanine")'),
        Attribute("team", description="The team the user sits with"),
        Attribute(
            "bookingRole",
            canonical_values=BOOKING_ROLES,
            closed=True,
            description="employee (books for self), teamLead (books for the team), facilityManager (manages desks)",
        ),
    ),
)


@dataclass(frozen=True)
class ResourceType:
    name: str
    endpoint: str
    schema: Schema
    extensions: tuple[Schema, ...] = ()

    @cached_property
    def _by_urn(self) -> dict[str, Schema]:
        return {urn.lower(): s for s in (self.schema, *self.extensions) for urn in s.ids}

    def schema_for(self, urn: str) -> Schema | None:
        return self._by_urn.get(urn.lower())


USER_TYPE = ResourceType("User", "/Users", USER, (ENTERPRISE_USER, WORKPLACE_USER))


@dataclass(frozen=True)
class AttrRef:
    """A resolved attribute path: `schema` is the URN that holds it, `attr` the attribute, `sub` its sub-attribute.

    `key` is where it lives in a resource dict: core attributes at the top, extension ones under the URN.
    """

    schema: str
    attr: Attribute
    sub: Attribute | None = None

    @property
    def key(self) -> tuple[str, ...]:
        head = () if self.schema in (USER_SCHEMA, GROUP_SCHEMA) or self.attr in COMMON else (self.schema,)
        return (*head, self.attr.name) + ((self.sub.name,) if self.sub else ())

    @property
    def target(self) -> Attribute:
        return self.sub or self.attr

    def __str__(self) -> str:
        return ".".join(self.key)


def resolve(resource_type: ResourceType, path: str) -> AttrRef | None:
    """Resolve `userName`, `name.givenName`, `emails.value`, or a URN-qualified path, ignoring case.

    Returns None for an attribute we don't define; callers decide whether that is an error.
    """
    schema = resource_type.schema
    rest = path
    lowered = path.lower()
    # A URN prefix: the longest schema id that `path` starts with, followed by ':' (or nothing).
    # Longest first: "urn:scim:schemas:core:2.0:User" before its prefix "urn:scim:schemas:core:2.0".
    candidates = sorted(
        ((urn.lower(), s) for s in (resource_type.schema, *resource_type.extensions) for urn in s.ids),
        key=lambda pair: -len(pair[0]),
    )
    for sid, candidate in candidates:
        if lowered == sid:
            return None
        if lowered.startswith(sid + ":"):
            schema, rest = candidate, path[len(sid) + 1 :]
            break
    head, dot, tail = rest.partition(".")
    if dot and not tail:  # "name." is not "name"
        return None
    attr = schema.attribute(head) or (
        next((a for a in COMMON if a.name.lower() == head.lower()), None) if schema is resource_type.schema else None
    )
    if attr is None:
        return None
    if not tail:
        return AttrRef(schema.id, attr)
    sub = attr.sub(tail)
    if sub is None:
        return None
    return AttrRef(schema.id, attr, sub)


# RFC 7643 §4.2 and §8.7.1. `displayName` is required and unique per tenant here (Okta and Entra match on it).
# Members are users only (nested groups are refused); `display` is ours to fill in from the user, and only
# returned when asked for (`attributes=members.display`): clients compare members with what they sent.
GROUP = Schema(
    id=GROUP_SCHEMA,
    name="Group",
    description="Group",
    attributes=(
        Attribute("displayName", required=True, uniqueness="server"),
        Attribute(
            "members",
            type="complex",
            multi_valued=True,
            description="The users in the group",
            sub_attributes=(
                Attribute("value", mutability="immutable", description="The id of a User"),
                Attribute("$ref", type="reference", mutability="immutable", reference_types=("User", "Group")),
                Attribute("display", mutability="readOnly", returned="request"),
                Attribute("type", mutability="immutable", canonical_values=("User", "Group")),
            ),
        ),
    ),
)

GROUP_TYPE = ResourceType("Group", "/Groups", GROUP)
