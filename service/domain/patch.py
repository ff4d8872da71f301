"""RFC 7644 §3.5.2 PATCH, as Okta and Entra really send it (DESIGN §6), on canonical dicts.

`apply_patch` works on a deep copy and returns it only when every operation succeeded: all-or-nothing.
Deviations from the RFC, each because an IdP depends on it:
- no-path add/replace with a value object (Okta's deactivation): keys may be dotted (`name.givenName`) or
  URN-qualified (Entra); unknown and readOnly keys in it are ignored, like in a POST body;
- add/replace with `attr[a eq "x" and b eq "y"].sub` and no matching element creates one (Entra);
- remove with a `value` list removes the matching elements (Entra's group member removal);
- remove whose filter matches nothing is a no-op (IdPs replay removals), not noTarget;
- a path under an unknown extension URN (customer-mapped custom attributes) is ignored, not invalidPath.
"""

from __future__ import annotations

import copy
from typing import Any

from service.domain.errors import (
    InvalidPath,
    InvalidSyntax,
    InvalidValue,
    Mutability,
    NoTarget,
    ScimError,
)
from service.domain.filter import And, Compare, Expr, Path, parse_path
from service.domain.matching import matches_element
from service.domain.resource import (
    coerce,
    coerce_element,
    coerce_simple,
    container_of,
    extension_schema,
    ignored,
    is_empty,
    normalize,
    one_primary,
)
from service.domain.schema import PATCH_OP, USER_TYPE, Attribute, AttrRef, ResourceType, resolve

MISSING: Any = object()
_OPS = ("add", "replace", "remove")


def op_field(obj: dict[str, Any], name: str) -> Any:
    """A member of a JSON object, whatever the case of its name (Entra and Okta differ)."""
    if name in obj:
        return obj[name]
    lowered = name.lower()
    return next((v for k, v in obj.items() if isinstance(k, str) and k.lower() == lowered), MISSING)


def operations(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise InvalidSyntax("the PATCH body must be a JSON object")
    schemas = op_field(body, "schemas")
    if isinstance(schemas, str):
        schemas = [schemas]
    if not isinstance(schemas, list) or PATCH_OP.lower() not in [s.lower() for s in schemas if isinstance(s, str)]:
        raise InvalidSyntax(f"schemas must contain {PATCH_OP}")
    ops = op_field(body, "Operations")
    if not isinstance(ops, list) or not ops:
        raise InvalidSyntax("Operations must be a non-empty list")
    if not all(isinstance(op, dict) for op in ops):
        raise InvalidSyntax("each operation must be a JSON object")
    return ops


def apply_patch(resource: dict[str, Any], body: Any, rtype: ResourceType = USER_TYPE) -> dict[str, Any]:
    """Apply a PatchOp message to a canonical dict; return a new canonical dict, or raise and change nothing."""
    ops = operations(body)
    result = copy.deepcopy(resource)
    for i, op in enumerate(ops):
        try:
            _apply_op(result, op, rtype)
        except ScimError as e:
            raise type(e)(f"Operations[{i}]: {e.detail}") from e
    return normalize(result, rtype)


def _apply_op(res: dict[str, Any], op: dict[str, Any], rtype: ResourceType) -> None:
    name = op_field(op, "op")
    if not isinstance(name, str) or name.lower() not in _OPS:
        raise InvalidSyntax(f"op must be one of add, replace, remove; got {name!r}")
    name = name.lower()  # Entra sends "Replace"
    path = op_field(op, "path")
    value = op_field(op, "value")
    if name != "remove" and value is MISSING:
        # RFC 7644 table 9: invalidValue is "a required value was missing"
        raise InvalidValue(f"{name} requires a value")
    if path is MISSING or path is None or (isinstance(path, str) and not path.strip()):
        if name == "remove":
            raise NoTarget("remove requires a path")  # RFC 7644 §3.5.2.2
        if not isinstance(value, dict):
            raise InvalidValue(f"{name} without a path requires an object value")
        for key, member in value.items():
            if isinstance(key, str):
                _apply_member(res, name, key, member, rtype)
        return
    if not isinstance(path, str):
        raise InvalidPath(f"path must be a string, got {path!r}")
    _apply_path(res, name, path.strip(), value, rtype)


def _apply_member(res: dict[str, Any], name: str, key: str, value: Any, rtype: ResourceType) -> None:
    """One member of a no-path value object: treated like a POST body key (unknown and readOnly ones ignored)."""
    if key.lower() == "schemas":
        return
    ext = extension_schema(rtype, key)
    if ext is not None:
        if value is None:
            return
        if not isinstance(value, dict):
            raise InvalidValue(f"{ext.id} must be an object")
        for sub_key, sub_value in value.items():
            attr = ext.attribute(sub_key) if isinstance(sub_key, str) else None
            if attr is not None and not ignored(attr):
                _apply_ref(res, name, Path(AttrRef(ext.id, attr)), value=sub_value, label=f"{ext.id}:{attr.name}")
        return
    if "[" in key:  # a valuePath used as a key: clearly meant as a path
        _apply_path(res, name, key, value, rtype)
        return
    ref = resolve(rtype, key)
    if ref is None or ignored(ref.attr) or (ref.sub is not None and ignored(ref.sub)):
        return  # Okta echoes `id`, `password`; customer-mapped attributes we don't define
    _apply_ref(res, name, Path(ref), value, str(ref))


def _apply_path(res: dict[str, Any], name: str, text: str, value: Any, rtype: ResourceType) -> None:
    lowered = text.lower()
    ext = extension_schema(rtype, text)
    if ext is not None:  # the whole extension
        if name == "remove":
            res.pop(ext.id, None)
        else:
            _apply_member(res, name, ext.id, value, rtype)
        return
    known = (urn.lower() + ":" for s in (rtype.schema, *rtype.extensions) for urn in s.ids)
    if lowered.startswith("urn:") and not any(lowered.startswith(k) for k in known):
        return  # an extension we don't serve: tolerated like unknown attributes in a body
    path = parse_path(text, rtype)  # InvalidPath, also for an attribute of our schemas we don't define
    ref = path.ref
    if ref.attr.mutability == "readOnly" or (ref.sub is not None and ref.sub.mutability == "readOnly"):
        raise Mutability(f"{ref} is readOnly")
    if ignored(ref.target):
        return  # writeOnly (password): accepted, never stored
    if name == "remove" and path.filter is None and ref.target.required:
        raise InvalidValue(f"{ref.target.name} is required and cannot be removed")
    _apply_ref(res, name, path, value, text)


def _holder(res: dict[str, Any], ref: AttrRef, create: bool) -> dict[str, Any] | None:
    """The dict that holds `ref.attr`: the resource itself, or its extension object."""
    holder: dict[str, Any] | None = res
    for part in container_of(ref):
        assert holder is not None
        if create:
            holder = holder.setdefault(part, {})
        else:
            holder = holder.get(part)
            if not isinstance(holder, dict):
                return None
    return holder


def _apply_ref(res: dict[str, Any], name: str, path: Path, value: Any, label: str) -> None:
    ref, attr, sub = path.ref, path.ref.attr, path.ref.sub
    holder = _holder(res, ref, create=name != "remove")
    if holder is None:
        return  # remove from an absent extension
    if path.filter is not None:
        if not attr.multi_valued:
            raise InvalidPath(f"{attr.name} is not multi-valued; a filter cannot select in it")
        _apply_filtered(holder, name, path, value, label)
        return
    current = holder.get(attr.name)
    if sub is None:
        if name == "remove":
            if value not in (MISSING, None) and attr.multi_valued:
                _remove_values(holder, attr, value, label)
            else:
                holder.pop(attr.name, None)
            return
        new = coerce(attr, value, label)
        if attr.multi_valued:
            items = list(current or [])
            added = [e for e in new or [] if e not in items] if name == "add" else list(new or [])
            holder[attr.name] = (items if name == "add" else []) + added
            _primary(holder[attr.name], added)
        elif attr.type == "complex":
            # add and replace on a complex attribute both merge sub-attributes (RFC 7644 §3.5.2.1, §3.5.2.3)
            holder[attr.name] = {**(current or {}), **(new or {})}
        else:
            holder[attr.name] = new
        return
    # attr.sub without a filter
    if name == "remove":
        for element in current if isinstance(current, list) else [current] if current else []:
            element.pop(sub.name, None)
        return
    sub_value = coerce_simple(sub, value, label)
    if not attr.multi_valued:
        holder[attr.name] = {**(current or {}), sub.name: sub_value}
    elif current:
        for element in current:  # `emails.value` names every element
            element[sub.name] = sub_value
        _primary(current, current)
    elif not is_empty(sub_value):
        holder[attr.name] = [{sub.name: sub_value}]


def _apply_filtered(holder: dict[str, Any], name: str, path: Path, value: Any, label: str) -> None:
    """`attr[filter]` or `attr[filter].sub`."""
    assert path.filter is not None
    attr, sub = path.ref.attr, path.ref.sub
    items: list[Any] = holder.get(attr.name) or []
    hits = [e for e in items if isinstance(e, dict) and matches_element(path.filter, e)]
    if name == "remove":
        if sub is None:
            holder[attr.name] = [e for e in items if not any(e is h for h in hits)]
        else:
            for hit in hits:
                hit.pop(sub.name, None)
        return
    if sub is None:
        new = coerce_element(attr, value, label)
        if not isinstance(new, dict):
            raise InvalidValue(f"{label} requires an object value")
    else:
        new = {sub.name: coerce_simple(sub, value, label)}
    seed = _seed(path.filter, attr)
    if hits:
        for hit in hits:
            if name == "replace" and sub is None:
                hit.clear()  # the element is replaced; it keeps what the filter pinned (e.g. its type)
                hit.update(seed or {})
            hit.update(new)
        _primary(items, hits)
        return
    if seed is None:
        raise NoTarget(f"no {attr.name} element matches {label}")
    if all(is_empty(v) for v in new.values()):
        return
    element = {**seed, **new}
    holder[attr.name] = [*items, element]
    _primary(holder[attr.name], [element])


def _seed(expr: Expr, attr: Attribute) -> dict[str, Any] | None:
    """The element a conjunction of `eq`s describes (`type eq "work"` → {"type": "work"}); None if it doesn't."""
    if isinstance(expr, Compare) and expr.op == "eq" and expr.attr.sub is not None and expr.attr.attr == attr:
        sub = expr.attr.sub
        if ignored(sub):
            return None
        v = coerce_simple(sub, expr.value, f"{attr.name}.{sub.name}")
        return None if is_empty(v) else {sub.name: v}
    if isinstance(expr, And):
        left, right = _seed(expr.left, attr), _seed(expr.right, attr)
        if left is None or right is None or any(k in right and right[k] != v for k, v in left.items()):
            return None
        return {**left, **right}
    return None


def _remove_values(holder: dict[str, Any], attr: Attribute, value: Any, label: str) -> None:
    """Remove with a value list: drop the elements that agree with a given one on every given sub-attribute."""
    given = [g for g in (coerce(attr, value, label) or []) if not is_empty(g)]

    def selected(element: Any) -> bool:
        if isinstance(element, dict):
            return any(isinstance(g, dict) and all(element.get(k) == v for k, v in g.items()) for g in given)
        return element in given

    holder[attr.name] = [e for e in holder.get(attr.name) or [] if not selected(e)]


def _primary(items: list[Any], touched: list[Any]) -> None:
    """An element the operation made primary takes `primary` from the others (RFC 7643 §2.4)."""
    one_primary(items, keep=next((t for t in touched if isinstance(t, dict) and t.get("primary") is True), None))
