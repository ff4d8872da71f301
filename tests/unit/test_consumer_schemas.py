"""Loading the event schemas folder: cross-file $refs, both engines, the repository's own schemas."""

from __future__ import annotations

import importlib
import uuid
from pathlib import Path

import orjson
import pytest

from consumers.runtime.errors import InvalidEvent
from consumers.runtime.schemas import SchemaRegistry
from consumers.runtime.settings import DEFAULT_SCHEMAS_DIR
from consumers.samples import user_event


def _has_rust() -> bool:
    try:
        importlib.import_module("jsonschema_rs")
    except ImportError:
        return False
    return True


HAS_RUST = _has_rust()
ENGINES = ["jsonschema", pytest.param("jsonschema-rs", marks=pytest.mark.skipif(not HAS_RUST, reason="not installed"))]
TYPES = ["user.created", "user.updated", "user.deactivated", "user.reactivated", "user.deleted"]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two files, one $ref'ing the other; neither has an $id (their file URIs are used)."""
    (tmp_path / "user.created.schema.json").write_bytes(
        orjson.dumps(
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {"data": {"$ref": "common.json#/$defs/user"}},
            }
        )
    )
    (tmp_path / "common.json").write_bytes(
        orjson.dumps({"$defs": {"user": {"type": "object", "required": ["userName"]}}})
    )
    (tmp_path / "README.md").write_text("not a schema")
    return tmp_path


@pytest.mark.parametrize("engine", ENGINES)
def test_refs_across_files_resolve(folder: Path, engine: str) -> None:
    registry = SchemaRegistry.load(folder, engine)
    assert registry.engine == engine and registry.types == {"user.created"}
    assert registry.missing(TYPES) == sorted(set(TYPES) - {"user.created"})
    tenant, user = str(uuid.uuid4()), str(uuid.uuid4())
    registry.validate(user_event("user.created", tenant, user, 1))
    registry.validate(user_event("user.updated", tenant, user, 2) | {"data": {}})  # no schema for the type: passes
    event = user_event("user.created", tenant, user, 1)
    del event["data"]["userName"]
    with pytest.raises(InvalidEvent) as caught:
        registry.validate(event)
    assert str(caught.value).startswith("schema: user.created: /data: required")


def test_an_empty_or_missing_folder_has_no_schemas(tmp_path: Path) -> None:
    assert SchemaRegistry.load(tmp_path / "nope").types == frozenset()


def test_an_unknown_engine_is_refused(folder: Path) -> None:
    with pytest.raises(ValueError, match="engine"):
        SchemaRegistry.load(folder, "fast")


@pytest.mark.skipif(not (DEFAULT_SCHEMAS_DIR / "user.created.schema.json").exists(), reason="no contract schemas yet")
@pytest.mark.parametrize("engine", ENGINES)
def test_the_sample_events_match_the_published_contract(engine: str) -> None:
    registry = SchemaRegistry.load(DEFAULT_SCHEMAS_DIR, engine)
    assert registry.missing(TYPES) == []
    tenant, user = str(uuid.uuid4()), str(uuid.uuid4())
    for version, event_type in enumerate(TYPES, start=1):
        registry.validate(user_event(event_type, tenant, user, version))
        registry.validate(user_event(event_type, tenant, user, version, erased=True))
    bad = user_event("user.updated", tenant, user, 2)
    bad["data"]["active"] = "False"
    with pytest.raises(InvalidEvent, match=r"^schema: user\.updated: /data"):
        registry.validate(bad)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_contract_carries_the_workplace_extension(engine: str) -> None:
    registry = SchemaRegistry.load(DEFAULT_SCHEMAS_DIR, engine)
    tenant, user = str(uuid.uuid4()), str(uuid.uuid4())
    workplace = "urn:ietf:params:scim:schemas:extension:workplace:2.0:User"
    event = user_event("user.updated", tenant, user, 2)
    event["data"][workplace] = {"site": "HQ", "building": "N", "floor": "4", "team": "T", "bookingRole": "teamLead"}
    registry.validate(event)
    event["data"][workplace] = {"bookingRole": "boss"}
    with pytest.raises(InvalidEvent, match=r"^schema: user\.updated: /data"):
        registry.validate(event)
    event["data"][workplace] = {"floor": 4}
    with pytest.raises(InvalidEvent, match=r"^schema: user\.updated: /data"):
        registry.validate(event)
