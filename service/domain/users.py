"""Users: the record we keep, its SCIM representation, and which lifecycle event a change is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.domain.errors import InvalidValue
from service.domain.resource import present_schemas
from service.domain.versions import meta

CREATED = "user.created"
UPDATED = "user.updated"
DEACTIVATED = "user.deactivated"
REACTIVATED = "user.reactivated"
DELETED = "user.deleted"


@dataclass(frozen=True)
class UserRecord:
    id: str
    resource: dict[str, Any]  # the canonical SCIM attributes (domain/resource.py), no id/meta/schemas
    version: int
    created: datetime
    last_modified: datetime

    @property
    def user_name(self) -> str:
        return str(self.resource["userName"])

    @property
    def external_id(self) -> str | None:
        value = self.resource.get("externalId")
        return None if value is None else str(value)

    @property
    def active(self) -> bool:
        return is_active(self.resource)


def validate(resource: dict[str, Any]) -> dict[str, Any]:
    """Every stored user has a userName. A user without `active` is active (as Okta and Entra assume)."""
    user_name = resource.get("userName")
    if not isinstance(user_name, str) or not user_name.strip():
        raise InvalidValue("userName is required")
    return resource


def is_active(resource: dict[str, Any]) -> bool:
    return bool(resource.get("active", True))


def prepare_new(resource: dict[str, Any]) -> dict[str, Any]:
    """A user as created: `active` explicit (true unless the client said otherwise)."""
    return validate({**resource, "active": is_active(resource)})


def prepare_replacement(current: UserRecord, resource: dict[str, Any]) -> dict[str, Any]:
    """A PUT replaces every attribute, except that omitting `active` keeps it: a profile sync that
    leaves `active` out must never reactivate a leaver."""
    return validate({**resource, "active": resource.get("active", current.active)})


def render(record: UserRecord, base_url: str) -> dict[str, Any]:
    """The SCIM representation (RFC 7643 §4.1) of a stored user."""
    return {
        "schemas": present_schemas(record.resource),
        "id": record.id,
        **record.resource,
        "meta": meta("User", f"{base_url}/Users/{record.id}", record.created, record.last_modified, record.version),
    }


def event_type(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str | None:
    """The event a change is, or None when nothing changed (no event, no new version)."""
    if before is None:
        return CREATED
    if after is None:
        return DELETED
    if before == after:
        return None
    was, now = is_active(before), is_active(after)
    if was and not now:
        return DEACTIVATED
    if now and not was:
        return REACTIVATED
    return UPDATED


def event_data(user_id: str, resource: dict[str, Any] | None) -> dict[str, Any]:
    """The snapshot an event carries: the user after the change; only the id once deleted."""
    if resource is None:
        return {"id": user_id}
    return {"id": user_id, **resource, "active": is_active(resource)}
