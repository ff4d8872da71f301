"""Decoding records into events: JSON, the CloudEvents envelope rules, the type's schema."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from consumers.runtime.envelope import decode
from consumers.runtime.errors import InvalidEvent
from consumers.runtime.schemas import SchemaRegistry
from consumers.samples import user_event

NO_SCHEMAS = SchemaRegistry({})
TENANT, USER = str(uuid.uuid4()), str(uuid.uuid4())


def encoded(**changes: Any) -> bytes:
    event = user_event("user.updated", TENANT, USER, 2)
    event.update(changes)
    return orjson.dumps(event)


def test_a_valid_event_decodes() -> None:
    event = decode(encoded(time="2026-01-31T09:15:02.123456Z", sequence=42), NO_SCHEMAS)
    assert (event.type, event.tenant_id, event.user_id, event.version, event.sequence) == (
        "user.updated",
        TENANT,
        USER,
        2,
        42,
    )
    assert event.time == datetime(2026, 1, 31, 9, 15, 2, 123456, tzinfo=UTC)
    assert event.data["active"] is True


def test_deleted_carries_only_the_id() -> None:
    event = decode(orjson.dumps(user_event("user.deleted", TENANT, USER, 3)), NO_SCHEMAS)
    assert event.data == {"id": USER}


def test_an_erased_snapshot_is_marked() -> None:
    event = decode(orjson.dumps(user_event("user.updated", TENANT, USER, 2, erased=True)), NO_SCHEMAS)
    assert event.erased and event.data == {"id": USER, "erased": True}
    assert not decode(encoded(), NO_SCHEMAS).erased


def test_an_unknown_type_passes_the_envelope_rules() -> None:
    assert decode(encoded(type="user.merged"), NO_SCHEMAS).type == "user.merged"


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, "json"),
        (b"{not json", "json"),
        (b"[1, 2]", "json"),
        (encoded(specversion="0.3"), "envelope"),
        (encoded(id=""), "envelope"),
        (encoded(tenantid="acme"), "envelope"),
        (encoded(subject=None), "envelope"),
        (encoded(userversion="2"), "envelope"),
        (encoded(userversion=True), "envelope"),
        (encoded(userversion=0), "envelope"),
        (encoded(sequence="1"), "envelope"),
        (encoded(data=[]), "envelope"),
        (encoded(data={"id": str(uuid.uuid4()), "active": True}), "envelope"),
        (encoded(data={"id": USER, "userName": "a"}), "envelope"),
        (encoded(data={"id": USER, "active": "False"}), "envelope"),
        (encoded(time="yesterday"), "envelope"),
        (encoded(time="2026-01-31T09:15:02"), "envelope"),
    ],
)
def test_poison_is_rejected_with_its_kind(value: bytes | None, kind: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode(value, NO_SCHEMAS)
    assert caught.value.kind == kind
    assert str(caught.value).startswith(f"{kind}: ")
