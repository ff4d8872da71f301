"""The event JSON Schemas (`schemas/events/*.schema.json`, 2020-12), loaded once per process.

Every `*.json` file in the folder is registered (by its `$id`, or by its file URI when it has none), so schemas
may `$ref` each other. `<type>.schema.json` validates events of that type. A type without a schema file is
checked by the envelope rules only (envelope.py), and reported once at start-up.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from consumers.runtime.errors import InvalidEvent

SUFFIX = ".schema.json"


class SchemaRegistry:
    def __init__(self, validators: dict[str, Any]) -> None:
        self._validators = validators

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self._validators)

    def missing(self, types: Iterable[str]) -> list[str]:
        return sorted(t for t in types if t not in self._validators)

    def validate(self, event: dict[str, Any]) -> None:
        validator = self._validators.get(event.get("type"))
        if validator is None:
            return
        error = next(iter(validator.iter_errors(event)), None)
        if error is not None:
            where = "/" + "/".join(str(p) for p in error.absolute_path)
            raise InvalidEvent("schema", f"{event['type']}: {where}: {error.validator} ({_short(error.message)})")

    @classmethod
    def load(cls, folder: Path) -> SchemaRegistry:
        documents: dict[Path, dict[str, Any]] = {}
        if folder.is_dir():
            for path in sorted(folder.glob("*.json")):
                document = orjson.loads(path.read_bytes())
                if isinstance(document, dict):
                    document.setdefault("$id", path.resolve().as_uri())
                    documents[path] = document
        registry: Registry[Any] = Registry()
        for document in documents.values():
            registry = registry.with_resource(document["$id"], Resource.from_contents(document, DRAFT202012))
        validators = {
            path.name.removesuffix(SUFFIX): Draft202012Validator(document, registry=registry)
            for path, document in documents.items()
            if path.name.endswith(SUFFIX)
        }
        return cls(validators)


def _short(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"
