"""In-memory evaluation of a filter AST (filter.py), with the semantics filter.py's docstring states.

matches(expr: Expr, obj: dict[str, Any]) -> bool                      a resource in canonical form
matches_element(expr: Expr, element: dict[str, Any]) -> bool          ONE element (a valuePath filter)
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from service.domain.errors import InvalidFilter
from service.domain.filter import NUMBER_TYPES, And, Expr, Not, Or, Present, Value, ValuePath, parse_datetime
from service.domain.schema import AttrRef

# --- in-memory evaluation -----------------------------------------------------------------------------------


def matches(expr: Expr, obj: dict[str, Any]) -> bool:
    """Does the resource `obj` (canonical form: core attributes at the top, extensions under their URN) match?

    For the PATCH valuePath case prefer `matches_element`. Because the contract lets callers pass one element
    here too, an expression whose every attribute is a sub-attribute of one multi-valued attribute (a valuePath
    filter, e.g. `type eq "work"`) is evaluated against `obj` as an element when `obj` holds no such attribute.
    """
    parent = _element_parent(expr)
    if parent is not None and _get(obj, parent.key[0]) is None:
        return _eval(expr, obj, element=True)
    return _eval(expr, obj, element=False)


def matches_element(expr: Expr, element: dict[str, Any]) -> bool:
    """Does one element of a multi-valued attribute (e.g. `{"type": "work", "value": "a@x"}`) match `expr`,
    a valuePath filter whose refs are sub-attributes (`Path.filter`, `ValuePath.filter`)?"""
    return _eval(expr, element, element=True)


def _refs(expr: Expr) -> Iterator[AttrRef | None]:
    """Leaf refs; None for a ValuePath (which is only valid at the resource level)."""
    if isinstance(expr, And | Or):
        yield from _refs(expr.left)
        yield from _refs(expr.right)
    elif isinstance(expr, Not):
        yield from _refs(expr.expr)
    elif isinstance(expr, ValuePath):
        yield None
    else:
        yield expr.attr


def _element_parent(expr: Expr) -> AttrRef | None:
    parents = set()
    for ref in _refs(expr):
        if ref is None or ref.sub is None:
            return None
        parents.add((ref.schema, ref.attr))
    if len(parents) != 1:
        return None
    schema, attr = parents.pop()
    return AttrRef(schema, attr) if attr.multi_valued else None


def _get(node: dict[str, Any], key: str) -> Any:
    """`node[key]`, falling back to a case-insensitive match for input that isn't perfectly canonical."""
    if key in node:
        return node[key]
    lowered = key.lower()
    return next((v for k, v in node.items() if k.lower() == lowered), None)


def _values(ref: AttrRef, obj: dict[str, Any], element: bool) -> list[Any]:
    """The values `ref` holds in `obj` (one element when `element`); like the SQL, a multi-valued attribute
    only has values if it holds a list."""
    if element:
        found = _lookup(obj, (ref.sub.name,)) if ref.sub else obj
        return [] if found is None else [found]
    if not ref.attr.multi_valued:
        found = _lookup(obj, ref.key)
        return [] if found is None else [found]
    items = _lookup(obj, AttrRef(ref.schema, ref.attr).key)
    if not isinstance(items, list):
        return []
    return [v for item in items if (v := _lookup(item, (ref.sub.name,)) if ref.sub else item) is not None]


def _present(value: Any) -> bool:
    return value is not None and value not in ("", [], {})


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        return parse_datetime(value) if isinstance(value, str) else None
    except InvalidFilter:
        return None


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "co": lambda a, b: b in a,
    "sw": lambda a, b: a.startswith(b),
    "ew": lambda a, b: a.endswith(b),
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}


def _compare(ref: AttrRef, op: str, stored: Any, value: Value) -> bool:
    attr = ref.target
    if attr.type == "boolean":
        return isinstance(stored, bool) and stored == value
    if attr.type in NUMBER_TYPES:
        ok = isinstance(stored, int | float) and not isinstance(stored, bool)
        return ok and _OPS[op](stored, value)
    if attr.type == "dateTime":
        instant = _as_datetime(stored)
        return instant is not None and isinstance(value, str) and _OPS[op](instant, parse_datetime(value))
    if not isinstance(stored, str) or not isinstance(value, str):
        return False
    if not attr.case_exact:
        stored, value = stored.lower(), value.lower()
    return _OPS[op](stored, value)


def _eval(expr: Expr, obj: dict[str, Any], element: bool) -> bool:
    if isinstance(expr, And):
        return _eval(expr.left, obj, element) and _eval(expr.right, obj, element)
    if isinstance(expr, Or):
        return _eval(expr.left, obj, element) or _eval(expr.right, obj, element)
    if isinstance(expr, Not):
        return not _eval(expr.expr, obj, element)
    if isinstance(expr, ValuePath):
        node = _lookup(obj, expr.attr.key)
        # Like the SQL: a multi-valued attribute must hold a list, a single-valued complex one an object.
        elements = (node if isinstance(node, list) else []) if expr.attr.attr.multi_valued else [node]
        return any(isinstance(e, dict) and _eval(expr.filter, e, element=True) for e in elements)
    ref = expr.attr
    values = _values(ref, obj, element)
    if isinstance(expr, Present) or expr.value is None:
        present = any(_present(v) for v in values)
        return present if isinstance(expr, Present) or expr.op == "ne" else not present
    if expr.op == "ne":
        return not any(_compare(ref, "eq", v, expr.value) for v in values)
    return any(_compare(ref, expr.op, v, expr.value) for v in values)


def _lookup(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    node: Any = obj
    for key in keys:
        node = _get(node, key) if isinstance(node, dict) else None
    return node
