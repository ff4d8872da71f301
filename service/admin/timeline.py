"""A user's timeline from the event log, and whether each consumer has applied each event (pure, no I/O).

A consumer has applied an event when its version gate for that user holds the event's version or a later one
(consumers may skip an older snapshot when a newer one is already there: the newer one carries it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from service.admin.present import seconds

_LABELS = {
    "user.created": "Created",
    "user.updated": "Updated",
    "user.deactivated": "Deactivated",
    "user.reactivated": "Reactivated",
    "user.deleted": "Deleted",
}


class EventLike(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def data(self) -> dict[str, Any]: ...


class GateLike(Protocol):
    @property
    def version(self) -> int | None: ...
    @property
    def applied_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class Entry:
    when: datetime
    label: str
    changes: list[str]  # changed attributes (dotted names), or a note
    applied: dict[str, str]  # consumer -> "applied 0.4 s later" | "applied" | "not yet"
    pending: dict[str, bool]  # consumer -> not applied yet


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flat(inner, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def _shown(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if len(str(value)) <= 60 else str(value)[:57] + "..."


def changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The attributes whose value differs, by dotted name, with old → new for single values (lists: the name)."""
    a, b = _flat(before), _flat(after)
    out = []
    for key in sorted(k for k in a.keys() | b.keys() if k != "id" and a.get(k) != b.get(k)):
        old, new = a.get(key), b.get(key)
        lists = isinstance(old, list | dict) or isinstance(new, list | dict)
        out.append(key if lists else f"{key}: {_shown(old)} → {_shown(new)}")
    return out


def applied(event: EventLike, consumer: str, gate: GateLike) -> str:
    if gate.version is None or gate.version < event.version:
        return "not yet"
    if gate.version == event.version and gate.applied_at is not None:
        lag = max(0.0, (gate.applied_at - event.occurred_at).total_seconds())
        return f"applied by {consumer} {seconds(lag)} later"
    return f"applied by {consumer}"


def entries(events: Sequence[EventLike], gates: Mapping[str, GateLike]) -> list[Entry]:
    out: list[Entry] = []
    before: dict[str, Any] = {}
    for event in events:
        erased = bool(event.data.get("erased"))
        if erased:
            changes = ["details erased: this person was deleted"]
        elif event.type == "user.created":
            changes = [f"userName {event.data.get('userName', '')}"]
        elif event.type == "user.deleted":
            changes = []
        else:
            changes = changed(before, event.data)
        if not erased:
            before = event.data
        marks = {name: applied(event, name, gate) for name, gate in gates.items()}
        out.append(
            Entry(
                event.occurred_at,
                _LABELS.get(event.type, event.type),
                changes,
                marks,
                {name: mark == "not yet" for name, mark in marks.items()},
            )
        )
    return out
