"""RFC 7644 §3.7 Bulk, the pure part: reading a BulkRequest, `bulkId:` references, and the order operations run in.

The operations run in the request's order, except that an operation referring to the `bulkId` of a later one runs
after it (a client may refer forward; §3.7.1 asks servers to try to resolve references). Operations that refer to
each other in a circle can't all run first: each of them fails with 409 (which §3.7.1 allows), and so does, in turn,
every operation that refers to a failed one. Nothing here does I/O; api/bulk.py runs the plan.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from service.domain.errors import Conflict, InvalidSyntax, InvalidValue, PayloadTooLarge, ScimError
from service.domain.patch import MISSING, op_field

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
PREFIX = "bulkId:"
METHODS = ("POST", "PUT", "PATCH", "DELETE")
ENDPOINTS = {"users": "Users", "groups": "Groups"}


@dataclass(frozen=True)
class Operation:
    index: int  # position in the request
    method: str  # POST, PUT, PATCH or DELETE; as sent when `error` is set
    path: str
    bulk_id: str | None
    version: str | None  # If-Match for this operation
    data: Any
    refs: tuple[str, ...] = ()  # the bulkIds it refers to, in its path or data
    error: ScimError | None = None  # found while reading it: reported as its result, never run


@dataclass(frozen=True)
class Request:
    operations: list[Operation]
    fail_on_errors: int | None  # stop after this many errors; None: never stop


def read(body: dict[str, Any], max_operations: int, max_payload: int) -> Request:
    """A BulkRequest body → its operations. Malformed operations are kept with their error (they fail alone)."""
    schemas = op_field(body, "schemas")
    if isinstance(schemas, list) and BULK_REQUEST.lower() not in [str(s).lower() for s in schemas]:
        raise InvalidSyntax(f"schemas must contain {BULK_REQUEST}")
    raw_ops = op_field(body, "Operations")
    if not isinstance(raw_ops, list) or not raw_ops:
        raise InvalidSyntax("Operations must be a non-empty list")
    if len(raw_ops) > max_operations:
        raise PayloadTooLarge(
            f"The bulk request has {len(raw_ops)} operations; maxOperations is {max_operations} "
            f"(and maxPayloadSize {max_payload} bytes)"
        )
    fail_on_errors = op_field(body, "failOnErrors")
    if fail_on_errors is MISSING or fail_on_errors is None:
        fail_on_errors = None
    elif isinstance(fail_on_errors, bool) or not isinstance(fail_on_errors, int) or fail_on_errors < 1:
        raise InvalidValue("failOnErrors must be a positive integer")
    operations = [_operation(i, raw) for i, raw in enumerate(raw_ops)]
    return Request(_unique_bulk_ids(operations), fail_on_errors)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _operation(index: int, raw: Any) -> Operation:
    if not isinstance(raw, dict):
        return Operation(index, "", "", None, None, None, error=InvalidSyntax("an operation must be a JSON object"))
    method = str(_text(op_field(raw, "method")) or "").upper()
    path = _text(op_field(raw, "path")) or ""
    bulk_id, version, data = _text(op_field(raw, "bulkId")), _text(op_field(raw, "version")), op_field(raw, "data")
    data = None if data is MISSING else data
    error: ScimError | None = None
    found = target(path)
    if method not in METHODS:
        error = InvalidSyntax(f"method must be one of {', '.join(METHODS)}, got {op_field(raw, 'method')!r}")
    elif found is None:
        error = InvalidValue(f"path must be /Users, /Groups, /Users/{{id}} or /Groups/{{id}}, got {path!r}")
    elif method == "POST" and found[1] is not None:
        error = InvalidValue(f"POST goes to /Users or /Groups, not {path!r}")
    elif method != "POST" and found[1] is None:
        error = InvalidValue(f"{method} needs the resource's path (/Users/{{id}} or /Groups/{{id}}), got {path!r}")
    elif method != "DELETE" and not isinstance(data, dict):
        error = InvalidSyntax(f"{method} requires a data object")
    elif bulk_id is not None and bulk_id.startswith(PREFIX):
        error = InvalidValue(f"bulkId must be the bare id, without {PREFIX!r}")
    if error is not None:
        return Operation(index, method, path, bulk_id, version, data, error=error)
    refs = tuple(dict.fromkeys(_references(path if method != "POST" else "", data)))
    return Operation(index, method, path, bulk_id, version, data, refs)


def _unique_bulk_ids(operations: list[Operation]) -> list[Operation]:
    seen: dict[str, int] = {}
    out = []
    for op in operations:
        if op.error is None and op.bulk_id is not None and op.bulk_id in seen:
            error = InvalidValue(f"bulkId {op.bulk_id!r} is already used by Operations[{seen[op.bulk_id]}]")
            out.append(replace(op, refs=(), error=error))
            continue
        if op.error is None and op.bulk_id is not None:
            seen[op.bulk_id] = op.index
        out.append(op)
    return out


def target(path: str) -> tuple[str, str | None] | None:
    """`/Users` → ("Users", None); `/Groups/abc` → ("Groups", "abc"); anything else None."""
    parts = path.strip("/").split("/")
    endpoint = ENDPOINTS.get(parts[0].lower()) if parts else None
    if endpoint is None or len(parts) > 2 or (len(parts) == 2 and not parts[1]):
        return None
    return endpoint, parts[1] if len(parts) == 2 else None


def _references(path: str, data: Any) -> Iterator[str]:
    """Every `bulkId:x` string in the path's id and anywhere in the data."""
    found = target(path) if path else None
    if found and found[1] and found[1].startswith(PREFIX):
        yield found[1][len(PREFIX) :]
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str) and value.startswith(PREFIX):
            yield value[len(PREFIX) :]
        elif isinstance(value, dict):
            stack.extend(reversed(list(value.values())))
        elif isinstance(value, list):
            stack.extend(reversed(value))


def plan(operations: list[Operation]) -> list[Operation]:
    """The order to run them in: request order, a referenced operation before the one referring to it.

    Operations on a circle of references come back with a Conflict error (they are not run).
    """
    declared = {op.bulk_id: op for op in operations if op.bulk_id is not None and op.error is None}
    done: set[int] = set()
    cyclic: set[int] = set()
    order: list[Operation] = []
    for root in operations:
        if root.index in done:
            continue
        # Iterative depth-first walk (a chain of 1,000 references must not hit the recursion limit).
        stack: list[tuple[Operation, Iterator[str]]] = [(root, iter(root.refs))]
        on_stack = {root.index}
        while stack:
            op, refs = stack[-1]
            ref = next(refs, None)
            if ref is None:
                stack.pop()
                on_stack.discard(op.index)
                done.add(op.index)
                order.append(op)
                continue
            dep = declared.get(ref)
            if dep is None or dep.index in done:
                continue
            if dep.index in on_stack:  # a circle: every operation from `dep` to here is on it
                start = next(i for i, (o, _) in enumerate(stack) if o.index == dep.index)
                cyclic.update(o.index for o, _ in stack[start:])
                continue
            stack.append((dep, iter(dep.refs)))
            on_stack.add(dep.index)
    return [
        replace(
            op,
            error=Conflict(
                f"circular bulkId reference: Operations[{op.index}] refers back to itself "
                f"through bulkId {', '.join(op.refs)}"
            ),
        )
        if op.index in cyclic and op.error is None
        else op
        for op in order
    ]


def resolve(value: Any, ids: dict[str, str], failed: dict[str, str]) -> Any:
    """`value` with each `bulkId:x` replaced by the id that operation created.

    `failed`: bulkId → why its operation failed. A reference to one of those, or to a bulkId no operation
    declares, raises: the referring operation fails, naming the reference.
    """
    if isinstance(value, str) and value.startswith(PREFIX):
        ref = value[len(PREFIX) :]
        if ref in ids:
            return ids[ref]
        if ref in failed:
            raise Conflict(f"bulkId {ref!r} refers to an operation that failed ({failed[ref]})")
        raise InvalidValue(f"no operation of this request declares bulkId {ref!r}")
    if isinstance(value, dict):
        return {k: resolve(v, ids, failed) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, ids, failed) for v in value]
    return value
