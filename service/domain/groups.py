"""Groups: the record we keep, its SCIM representation, membership changes and the events they are.

Membership is never materialised as a list to rewrite: a write is turned into a `MembershipDelta` (start from the
current members or from none, then these removals and these additions) that the store applies row by row, so
adding one member to a 10,000-member group costs what it costs for a 10-member group.
Members are users of the same tenant; nested groups are not supported.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.domain.errors import InvalidPath, InvalidValue, ScimError
from service.domain.filter import Compare, Expr, Or, parse_path
from service.domain.patch import MISSING, apply_patch, op_field, operations
from service.domain.resource import coerce_element, normalize
from service.domain.schema import GROUP, GROUP_SCHEMA, GROUP_TYPE, PATCH_OP, AttrRef, resolve
from service.domain.versions import meta

CREATED = "group.created"
UPDATED = "group.updated"
MEMBERSHIP_CHANGED = "group.membership_changed"
DELETED = "group.deleted"

_MEMBERS = next(a for a in GROUP.attributes if a.name == "members")


@dataclass(frozen=True)
class Member:
    id: str  # the user's id
    display: str | None = None  # the user's displayName, else its userName; only loaded when asked for


@dataclass(frozen=True)
class GroupRecord:
    id: str
    resource: dict[str, Any]  # the canonical SCIM attributes WITHOUT members, no id/meta/schemas
    version: int
    created: datetime
    last_modified: datetime
    members: tuple[Member, ...] | None = None  # None: not loaded (e.g. `excludedAttributes=members`)

    @property
    def display_name(self) -> str:
        return str(self.resource["displayName"])

    @property
    def external_id(self) -> str | None:
        value = self.resource.get("externalId")
        return None if value is None else str(value)


@dataclass(frozen=True)
class MembershipDelta:
    """What a write does to the member list: `reset` starts from no members (a replace), then `removes` leave and
    `adds` join. Adds and removes never overlap; with `reset`, removes are empty (there is nothing to remove from)."""

    reset: bool = False
    adds: tuple[str, ...] = ()
    removes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.reset and not self.adds and not self.removes


@dataclass
class _DeltaBuilder:
    """Operations applied in order, on sets of ids, never on the member list."""

    reset: bool = False
    adds: dict[str, None] = field(default_factory=dict)  # an ordered set
    removes: dict[str, None] = field(default_factory=dict)

    def add(self, ids: list[str]) -> None:
        for user_id in ids:
            self.removes.pop(user_id, None)
            self.adds[user_id] = None

    def remove(self, ids: list[str]) -> None:
        for user_id in ids:
            self.adds.pop(user_id, None)
            if not self.reset:
                self.removes[user_id] = None

    def replace(self, ids: list[str]) -> None:
        self.reset, self.adds, self.removes = True, dict.fromkeys(ids), {}

    def build(self) -> MembershipDelta:
        return MembershipDelta(self.reset, tuple(self.adds), tuple(self.removes))


# --- members ----------------------------------------------------------------------------------------------------


def user_id(value: Any, label: str) -> str:
    """A member id: the id of a user, which is a uuid; anything else can't name one of ours."""
    if not isinstance(value, str):
        raise InvalidValue(f"{label} must be the id of a user")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidValue(f"{label}: {value!r} is not the id of a user") from None


def member_ids(value: Any, label: str = "members") -> list[str]:
    """The user ids a `members` value names, in order, without duplicates.

    Items may carry `display`, `"$ref": null` and `type` (Okta, Entra); `type` other than User is refused
    (nested groups are not supported); an item with only a `$ref` is taken by the id at its end.
    """
    ids: dict[str, None] = {}
    items = [] if value is None else value if isinstance(value, list) else [value]
    for i, raw_item in enumerate(items):
        where = f"{label}[{i}]"
        item = coerce_element(_MEMBERS, raw_item, where)
        if item is None:
            raise InvalidValue(f"{where}.value is required")
        kind, ref = item.get("type"), item.get("$ref")
        if (isinstance(kind, str) and kind.lower() != "user") or (isinstance(ref, str) and "/groups/" in ref.lower()):
            raise InvalidValue(f"{where}: only users can be members (nested groups are not supported)")
        raw = item.get("value")
        if raw is None and isinstance(ref, str):
            raw = ref.rstrip("/").rsplit("/", 1)[-1]
        if raw is None:
            raise InvalidValue(f"{where}.value is required")
        ids[user_id(raw, f"{where}.value")] = None
    return list(ids)


def _is_members(key: str, whole: bool = False) -> bool:
    """Does `key` name `members` (any case, URN-qualified or not), or with `whole` false also `members.x`?"""
    ref = resolve(GROUP_TYPE, key)
    return ref is not None and ref.attr.name == "members" and (ref.sub is None or not whole)


def prepare(body: Any) -> tuple[dict[str, Any], list[str] | None]:
    """A POST/PUT body → (canonical attributes without members, member ids or None when `members` is absent)."""
    if not isinstance(body, dict):
        return normalize(body, GROUP_TYPE), None  # raises InvalidSyntax
    members = [v for k, v in body.items() if isinstance(k, str) and _is_members(k, whole=True)]
    attributes = {k: v for k, v in body.items() if not (isinstance(k, str) and _is_members(k))}
    return normalize(attributes, GROUP_TYPE), member_ids(members[-1]) if members else None


# --- PATCH -------------------------------------------------------------------------------------------------------


def plan_patch(resource: dict[str, Any], body: Any) -> tuple[dict[str, Any], MembershipDelta]:
    """A PatchOp message → (the attributes after it, the membership delta). All-or-nothing: raises and plans
    nothing when any operation is invalid. Operations on members become the delta; every other operation goes
    through `apply_patch` on the attributes (Okta's no-path `{"id", "displayName"}` replace included)."""
    delta = _DeltaBuilder()
    result = resource
    for i, op in enumerate(operations(body)):
        try:
            rest = _membership(op, delta)
            if rest is not None:
                result = apply_patch(result, {"schemas": [PATCH_OP], "Operations": [rest]}, GROUP_TYPE)
        except ScimError as e:
            raise type(e)(f"Operations[{i}]: {e.detail.removeprefix('Operations[0]: ')}") from e
    return result, delta.build()


def _membership(op: dict[str, Any], delta: _DeltaBuilder) -> dict[str, Any] | None:
    """Record what `op` does to members in `delta`; return what is left for `apply_patch` (None: nothing)."""
    name = op_field(op, "op")
    if not isinstance(name, str) or name.lower() not in ("add", "replace", "remove"):
        return op  # apply_patch says what is wrong with it
    name = name.lower()  # Entra sends "Add", "Remove", "Replace"
    path, value = op_field(op, "path"), op_field(op, "value")
    if path is MISSING or path is None or (isinstance(path, str) and not path.strip()):
        if name == "remove" or not isinstance(value, dict):
            return op
        rest: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and _is_members(key):
                _whole_members(name, key, item, delta)
            else:
                rest[key] = item
        return {"op": name, "value": rest} if rest else None
    if not isinstance(path, str):
        return op
    text = path.strip()
    try:
        parsed = parse_path(text, GROUP_TYPE)
    except InvalidPath:
        return op  # apply_patch reports it (or tolerates an unknown extension)
    if parsed.ref.attr.name != "members":
        return op
    if parsed.filter is None:
        _whole_members(name, text, value, delta)
    elif name == "remove" and parsed.ref.sub is None:
        delta.remove(_filtered_ids(parsed.filter, text))  # Okta: members[value eq "<id>"]
    else:
        raise InvalidPath(f"{text}: members are added, replaced or removed whole, selected by value")
    return None


def _whole_members(name: str, label: str, value: Any, delta: _DeltaBuilder) -> None:
    """add/replace/remove on `members` itself (or `members.x`, which we refuse: member items are immutable)."""
    ref = resolve(GROUP_TYPE, label)
    if ref is not None and ref.sub is not None:
        raise InvalidPath(f"{label}: members are added, replaced or removed whole, selected by value")
    if name == "remove":
        if value is MISSING or value is None:
            delta.replace([])  # remove `members`: no members left
        else:
            delta.remove(member_ids(value, label))  # Entra: {"op":"Remove","path":"members","value":[{"value":…}]}
    elif name == "add":
        if value is MISSING:
            raise InvalidValue("add requires a value")
        delta.add(member_ids(value, label))
    else:
        if value is MISSING:
            raise InvalidValue("replace requires a value")
        delta.replace(member_ids(value, label))


def _filtered_ids(expr: Expr, label: str) -> list[str]:
    """The ids `value eq "<id>"` (or several of those joined by `or`) select."""
    if isinstance(expr, Or):
        return _filtered_ids(expr.left, label) + _filtered_ids(expr.right, label)
    if isinstance(expr, Compare) and expr.op == "eq" and expr.attr.sub is not None and expr.attr.sub.name == "value":
        return [user_id(expr.value, label)]
    raise InvalidPath(f'{label}: members can only be selected by value (members[value eq "<id>"])')


# --- versions, rendering, events ----------------------------------------------------------------------------------


def _named_members(names: list[str] | None) -> list[AttrRef]:
    refs = [resolve(GROUP_TYPE, name.strip()) for name in names or []]
    return [r for r in refs if r is not None and r.attr.name == "members"]


def wants_members(attributes: list[str] | None, excluded: list[str] | None) -> bool:
    """Whether a response projected by `attributes` / `excludedAttributes` shows members (else: don't load them)."""
    if attributes:
        return bool(_named_members(attributes))
    return not any(r.sub is None for r in _named_members(excluded))


def wants_display(attributes: list[str] | None) -> bool:
    """`members.display` is `returned: request`: only loaded (a join with users) when `attributes` names it."""
    return any(r.sub is not None and r.sub.name == "display" for r in _named_members(attributes))


def render(record: GroupRecord, base_url: str) -> dict[str, Any]:
    """The SCIM representation (RFC 7643 §4.2); members only when loaded and not empty, `display` when loaded."""
    out: dict[str, Any] = {"schemas": [GROUP_SCHEMA], "id": record.id, **record.resource}
    if record.members:
        out["members"] = [
            {
                "value": m.id,
                **({"display": m.display} if m.display else {}),
                "type": "User",
                "$ref": f"{base_url}/Users/{m.id}",
            }
            for m in record.members
        ]
    out["meta"] = meta("Group", f"{base_url}/Groups/{record.id}", record.created, record.last_modified, record.version)
    return out


def event_data(group_id: str, resource: dict[str, Any]) -> dict[str, Any]:
    """`group.updated`'s snapshot (and the start of `group.created`'s): never the members."""
    return {"id": group_id, "displayName": resource["displayName"], "externalId": resource.get("externalId")}


def created_data(group_id: str, resource: dict[str, Any], members: list[str]) -> dict[str, Any]:
    return {**event_data(group_id, resource), "members": members}


def created_events(
    group_id: str, resource: dict[str, Any], members: list[str], per_event: int
) -> list[tuple[str, dict[str, Any]]]:
    """A new group's events, one version each: `group.created` with its first `per_event` members, then a
    `group.membership_changed` adding each next `per_event` (so no event outgrows a Kafka record)."""
    chunks = [members[i : i + per_event] for i in range(0, len(members), per_event)] or [[]]
    return [(CREATED, created_data(group_id, resource, chunks[0]))] + [
        (MEMBERSHIP_CHANGED, {"id": group_id, "added": chunk, "removed": []}) for chunk in chunks[1:]
    ]
