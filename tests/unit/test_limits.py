"""Write-time limits (domain/limits.py): the largest resource they accept still makes an event Kafka takes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from service.domain import events, groups, users
from service.domain.errors import InvalidValue
from service.domain.events import StoredEvent
from service.domain.limits import (
    EVENT_OVERHEAD_BYTES,
    KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
    MAX_RESOURCE_BYTES,
    MEMBERS_PER_EVENT,
    check_resource_size,
)
from service.domain.resource import normalize
from service.domain.schema import USER_TYPE

TENANT = str(uuid.uuid4())
BIG = 10**18  # a sequence and version with as many digits as a bigint has


def largest_user() -> dict[str, Any]:
    """A user exactly MAX_RESOURCE_BYTES as stored: many short values (no single long one), then padding."""

    def build(emails: int, title: str = "") -> dict[str, Any]:
        body = {
            "userName": "largest@example.com",
            "emails": [{"value": f"alias.{n:06d}@example.com", "type": "other"} for n in range(emails)],
            "title": title,
        }
        return users.prepare_new(normalize(body, USER_TYPE))

    entry = len(orjson.dumps(build(2))) - len(orjson.dumps(build(1)))
    emails = (MAX_RESOURCE_BYTES - 200) // entry
    missing = MAX_RESOURCE_BYTES - len(orjson.dumps(build(emails)))
    resource = build(emails, "t" * (missing - len(',"title":""')))
    assert len(orjson.dumps(resource)) == MAX_RESOURCE_BYTES
    return resource


def record_size(event: StoredEvent) -> int:
    """What the relay's producer checks against max_request_size: one record batch holding this event."""
    value = orjson.dumps(events.envelope(event))
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(events.key(event), value, events.headers(event)))


def stored(kind: str, data: Any, aggregate: str) -> StoredEvent:
    return StoredEvent(BIG, str(uuid.uuid4()), TENANT, data["id"], kind, BIG, datetime.now(UTC), data, aggregate)


def test_the_largest_allowed_user_is_accepted_and_one_byte_more_is_refused() -> None:
    resource = largest_user()
    check_resource_size("User", len(orjson.dumps(resource)))
    with pytest.raises(InvalidValue) as refused:
        check_resource_size("User", MAX_RESOURCE_BYTES + 1)
    assert "262,144 bytes" in refused.value.detail and "maxResourceBytes" in refused.value.detail
    assert refused.value.status == 400 and refused.value.scim_type == "invalidValue"


def test_the_largest_allowed_user_makes_an_event_that_fits_kafkas_default_limit() -> None:
    user_id = str(uuid.uuid4())
    data = users.event_data(user_id, largest_user())
    size = record_size(stored(users.REACTIVATED, data, "user"))
    assert size <= MAX_RESOURCE_BYTES + EVENT_OVERHEAD_BYTES
    assert KAFKA_DEFAULT_MAX_MESSAGE_BYTES - size > 700_000, f"margin {KAFKA_DEFAULT_MAX_MESSAGE_BYTES - size}"


def test_the_largest_group_creation_and_membership_change_fit_kafkas_default_limit() -> None:
    group_id = str(uuid.uuid4())
    half = (MAX_RESOURCE_BYTES - 40) // 2
    resource = {"displayName": "d" * half, "externalId": "e" * half}
    assert len(orjson.dumps(resource)) <= MAX_RESOURCE_BYTES
    members = [str(uuid.uuid4()) for _ in range(MEMBERS_PER_EVENT * 2 + 1)]
    parts = groups.created_events(group_id, resource, members, MEMBERS_PER_EVENT)
    assert [kind for kind, _ in parts] == [groups.CREATED, groups.MEMBERSHIP_CHANGED, groups.MEMBERSHIP_CHANGED]
    assert [len(d.get("members") or d.get("added")) for _, d in parts] == [MEMBERS_PER_EVENT, MEMBERS_PER_EVENT, 1]
    assert [m for _, d in parts for m in d.get("members") or d.get("added")] == members
    created = record_size(stored(groups.CREATED, parts[0][1], "group"))
    changed = stored(
        groups.MEMBERSHIP_CHANGED, {"id": group_id, "added": members[:MEMBERS_PER_EVENT], "removed": []}, "group"
    )
    assert (
        created <= MAX_RESOURCE_BYTES + MEMBERS_PER_EVENT * 39 + EVENT_OVERHEAD_BYTES < KAFKA_DEFAULT_MAX_MESSAGE_BYTES
    )
    assert record_size(changed) < KAFKA_DEFAULT_MAX_MESSAGE_BYTES // 2


def test_a_group_without_members_is_one_event() -> None:
    assert groups.created_events("g", {"displayName": "G"}, [], MEMBERS_PER_EVENT) == [
        (groups.CREATED, {"id": "g", "displayName": "G", "externalId": None, "members": []})
    ]
