"""Events in the shape of the contract (DESIGN.md §3, README "Group events"), for tests, benchmarks and demos.

Not used by the consumers themselves; the relay is what publishes the real ones.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from consumers.runtime.snapshot import ENTERPRISE

_SEQUENCE = itertools.count(1)
ACTIVE_AFTER = {"user.created": True, "user.deactivated": False, "user.reactivated": True}


def user_event(
    type_: str,
    tenant_id: str,
    user_id: str,
    version: int,
    *,
    active: bool | None = None,
    user_name: str | None = None,
    given_name: str = "Ada",
    family_name: str = "Lovelace",
    email: str | None = None,
    department: str | None = "Engineering",
    erased: bool = False,
) -> dict[str, Any]:
    """A CloudEvents user event; `data` is the SCIM user after the change (`{"id"}` only for user.deleted).

    `erased`: the event as published after the user's deletion, its snapshot reduced to `{"id", "erased": true}`.
    """
    if type_ == "user.deleted":
        data: dict[str, Any] = {"id": user_id}
    elif erased:
        data = {"id": user_id, "erased": True}
    else:
        user_name = user_name or f"user-{user_id[:8]}@example.com"
        data = {
            "id": user_id,
            "userName": user_name,
            "active": ACTIVE_AFTER.get(type_, True) if active is None else active,
            "name": {"givenName": given_name, "familyName": family_name, "formatted": f"{given_name} {family_name}"},
            "displayName": f"{given_name} {family_name}",
            "emails": [{"value": email or user_name, "type": "work", "primary": True}],
        }
        if department is not None:
            data[ENTERPRISE] = {"department": department, "manager": {"value": str(uuid.uuid4())}}
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": type_,
        "source": f"/scim/v2/{tenant_id}",
        "subject": user_id,
        "time": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "tenantid": tenant_id,
        "sequence": next(_SEQUENCE),
        "userversion": version,
        "data": data,
    }


def group_event(
    type_: str,
    tenant_id: str,
    group_id: str,
    version: int,
    *,
    display_name: str = "Engineering",
    external_id: str | None = None,
    members: Iterable[str] = (),
    added: Iterable[str] = (),
    removed: Iterable[str] = (),
) -> dict[str, Any]:
    """A CloudEvents group event (README "Group events"): created/updated carry the attributes, created also the
    members, membership_changed only the change, deleted only the id."""
    data: dict[str, Any] = {"id": group_id}
    if type_ in ("group.created", "group.updated"):
        data.update(displayName=display_name, externalId=external_id)
    if type_ == "group.created":
        data["members"] = list(members)
    if type_ == "group.membership_changed":
        data.update(added=list(added), removed=list(removed))
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": type_,
        "source": f"/scim/v2/{tenant_id}",
        "subject": group_id,
        "time": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "tenantid": tenant_id,
        "sequence": next(_SEQUENCE),
        "groupversion": version,
        "data": data,
    }


def key(event: dict[str, Any]) -> bytes:
    return f"{event['tenantid']}:{event['subject']}".encode()


def headers(event: dict[str, Any]) -> list[tuple[str, bytes]]:
    return [
        ("content-type", b"application/cloudevents+json"),
        ("ce_type", str(event["type"]).encode()),
        ("ce_id", str(event["id"]).encode()),
    ]


async def produce(
    bootstrap_servers: str,
    topic: str,
    events: Iterable[dict[str, Any] | bytes],
    partition: int | None = None,
    extra_headers: Iterable[tuple[str, bytes]] = (),
) -> None:
    """Publish events in order: dicts as the relay would, raw bytes (malformed events) as they are.

    `partition` pins every record to one partition (by default the key decides, as for the relay).
    `extra_headers` go on every record, e.g. `[("scimsync_repair", b"1")]` as `reconcile --fix` sends.
    """
    extra = list(extra_headers)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        futures = []
        for event in events:
            if isinstance(event, bytes):
                record: dict[str, Any] = {"value": event, "key": b"malformed"}
            else:
                record = {"value": orjson.dumps(event), "key": key(event), "headers": headers(event) + extra}
            futures.append(await producer.send(topic, partition=partition, **record))
        for future in futures:
            await future
    finally:
        await producer.stop()
