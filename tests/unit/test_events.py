"""The published event: CloudEvents envelope, key, headers, and the JSON Schemas / AsyncAPI that describe it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from service.domain import events, users
from service.domain.events import StoredEvent

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
TENANT, USER = str(uuid.uuid4()), str(uuid.uuid4())


def validators() -> dict[str, Draft202012Validator]:
    """One validator per event type, with the shared envelope schema resolvable by its $id."""
    loaded = {p.name.removesuffix(".schema.json"): json.loads(p.read_text()) for p in SCHEMAS.glob("events/*.json")}
    registry: Registry[Any] = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in loaded.values()
    )
    return {
        name: Draft202012Validator(schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)
        for name, schema in loaded.items()
        if name != "envelope"
    }


VALIDATORS = validators()


def stored(kind: str, data: dict[str, Any], version: int = 1) -> StoredEvent:
    return StoredEvent(
        sequence=42,
        id=str(uuid.uuid4()),
        tenant_id=TENANT,
        subject=USER,
        type=kind,
        version=version,
        occurred_at=datetime(2026, 3, 2, 9, 15, 2, 123456, tzinfo=UTC),
        data=data,
    )


def snapshot(**extra: Any) -> dict[str, Any]:
    return users.event_data(USER, {"userName": "ada@example.com", "active": True, **extra})


def test_envelope_has_every_attribute_of_the_contract() -> None:
    event = stored(users.UPDATED, snapshot(), version=3)
    assert events.envelope(event) == {
        "specversion": "1.0",
        "id": event.id,
        "type": "user.updated",
        "source": f"/scim/v2/{TENANT}",
        "subject": USER,
        "time": "2026-03-02T09:15:02.123456Z",
        "datacontenttype": "application/json",
        "tenantid": TENANT,
        "sequence": 42,
        "userversion": 3,
        "data": {"id": USER, "userName": "ada@example.com", "active": True},
    }


def test_time_is_utc_rfc3339_whatever_the_zone() -> None:
    paris = datetime(2026, 3, 2, 10, 15, 2, tzinfo=timezone(timedelta(hours=1)))
    assert events.rfc3339(paris) == "2026-03-02T09:15:02.000000Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        events.rfc3339(datetime(2026, 3, 2))


def test_key_is_tenant_and_user_so_one_user_stays_on_one_partition() -> None:
    assert events.key(stored(users.CREATED, snapshot())) == f"{TENANT}:{USER}".encode()


def test_headers_route_without_parsing() -> None:
    event = stored(users.DEACTIVATED, snapshot(active=False), version=2)
    headers = dict(events.headers(event))
    assert headers["content-type"] == b"application/cloudevents+json"
    assert headers["ce_type"] == b"user.deactivated"
    assert headers["ce_id"] == event.id.encode()
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_source"] == f"/scim/v2/{TENANT}".encode()


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        (users.CREATED, snapshot(name={"givenName": "Ada"}, emails=[{"value": "ada@example.com", "primary": True}])),
        (users.UPDATED, snapshot(title="Countess", **{ENTERPRISE: {"department": "R&D", "manager": {"value": "m"}}})),
        (users.DEACTIVATED, snapshot(active=False)),
        (users.REACTIVATED, snapshot()),
        (users.DELETED, users.event_data(USER, None)),
    ],
)
def test_each_type_validates_against_its_schema(kind: str, data: dict[str, Any]) -> None:
    VALIDATORS[kind].validate(events.envelope(stored(kind, data, version=1 if kind == users.CREATED else 2)))


def test_there_is_a_schema_for_every_type_and_no_other() -> None:
    envelopes = {"envelope", "group-envelope"}
    assert set(VALIDATORS) - envelopes == set(events.USER_TYPES + events.GROUP_TYPES)


@pytest.mark.parametrize(
    ("kind", "data", "why"),
    [
        (users.DELETED, {"id": USER, "userName": "ada@example.com"}, "personal data in user.deleted"),
        (users.UPDATED, {"id": USER, "active": True}, "no userName"),
        (users.UPDATED, {"id": USER, "userName": "ada", "active": "true"}, "active as a string"),
        (users.DEACTIVATED, snapshot(active=True), "a deactivation that leaves the user active"),
        (users.REACTIVATED, snapshot(active=False), "a reactivation that leaves the user inactive"),
        (users.UPDATED, snapshot(**{ENTERPRISE: "R&D"}), "the enterprise extension not an object"),
    ],
)
def test_schemas_reject_what_the_contract_forbids(kind: str, data: dict[str, Any], why: str) -> None:
    assert not VALIDATORS[kind].is_valid(events.envelope(stored(kind, data, version=2))), why


def test_schemas_reject_a_wrong_type_or_a_missing_attribute() -> None:
    envelope = events.envelope(stored(users.UPDATED, snapshot(), version=2))
    assert not VALIDATORS[users.CREATED].is_valid(envelope)
    for attribute in ("id", "sequence", "userversion", "tenantid", "time", "data"):
        assert not VALIDATORS[users.UPDATED].is_valid({k: v for k, v in envelope.items() if k != attribute}), attribute


def test_asyncapi_describes_the_topic_and_each_message_with_a_valid_example() -> None:
    doc = yaml.safe_load((SCHEMAS / "asyncapi.yaml").read_text())
    assert doc["asyncapi"].startswith("3.")
    assert doc["channels"]["userLifecycle"]["address"] == "user-lifecycle.v1"
    names = set()
    for message in doc["components"]["messages"].values():
        names.add(message["name"])
        schema_file = message["payload"]["schema"]["$ref"].removeprefix("./")
        assert (SCHEMAS / schema_file).is_file(), schema_file
        assert schema_file == f"events/{message['name']}.schema.json"
        for example in message.get("examples", []):
            VALIDATORS[message["name"]].validate(example["payload"])
            assert example["headers"]["ce_type"] == message["name"]
    assert names == set(events.USER_TYPES + events.GROUP_TYPES)
