"""Input normalisation (POST/PUT bodies → canonical dict) and RFC 7644 §3.9 attribute projection.

The canonical dict is what we store: core attributes at the top level under their schema names, extension
attributes under the extension URN, no id/meta/schemas/password, real booleans, empty values omitted.
IdPs are sloppy in known ways (DESIGN §6): names in any case, booleans as strings, the enterprise manager as a
bare id, a single object where a list is expected. We accept those; we reject only values of the wrong type.
"""

from __future__ import annotations

from typing import Any

from service.domain.errors import InvalidSyntax, InvalidValue
from service.domain.limits import MAX_VALUE_LENGTH
from service.domain.schema import COMMON, USER_TYPE, Attribute, AttrRef, ResourceType, Schema, resolve

_STRING_TYPES = ("string", "reference", "binary", "dateTime")


def is_empty(value: Any) -> bool:
    return value is None or value in ("", [], {})


def ignored(attr: Attribute) -> bool:
    """Attributes a client may send but never sets: readOnly ones (id, meta, groups) and writeOnly secrets."""
    return attr.mutability in ("readOnly", "writeOnly")


def coerce_simple(attr: Attribute, value: Any, label: str) -> Any:
    """One simple value of `attr`; None for an empty one."""
    if value is None or value == "":
        return None
    if isinstance(value, dict | list):
        kind = "an object" if isinstance(value, dict) else "a list"
        raise InvalidValue(f"{label} must be a single {attr.type} value, got {kind}")
    if attr.type == "boolean":
        if isinstance(value, bool):
            return value
        # Entra sends "True"/"False"
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise InvalidValue(f"{label} must be a boolean, got {value!r}")
    if attr.type == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise InvalidValue(f"{label} must be an integer, got {value!r}")
    if attr.type == "decimal":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        raise InvalidValue(f"{label} must be a number, got {value!r}")
    if attr.type in _STRING_TYPES:
        if isinstance(value, str) and attr.closed:
            return _canonical(attr, value, label)
        if isinstance(value, str):
            if len(value) > MAX_VALUE_LENGTH:  # one limit for every stored string: a filter can look it up
                raise InvalidValue(f"{label} is longer than {MAX_VALUE_LENGTH} characters")
            return value
        raise InvalidValue(f"{label} must be a string, got {value!r}")
    raise InvalidValue(f"{label} must be a {attr.type}, got {value!r}")


def _canonical(attr: Attribute, value: str, label: str) -> str:
    """One of a closed list of values, in its canonical spelling (admins type `TeamLead`, consumers need `teamLead`)."""
    lowered = value.strip().lower()
    for canonical in attr.canonical_values:
        if canonical.lower() == lowered:
            return canonical
    raise InvalidValue(f"{label} must be one of {', '.join(attr.canonical_values)}, got {value!r}")


def coerce_complex(attr: Attribute, value: Any, label: str) -> dict[str, Any] | None:
    """One complex value of `attr` with canonical sub-attribute names; unknown and readOnly sub-attributes dropped."""
    if value is None:
        return None
    if isinstance(value, str) and not attr.multi_valued and attr.sub("value") is not None:
        value = {"value": value}  # Entra sends the enterprise manager as a bare id
    if not isinstance(value, dict):
        raise InvalidValue(f"{label} must be an object, got {value!r}")
    out: dict[str, Any] = {}
    for key, raw in value.items():
        sub = attr.sub(key) if isinstance(key, str) else None
        if sub is None or ignored(sub):
            continue
        coerced = coerce_simple(sub, raw, f"{label}.{sub.name}")
        if not is_empty(coerced):
            out[sub.name] = coerced
    return out or None


def coerce_element(attr: Attribute, value: Any, label: str) -> Any:
    """One element of a multi-valued `attr` (or the value of a single-valued one)."""
    if attr.type == "complex":
        return coerce_complex(attr, value, label)
    return coerce_simple(attr, value, label)


def coerce(attr: Attribute, value: Any, label: str | None = None) -> Any:
    """The full value of `attr` in canonical form: a list for multi-valued attributes; None when empty."""
    label = label or attr.name
    if not attr.multi_valued:
        return coerce_element(attr, value, label)
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]  # a single object where a list is expected
    out = [c for i, v in enumerate(items) if not is_empty(c := coerce_element(attr, v, f"{label}[{i}]"))]
    return one_primary(out) or None


def one_primary(items: list[Any], keep: Any = None) -> list[Any]:
    """RFC 7643 §2.4: at most one element is primary. `keep` wins; otherwise the first primary one does."""
    primaries = [e for e in items if isinstance(e, dict) and e.get("primary") is True]
    winner = keep if any(keep is e for e in primaries) else primaries[0] if primaries else None
    for e in primaries:
        if e is not winner:
            del e["primary"]  # absent means "not primary"
    return items


def extension_schema(rtype: ResourceType, key: str) -> Schema | None:
    schema = rtype.schema_for(key)
    return schema if schema is not None and schema is not rtype.schema else None


def container_of(ref: AttrRef) -> tuple[str, ...]:
    """Where `ref.attr` lives in a canonical dict: () at the top level, (URN,) inside an extension."""
    return ref.key[: -2 if ref.sub else -1]


def _set(out: dict[str, Any], container: tuple[str, ...], name: str, value: Any) -> None:
    target = out
    for part in container:
        target = target.setdefault(part, {})
    if isinstance(value, dict) and isinstance(target.get(name), dict):
        target[name].update(value)  # `name` and `name.givenName` in one body merge
    else:
        target[name] = value


def normalize(body: Any, rtype: ResourceType = USER_TYPE) -> dict[str, Any]:
    """A POST/PUT body (or a stored dict) → the canonical dict. Unknown attributes are ignored, never an error."""
    if not isinstance(body, dict):
        raise InvalidSyntax("the request body must be a JSON object")
    out: dict[str, Any] = {}
    for key, raw in body.items():
        if not isinstance(key, str) or key.lower() == "schemas":
            continue
        ext = extension_schema(rtype, key)
        if ext is not None:  # {"urn:...:enterprise:2.0:User": {...}}
            if raw is None:
                continue
            if not isinstance(raw, dict):
                raise InvalidValue(f"{ext.id} must be an object")
            for sub_key, sub_raw in raw.items():
                attr = ext.attribute(sub_key) if isinstance(sub_key, str) else None
                if attr is not None and not ignored(attr):
                    value = coerce(attr, sub_raw, f"{ext.id}:{attr.name}")
                    if not is_empty(value):
                        _set(out, (ext.id,), attr.name, value)
            continue
        ref = resolve(rtype, key)  # also `name.givenName` and `urn:...:User:department`
        if ref is None or ignored(ref.attr) or (ref.sub is not None and ignored(ref.sub)):
            continue
        container = container_of(ref)
        if ref.sub is None:
            value = coerce(ref.attr, raw, str(ref))
            if not is_empty(value):
                _set(out, container, ref.attr.name, value)
        elif not ref.attr.multi_valued:
            value = coerce_simple(ref.sub, raw, str(ref))
            if not is_empty(value):
                _set(out, container, ref.attr.name, {ref.sub.name: value})
        # `emails.value` as a body key names no element: ignored
    # Drop extension objects that ended up empty
    for ext in rtype.extensions:
        if ext.id in out and is_empty(out[ext.id]):
            del out[ext.id]
    check_required(out, rtype)
    return out


def check_required(canonical: dict[str, Any], rtype: ResourceType = USER_TYPE) -> None:
    for attr in rtype.schema.attributes:
        if attr.required and not ignored(attr):
            value = canonical.get(attr.name)
            if is_empty(value) or (isinstance(value, str) and not value.strip()):
                raise InvalidValue(f"{attr.name} is required")


def present_schemas(canonical: dict[str, Any], rtype: ResourceType = USER_TYPE) -> list[str]:
    """The `schemas` of a rendered resource: the core schema plus each extension it has values for."""
    return [rtype.schema.id, *(e.id for e in rtype.extensions if not is_empty(canonical.get(e.id)))]


# --- projection (RFC 7644 §3.9) -------------------------------------------------------------------------------

# A selection: (container, attribute name) → None for the whole attribute, or a set of lower-cased sub names.
# container is "" for core attributes, the extension URN otherwise; (URN, "") selects a whole extension.
_Selection = dict[tuple[str, str], set[str] | None]


def _selection(names: list[str], rtype: ResourceType) -> _Selection:
    sel: _Selection = {}
    for name in names:
        ext = extension_schema(rtype, name.strip())
        if ext is not None:
            sel[(ext.id, "")] = None
            continue
        ref = resolve(rtype, name.strip())
        if ref is None:
            continue  # unknown names are ignored (RFC 7644 §3.9 does not make them an error)
        slot = (container_of(ref)[0] if container_of(ref) else "", ref.attr.name)
        if ref.sub is None:
            sel[slot] = None
        elif slot not in sel:
            sel[slot] = {ref.sub.name.lower()}
        elif (subs := sel[slot]) is not None:
            subs.add(ref.sub.name.lower())
    return sel


def _always(attr: Attribute) -> bool:
    return attr.returned == "always"


def _pick(attr: Attribute, value: Any, subs: set[str] | None, include: bool) -> Any:
    """Keep (include) or drop (exclude) the sub-attributes `subs` of a complex value."""
    if subs is None:
        return value if include else None
    if isinstance(value, list):
        items = [_pick(attr, v, subs, include) for v in value]
        return [v for v in items if not is_empty(v)]
    if not isinstance(value, dict):
        return value if include else None

    def wanted(key: str) -> bool:
        sub = attr.sub(key)
        return (sub is not None and _always(sub)) or ((key.lower() in subs) == include)

    return {k: v for k, v in value.items() if wanted(k)}


def project(
    resource_json: dict[str, Any],
    attributes: list[str] | None = None,
    excluded: list[str] | None = None,
    rtype: ResourceType = USER_TYPE,
) -> dict[str, Any]:
    """Apply `attributes` / `excludedAttributes` to a fully rendered resource.

    `schemas` and `returned: always` attributes (id) are always kept; `returned: never` ones are always dropped;
    `returned: request` ones only come back when named. `attributes` wins when both are given.
    """
    if not attributes and not excluded and "password" not in resource_json:
        return resource_json  # the common case: nothing to select, no `returned: never` attribute present
    include = bool(attributes)
    sel = _selection(list(attributes or excluded or []), rtype)

    def keep(container: str, attr: Attribute | None, value: Any) -> Any:
        if attr is None:  # something we don't define: only kept when nothing was selected
            return None if include else value
        if attr.returned == "never":
            return None
        if _always(attr):
            return value
        slot = (container, attr.name)
        if slot in sel:
            return _pick(attr, value, sel[slot], include)
        if include:
            return None
        return None if attr.returned == "request" else value

    out: dict[str, Any] = {}
    for key, value in resource_json.items():
        if key == "schemas":
            out[key] = value
            continue
        ext = extension_schema(rtype, key)
        if ext is not None and isinstance(value, dict):
            if (ext.id, "") in sel:  # the whole extension was named
                picked = value if include else {}
            else:
                picked = {k: v for k, raw in value.items() if not is_empty(v := keep(ext.id, ext.attribute(k), raw))}
            if picked:
                out[key] = picked
            continue
        attr = rtype.schema.attribute(key) or next((a for a in COMMON if a.name.lower() == key.lower()), None)
        picked_value = keep("", attr, value)
        if not is_empty(picked_value):
            out[key] = picked_value
    if isinstance(out.get("schemas"), list):
        # an extension projected away leaves the schemas list
        out["schemas"] = [s for s in out["schemas"] if extension_schema(rtype, s) is None or s in out]
    return out
