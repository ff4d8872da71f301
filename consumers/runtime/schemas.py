"""The event JSON Schemas (`schemas/events/*.schema.json`, 2020-12), loaded once per process.

Every `*.json` file in the folder is registered (by its `$id`, or by its file URI when it has none), so schemas
may `$ref` each other. `<type>.schema.json` validates events of that type. A type without a schema file is
checked by the envelope rules only (envelope.py), and reported once at start-up.

Two engines give the same answers: `jsonschema-rs` (Rust; ~1 µs per event) when it is installed, else
`jsonschema` (pure Python; ~120-160 µs per event, which is most of a consumer's time per event).
SCIMSYNC_SCHEMA_ENGINE=auto|jsonschema|jsonschema-rs picks one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from consumers.runtime.errors import InvalidEvent

SUFFIX = ".schema.json"
ENGINES = ("auto", "jsonschema", "jsonschema-rs")
# A check returns None for a valid event, else "where: keyword (message)".
Check = Callable[[Any], str | None]


class SchemaRegistry:
    def __init__(self, checks: dict[str, Check], engine: str = "none") -> None:
        self._checks = checks
        self.engine = engine

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self._checks)

    def missing(self, types: Iterable[str]) -> list[str]:
        return sorted(t for t in types if t not in self._checks)

    def validate(self, event: dict[str, Any]) -> None:
        event_type = str(event.get("type"))
        check = self._checks.get(event_type)
        if check is None:
            return
        error = check(event)
        if error is not None:
            raise InvalidEvent("schema", f"{event_type}: {error}")

    @classmethod
    def load(cls, folder: Path, engine: str = "auto") -> SchemaRegistry:
        if engine not in ENGINES:
            raise ValueError(f"schema engine must be one of {ENGINES}, got {engine!r}")
        documents: dict[str, dict[str, Any]] = {}  # type -> schema, for `<type>.schema.json`
        resources: list[tuple[str, dict[str, Any]]] = []
        if folder.is_dir():
            for path in sorted(folder.glob("*.json")):
                document = orjson.loads(path.read_bytes())
                if isinstance(document, dict):
                    document.setdefault("$id", path.resolve().as_uri())
                    resources.append((document["$id"], document))
                    if path.name.endswith(SUFFIX):
                        documents[path.name.removesuffix(SUFFIX)] = document
        rust = _jsonschema_rs() if engine in ("auto", "jsonschema-rs") else None
        if engine == "jsonschema-rs" and rust is None:
            raise ValueError("SCIMSYNC_SCHEMA_ENGINE=jsonschema-rs but jsonschema_rs is not installed")
        if rust is not None:
            registry = rust.Registry(resources)
            return cls({t: _rust_check(rust, d, registry) for t, d in documents.items()}, "jsonschema-rs")
        py_registry: Registry[Any] = Registry().with_resources(
            (uri, Resource.from_contents(document, DRAFT202012)) for uri, document in resources
        )
        return cls({t: _python_check(d, py_registry) for t, d in documents.items()}, "jsonschema")


def _jsonschema_rs() -> Any:
    try:
        return importlib.import_module("jsonschema_rs")
    except ImportError:
        return None


def _python_check(document: dict[str, Any], registry: Registry[Any]) -> Check:
    validator = Draft202012Validator(document, registry=registry)

    def check(event: Any) -> str | None:
        error = next(iter(validator.iter_errors(event)), None)
        if error is None:
            return None
        return f"{_where(error.absolute_path)}: {error.validator} ({_short(error.message)})"

    return check


def _rust_check(rust: Any, document: dict[str, Any], registry: Any) -> Check:
    validator = rust.validator_for(document, registry=registry, offline=True)

    def check(event: Any) -> str | None:
        if validator.is_valid(event):
            return None
        error = next(iter(validator.iter_errors(event)))
        return f"{_where(error.instance_path)}: {error.kind.name} ({_short(error.message)})"

    return check


def _where(path: Iterable[Any]) -> str:
    return "/" + "/".join(str(p) for p in path)


def _short(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"
