"""Decoding a Kafka record into an Event: JSON, the CloudEvents envelope, then the type's JSON Schema.

Anything that fails here is poison (it will never succeed however often it is retried) and goes to the DLQ.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from consumers.runtime.errors import InvalidEvent
from consumers.runtime.schemas import SchemaRegistry

DELETED = "user.deleted"
USER_TYPES = frozenset({"user.created", "user.updated", "user.deactivated", "user.reactivated", DELETED})


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    tenant_id: str
    subject: str  # the entity: the user id (user events), the group id (group events)
    version: int  # `userversion` / `groupversion`: +1 on every write to the entity
    sequence: int  # position in the event log
    time: datetime | None
    data: dict[str, Any]  # user events: the SCIM user after the change ({"id"} only for user.deleted)
    erased: bool = False  # the user was deleted since: data is {"id", "erased": true}; apply only the version
    repair: bool = False  # the `scimsync_repair` header: apply also at the stored version (runtime/domain.py)
    repair_through: int | None = None  # `scimsync_repair_through`: a history re-sent up to this version
    traceparent: str | None = None  # the CloudEvents distributed-tracing attribute: where the change began

    @property
    def user_id(self) -> str:
        """The subject of a user event."""
        return self.subject


def decode(
    value: bytes | None,
    registry: SchemaRegistry,
    version_attribute: str = "userversion",
    repair: bool = False,
    repair_through: int | None = None,
) -> Event:
    """Parse and validate one record value; raises InvalidEvent. `version_attribute`: the stream's version."""
    if value is None:
        raise InvalidEvent("json", "empty record value")
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("json", str(exc)) from None
    if not isinstance(raw, dict):
        raise InvalidEvent("json", "event is not a JSON object")
    _check_envelope(raw, version_attribute)
    registry.validate(raw)
    data: dict[str, Any] = raw["data"]
    return Event(
        id=raw["id"],
        type=raw["type"],
        tenant_id=raw["tenantid"],
        subject=raw["subject"],
        version=raw[version_attribute],
        sequence=raw.get("sequence", 0),
        time=_time(raw.get("time")),
        data=data,
        erased=data.get("erased") is True,
        repair=repair,
        repair_through=repair_through,
        traceparent=traceparent if isinstance(traceparent := raw.get("traceparent"), str) else None,
    )


def _check_envelope(raw: dict[str, Any], version_attribute: str) -> None:
    """What the runtime itself relies on, checked whether or not a JSON Schema for the type is present."""
    if raw.get("specversion") != "1.0":
        raise InvalidEvent("envelope", 'specversion must be "1.0"')
    for name in ("id", "type", "tenantid", "subject"):
        if not isinstance(raw.get(name), str) or not raw[name]:
            raise InvalidEvent("envelope", f"{name} must be a non-empty string")
    for name in ("tenantid", "subject"):
        try:
            uuid.UUID(raw[name])
        except ValueError:
            raise InvalidEvent("envelope", f"{name} must be a UUID") from None
    version = raw.get(version_attribute)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidEvent("envelope", f"{version_attribute} must be a positive integer")
    sequence = raw.get("sequence", 0)
    if not isinstance(sequence, int) or isinstance(sequence, bool):
        raise InvalidEvent("envelope", "sequence must be an integer")
    data = raw.get("data")
    if not isinstance(data, dict):
        raise InvalidEvent("envelope", "data must be an object")
    if data.get("id") != raw["subject"]:
        raise InvalidEvent("envelope", "data.id must equal subject")
    erased = data.get("erased") is True
    if raw["type"] in USER_TYPES and raw["type"] != DELETED and not erased and not isinstance(data.get("active"), bool):
        raise InvalidEvent("envelope", "data.active must be a boolean")


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent("envelope", "time must be an RFC 3339 string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent("envelope", "time must be an RFC 3339 string") from None
    if moment.tzinfo is None:
        raise InvalidEvent("envelope", "time must carry a timezone")
    return moment
