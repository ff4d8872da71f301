"""Reading a BulkRequest and planning its order (service/domain/bulk.py): no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from service.domain import bulk
from service.domain.errors import Conflict, InvalidSyntax, InvalidValue, PayloadTooLarge


def request(*ops: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"schemas": [bulk.BULK_REQUEST], "Operations": list(ops), **extra}


def user(bulk_id: str, **data: Any) -> dict[str, Any]:
    return {"method": "POST", "path": "/Users", "bulkId": bulk_id, "data": {"userName": bulk_id, **data}}


def group(bulk_id: str, *members: str) -> dict[str, Any]:
    data = {"displayName": bulk_id, "members": [{"value": f"bulkId:{m}"} for m in members]}
    return {"method": "POST", "path": "/Groups", "bulkId": bulk_id, "data": data}


def planned(body: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    ops = bulk.plan(bulk.read(body, 1000, 1 << 20).operations)
    return [(op.bulk_id, type(op.error).__name__ if op.error else None) for op in ops]


def test_request_order_with_references_first() -> None:
    assert planned(request(group("g", "u1", "u2"), user("u1"), user("u2"), user("u3"))) == [
        ("u1", None),
        ("u2", None),
        ("g", None),
        ("u3", None),
    ]


def test_cycles_fail_and_the_rest_runs() -> None:
    assert planned(request(group("a", "b"), group("b", "a"), group("self", "self"), user("ok"))) == [
        ("b", "Conflict"),
        ("a", "Conflict"),
        ("self", "Conflict"),
        ("ok", None),
    ]


def test_a_chain_of_a_thousand_references_does_not_recurse() -> None:
    ops = [user("u0")] + [group(f"g{i}", f"u{i}" if i == 0 else f"g{i - 1}") for i in range(999)]
    order = planned(request(*reversed(ops)))
    assert order[0] == ("u0", None) and order[-1] == ("g998", None) and len(order) == 1000


def test_malformed_operations_fail_alone() -> None:
    ops = planned(
        request(
            {"method": "GET", "path": "/Users"},
            {"method": "PUT", "path": "/Users"},
            {"method": "POST", "path": "/Users/1", "data": {}},
            {"method": "PATCH", "path": "/Users/1"},
            user("dup"),
            user("dup"),
            "not an object",
        )
    )
    assert [e for _, e in ops] == [
        "InvalidSyntax",
        "InvalidValue",
        "InvalidValue",
        "InvalidSyntax",
        None,
        "InvalidValue",
        "InvalidSyntax",
    ]


def test_request_level_errors() -> None:
    with pytest.raises(PayloadTooLarge, match="maxOperations is 2"):
        bulk.read(request(user("a"), user("b"), user("c")), 2, 1024)
    with pytest.raises(InvalidSyntax):
        bulk.read(request(), 10, 1024)
    with pytest.raises(InvalidSyntax):
        bulk.read({"schemas": ["urn:x"], "Operations": [user("a")]}, 10, 1024)
    with pytest.raises(InvalidValue):
        bulk.read(request(user("a"), failOnErrors=0), 10, 1024)


def test_resolve_replaces_references_anywhere() -> None:
    data = {"members": [{"value": "bulkId:a"}], "x": {"y": ["bulkId:a", "keep"]}}
    assert bulk.resolve(data, {"a": "id-a"}, {}) == {"members": [{"value": "id-a"}], "x": {"y": ["id-a", "keep"]}}
    with pytest.raises(Conflict, match="failed"):
        bulk.resolve("bulkId:b", {}, {"b": "400: bad"})
    with pytest.raises(InvalidValue, match="declares"):
        bulk.resolve("bulkId:c", {}, {})
