"""Reading the SCIM user snapshot an event carries (`data`): the few attributes the domains keep."""

from __future__ import annotations

from typing import Any

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
WORKPLACE = "urn:ietf:params:scim:schemas:extension:workplace:2.0:User"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def user_name(data: dict[str, Any]) -> str | None:
    return _text(data.get("userName"))


def name_part(data: dict[str, Any], part: str) -> str | None:
    name = data.get("name")
    return _text(name.get(part)) if isinstance(name, dict) else None


def display_name(data: dict[str, Any]) -> str | None:
    return _text(data.get("displayName"))


def label(data: dict[str, Any]) -> str | None:
    """How a person is shown to colleagues: displayName, else the formatted or given+family name, else userName."""
    given, family = name_part(data, "givenName"), name_part(data, "familyName")
    joined = " ".join(p for p in (given, family) if p) or None
    return display_name(data) or name_part(data, "formatted") or joined or user_name(data)


def email(data: dict[str, Any]) -> str | None:
    """The primary email, else the first one."""
    emails = [e for e in data.get("emails") or () if isinstance(e, dict) and _text(e.get("value"))]
    for entry in emails:
        if entry.get("primary") is True:
            return str(entry["value"])
    return str(emails[0]["value"]) if emails else None


def _extension(data: dict[str, Any], urn: str, attribute: str) -> Any:
    extension = data.get(urn)
    return extension.get(attribute) if isinstance(extension, dict) else None


def department(data: dict[str, Any]) -> str | None:
    return _text(_extension(data, ENTERPRISE, "department"))


def manager(data: dict[str, Any]) -> str | None:
    """The manager's id (the enterprise extension's `manager.value`)."""
    value = _extension(data, ENTERPRISE, "manager")
    return _text(value.get("value")) if isinstance(value, dict) else None


def workplace(data: dict[str, Any], attribute: str) -> str | None:
    """`site`, `building`, `floor`, `team` or `bookingRole` from the workplace extension."""
    return _text(_extension(data, WORKPLACE, attribute))
