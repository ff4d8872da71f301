"""Events as published: a row of the event log → a CloudEvents 1.0 event (structured mode), its key and headers.

The contract is DESIGN.md §3 and `schemas/events/`: one JSON Schema per type, AsyncAPI in `schemas/asyncapi.yaml`.
Consumers dedupe with `id` and order with `userversion`; `sequence` is the event's position in the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.domain import groups, users

SPECVERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json"
DATA_CONTENT_TYPE = "application/json"
USER_TYPES = (users.CREATED, users.UPDATED, users.DEACTIVATED, users.REACTIVATED, users.DELETED)
GROUP_TYPES = (groups.CREATED, groups.UPDATED, groups.MEMBERSHIP_CHANGED, groups.DELETED)


@dataclass(frozen=True)
class StoredEvent:
    """One row of the event log (`events` table)."""

    sequence: int
    id: str
    tenant_id: str
    subject: str  # the user or group id
    type: str
    version: int  # the user's (group's) version after the change
    occurred_at: datetime
    data: Any  # the snapshot (users.event_data): a dict, or pre-serialised JSON the encoder passes through
    aggregate: str = "user"  # "user" | "group": which topic, and which version attribute
    traceparent: str | None = None  # W3C trace context of the write that recorded it (service/tracing.py)

    @property
    def version_attribute(self) -> str:
        return f"{self.aggregate}version"


def source(tenant_id: str) -> str:
    """The CloudEvents `source`: the tenant's SCIM base path, the same for every event of one tenant."""
    return f"/scim/v2/{tenant_id}"


def rfc3339(moment: datetime) -> str:
    """UTC with a `Z`, microseconds kept: `2026-01-31T09:15:02.123456Z`."""
    if moment.tzinfo is None:
        raise ValueError("event times must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def envelope(event: StoredEvent) -> dict[str, Any]:
    """The CloudEvents 1.0 JSON event (the Kafka value). `traceparent` (the CloudEvents distributed-tracing
    extension) is where the change began, the same on every re-delivery; absent when the write wasn't traced."""
    value: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": event.id,
        "type": event.type,
        "source": source(event.tenant_id),
        "subject": event.subject,
        "time": rfc3339(event.occurred_at),
        "datacontenttype": DATA_CONTENT_TYPE,
        "tenantid": event.tenant_id,
        "sequence": event.sequence,
        event.version_attribute: event.version,
        "data": event.data,
    }
    if event.traceparent is not None:
        value["traceparent"] = event.traceparent
    return value


def key(event: StoredEvent) -> bytes:
    """`tenant_id:user_id` (or `:group_id`, UTF-8): one user's events share a partition, so they stay in order."""
    return f"{event.tenant_id}:{event.subject}".encode()


def headers(event: StoredEvent) -> list[tuple[str, bytes]]:
    """Structured-mode content type plus the attributes a consumer routes or dedupes on without parsing."""
    return [
        ("content-type", CONTENT_TYPE.encode()),
        ("ce_specversion", SPECVERSION.encode()),
        ("ce_type", event.type.encode()),
        ("ce_id", event.id.encode()),
        ("ce_source", source(event.tenant_id).encode()),
    ]
