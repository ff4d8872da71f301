"""Compile a filter AST (service/domain/filter.py) to a parameterised PostgreSQL boolean expression.

Pure string building (no asyncpg import). Values NEVER enter the SQL text: each becomes a `$n` placeholder with an
explicit cast (asyncpg must infer its type) and is appended to `params`. Attribute keys do appear as SQL string
literals (`resource -> 'name' ->> 'givenName'`) so that expression indexes can match; they come from our schema,
never from the client, and `_lit` still refuses anything outside a strict character set.

Semantics mirror `filter.matches` (two-valued logic): a predicate on a missing attribute is false, `ne x` is
`NOT COALESCE(eq x, FALSE)` (true when the attribute is missing), `not (...)` likewise wraps in COALESCE so SQL NULL
never leaks; `eq null` is "not present". Multi-valued attributes match if any element does (EXISTS over
jsonb_array_elements). Case-insensitive strings use lower() on both sides; non-ASCII folding follows the
database's LC_CTYPE. Ordering comparisons on strings use COLLATE "C" (code-point order, as in Python).
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from service.domain.errors import InvalidFilter, InvalidValue
from service.domain.filter import (
    And,
    Compare,
    Expr,
    Not,
    Or,
    Present,
    Value,
    ValuePath,
    check_compare,
    comparable,
    parse_datetime,
)
from service.domain.schema import AttrRef

_SQL_OP = {"eq": "=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_STRING_TYPES = frozenset({"string", "reference", "binary"})
_SAFE_KEY = re.compile(r"[A-Za-z0-9_$:.-]+")


@dataclass(frozen=True)
class Column:
    """A real column (or SQL constant) holding an attribute; its SQL type follows the attribute type."""

    sql: str
    is_uuid: bool = False  # `eq` compares as uuid; other operators use `sql::text`


@dataclass(frozen=True)
class Relation:
    """A multi-valued complex attribute kept in a table of its own, one row per element (group members): a filter
    on it is an EXISTS over `table` whose rows `correlation` ties to the resource row, with the sub-attributes
    read from `columns` (sub-attribute name → column). Sub-attributes not in `columns` can't be filtered on."""

    table: str  # e.g. "group_members AS m"
    correlation: str  # e.g. "m.tenant_id = groups.tenant_id AND m.group_id = groups.id"
    columns: Mapping[str, Column]

    def exists(self, condition: str | None) -> str:
        where = self.correlation if condition is None else f"{self.correlation} AND {condition}"
        return f"EXISTS (SELECT 1 FROM {self.table} WHERE {where})"


@dataclass(frozen=True)
class Columns:
    """How one table stores a resource: the jsonb column with all canonical attributes, the attributes that
    also live in dedicated columns (keyed by `AttrRef.key`), which are used instead so their indexes apply, and
    the multi-valued attributes that live in tables of their own (`related`, keyed by the attribute's key)."""

    resource: str = "resource"
    special: Mapping[tuple[str, ...], Column] = field(default_factory=dict)
    related: Mapping[tuple[str, ...], Relation] = field(default_factory=dict)
    # Case-insensitive sub-attributes of multi-valued attributes (`emails.value`) with an indexed SQL expression
    # holding their lower-cased values as text[]: `eq` becomes `expr @> ARRAY[lower(x)]`, which the index serves.
    lowered_arrays: Mapping[tuple[str, ...], str] = field(default_factory=dict)


def resource_columns(
    resource_type: str,
    extra: Mapping[tuple[str, ...], Column],
    related: Mapping[tuple[str, ...], Relation] | None = None,
) -> Columns:
    """The columns every resource table has (id, external_id, created_at, updated_at) plus `extra` and `related`."""
    if not _SAFE_KEY.fullmatch(resource_type):
        raise ValueError(f"unsafe resource type name {resource_type!r}")
    common = {
        ("id",): Column("id", is_uuid=True),
        ("externalId",): Column("external_id"),
        ("meta", "created"): Column("created_at"),
        ("meta", "lastModified"): Column("updated_at"),
        ("meta", "resourceType"): Column(f"'{resource_type}'::text"),
    }
    return Columns("resource", {**common, **extra}, dict(related or {}))


USER_COLUMNS = dataclasses.replace(
    resource_columns("User", {("userName",): Column("user_name"), ("active",): Column("active")}),
    lowered_arrays={("emails", "value"): "scim_emails(resource)"},  # GIN index, migration 0012
)
GROUP_COLUMNS = resource_columns(
    "Group",
    {("displayName",): Column("display_name")},
    {
        ("members",): Relation(
            "group_members AS m",
            "m.tenant_id = groups.tenant_id AND m.group_id = groups.id",
            {"value": Column("m.user_id", is_uuid=True)},
        )
    },
)


def _lit(key: str) -> str:
    """A schema attribute name as an SQL string literal."""
    if not _SAFE_KEY.fullmatch(key):
        raise ValueError(f"unsafe attribute key {key!r}")
    return f"'{key}'"


def _array(j: str) -> str:
    return f"CASE jsonb_typeof({j}) WHEN 'array' THEN {j} ELSE '[]'::jsonb END"


@dataclass(frozen=True)
class _Operand:
    """Where a scalar is read from: a column, or `base` (a jsonb expression) followed by `keys`."""

    base: str
    keys: tuple[str, ...] = ()
    column: Column | None = None

    def jsonb(self) -> str:
        return "".join([self.base, *(f" -> {_lit(k)}" for k in self.keys)])

    def text(self) -> str:
        if self.column:
            return f"{self.column.sql}::text" if self.column.is_uuid else self.column.sql
        if not self.keys:
            return f"({self.base} #>> '{{}}')"
        *head, last = self.keys
        return "".join([self.base, *(f" -> {_lit(k)}" for k in head), f" ->> {_lit(last)}"])

    def typed(self, kind: str) -> str:
        """The value as SQL type `kind` (boolean, numeric, timestamptz); NULL when the JSON holds another type."""
        if self.column:
            return self.column.sql
        if kind == "timestamptz":
            return f"({self.text()})::timestamptz"
        json_type = "boolean" if kind == "boolean" else "number"
        j = self.jsonb()
        return f"(CASE WHEN jsonb_typeof({j}) = '{json_type}' THEN ({j})::{kind} END)"


def _sql_kind(attr_type: str) -> str:
    return {"boolean": "boolean", "dateTime": "timestamptz", "integer": "numeric", "decimal": "numeric"}.get(
        attr_type, "text"
    )


class _Compiler:
    def __init__(self, params: list[object], columns: Columns) -> None:
        self.params, self.columns = params, columns

    def param(self, value: object, cast: str) -> str:
        self.params.append(value)
        return f"${len(self.params)}::{cast}"

    def expr(self, e: Expr, scope: str | Relation | None) -> str:
        """`scope` is None at the resource level, else the jsonb expression of the current valuePath element,
        or the Relation whose row is the current element."""
        if isinstance(e, And):
            return f"({self.expr(e.left, scope)} AND {self.expr(e.right, scope)})"
        if isinstance(e, Or):
            return f"({self.expr(e.left, scope)} OR {self.expr(e.right, scope)})"
        if isinstance(e, Not):
            return f"(NOT COALESCE({self.expr(e.expr, scope)}, FALSE))"
        if isinstance(e, ValuePath):
            return self.value_path(e, scope)
        if isinstance(e, Present):
            return self.leaf(e.attr, scope, lambda o: self.present(o, e.attr))
        ref = comparable(e.attr)
        value = check_compare(ref, e.op, e.value)  # hand-built ASTs get the same type checks as parsed ones
        if value is None:
            present = self.leaf(ref, scope, lambda o: self.present(o, ref))
            return present if e.op == "ne" else f"(NOT {present})"
        indexed = self.indexed(e) if scope is None else None
        if indexed is not None:
            return indexed  # same matches as the EXISTS below
        if e.op == "ne":
            eq = self.leaf(ref, scope, lambda o: self.compare(o, ref, "eq", value))
            return f"(NOT COALESCE({eq}, FALSE))"
        return self.leaf(ref, scope, lambda o: self.compare(o, ref, e.op, value))

    def indexed(self, e: Compare) -> str | None:
        """`emails.value eq "x"` as `scim_emails(resource) @> ARRAY[lower(x)]`, which the GIN index serves: true
        exactly when some element's `value`, lower-cased, is lower(x). None for any other comparison."""
        ref = comparable(e.attr)
        indexed = self.columns.lowered_arrays.get(ref.key)
        if indexed is None or e.op != "eq" or ref.target.case_exact:
            return None
        value = check_compare(ref, e.op, e.value)
        if not isinstance(value, str):
            return None
        return f"({indexed} @> ARRAY[lower({self.param(value, 'text')})])"

    def leaf(self, ref: AttrRef, scope: str | Relation | None, build: Callable[[_Operand], str]) -> str:
        """Apply `build` to where `ref` is stored; multi-valued attributes become EXISTS over their elements."""
        if isinstance(scope, Relation):
            return build(self.related_column(scope, ref))
        if scope is not None:
            return build(_Operand(scope, (ref.sub.name,) if ref.sub else ()))
        column = self.columns.special.get(ref.key)
        if column is not None:
            return build(_Operand(column.sql, column=column))
        relation = self.columns.related.get(AttrRef(ref.schema, ref.attr).key)
        if relation is not None:  # `members pr` is "has a row"; `members.value eq x` "has a row with value x"
            return relation.exists(None if ref.sub is None else build(self.related_column(relation, ref)))
        if not ref.attr.multi_valued:
            return build(_Operand(self.columns.resource, ref.key))
        array = _Operand(self.columns.resource, ref.key[:-1] if ref.sub else ref.key).jsonb()
        inner = build(_Operand("e.v", (ref.sub.name,) if ref.sub else ()))
        return f"EXISTS (SELECT 1 FROM jsonb_array_elements({_array(array)}) AS e(v) WHERE {inner})"

    @staticmethod
    def related_column(relation: Relation, ref: AttrRef) -> _Operand:
        column = relation.columns.get(ref.sub.name) if ref.sub else None
        if column is None:
            raise InvalidFilter(f"Invalid filter: '{ref}' cannot be filtered on")
        return _Operand(column.sql, column=column)

    def value_path(self, e: ValuePath, scope: str | Relation | None) -> str:
        if scope is not None:
            raise InvalidFilter("Invalid filter: a valuePath cannot be nested in another")
        relation = self.columns.related.get(e.attr.key)
        if relation is not None:
            return relation.exists(self.expr(e.filter, relation))
        j = _Operand(self.columns.resource, e.attr.key).jsonb()
        if not e.attr.attr.multi_valued:  # `manager[value eq "x"]`: the object itself is the element
            return f"(jsonb_typeof({j}) = 'object' AND {self.expr(e.filter, j)})"
        # `emails[value eq "x"]` is `emails.value eq "x"`: the indexed test alone (a non-object element has no
        # `value`). Combined by `and` with more (`emails[type eq "work" and value eq "x"]`) the indexed test is a
        # necessary condition, put first so that the index narrows the rows the EXISTS then checks.
        conditions = _conjuncts(e.filter)
        hints = [hint for c in conditions if isinstance(c, Compare) and (hint := self.indexed(c)) is not None]
        if hints and len(conditions) == 1:
            return hints[0]
        inner = self.expr(e.filter, "e.v")
        exists = (
            f"EXISTS (SELECT 1 FROM jsonb_array_elements({_array(j)}) AS e(v) "
            f"WHERE jsonb_typeof(e.v) = 'object' AND {inner})"
        )
        return f"({' AND '.join([*hints, exists])})" if hints else exists

    def present(self, o: _Operand, ref: AttrRef) -> str:
        """Never NULL: false for a missing attribute, null, "", [] and {}."""
        if o.column is None:
            j = o.jsonb()
            return f"COALESCE({j} NOT IN ('null'::jsonb, '\"\"'::jsonb, '[]'::jsonb, '{{}}'::jsonb), FALSE)"
        if _sql_kind(ref.target.type) == "text" and not o.column.is_uuid:
            return f"COALESCE({o.column.sql} <> '', FALSE)"
        return f"({o.column.sql} IS NOT NULL)"

    def compare(self, o: _Operand, ref: AttrRef, op: str, value: Value) -> str:
        attr = ref.target
        kind = _sql_kind(attr.type)
        if kind == "boolean":
            if o.column is None:  # jsonb equality: a stored "true" string is not true
                return f"({o.jsonb()} = to_jsonb({self.param(value, 'boolean')}))"
            return f"({o.column.sql} = {self.param(value, 'boolean')})"
        if kind == "timestamptz":
            assert isinstance(value, str)
            return f"({o.typed(kind)} {_SQL_OP[op]} {self.param(parse_datetime(value), 'timestamptz')})"
        if kind == "numeric":
            number = Decimal(str(value))
            return f"({o.typed(kind)} {_SQL_OP[op]} {self.param(number, 'numeric')})"
        assert isinstance(value, str)
        if o.column is not None and o.column.is_uuid and op == "eq":
            try:  # the id column is uuid: compare as uuid (index) or not at all, never a cast error
                return f"({o.column.sql} = {self.param(uuid.UUID(value), 'uuid')})"
            except ValueError:
                return "FALSE"
        x, p = o.text(), self.param(value, "text")
        if not attr.case_exact:
            x, p = f"lower({x})", f"lower({p})"
        if op == "co":
            return f"(strpos({x}, {p}) > 0)"
        if op == "sw":
            return f"starts_with({x}, {p})"
        if op == "ew":
            return f"(right({x}, char_length({p})) = {p})"
        if op == "eq":
            return f"({x} = {p})"
        return f'(({x}) COLLATE "C" {_SQL_OP[op]} {p})'


def _conjuncts(e: Expr) -> list[Expr]:
    """The terms of `a and b and ...` (just `e` when it is no `and`): each must hold when `e` does."""
    if isinstance(e, And):
        return [*_conjuncts(e.left), *_conjuncts(e.right)]
    return [e]


def to_sql(expr: Expr, params: list[object], columns: Columns = USER_COLUMNS) -> str:
    """A boolean SQL expression for `expr`; values are appended to `params` ($n continues after existing ones).

    Raises InvalidFilter for a type mismatch (`active gt true`) or an invalid dateTime.
    """
    return _Compiler(params, columns).expr(expr, None)


def order_sql(ref: AttrRef, columns: Columns = USER_COLUMNS) -> str:
    """An ORDER BY expression for `sortBy` (RFC 7644 §3.4.2.3): case-insensitive unless caseExact; a multi-valued
    attribute sorts by its primary value, else its first. The caller appends ASC/DESC NULLS LAST and a tie-breaker
    (e.g. seq) so that paging stays stable. Raises InvalidValue for a complex attribute without `value`."""
    try:
        ref = comparable(ref)
    except InvalidFilter:
        raise InvalidValue(f"cannot sort by the complex attribute '{ref}'") from None
    if ref.target.returned == "never" or AttrRef(ref.schema, ref.attr).key in columns.related:
        raise InvalidValue(f"cannot sort by '{ref}'")
    kind = _sql_kind(ref.target.type)

    def scalar(o: _Operand) -> str:
        if kind != "text":
            return o.typed(kind)
        return o.text() if ref.target.case_exact else f"lower({o.text()})"

    column = columns.special.get(ref.key)
    if column is not None:
        return column.sql if column.is_uuid else scalar(_Operand(column.sql, column=column))
    if not ref.attr.multi_valued:
        return scalar(_Operand(columns.resource, ref.key))
    keys = (ref.sub.name,) if ref.sub else ()
    array = _Operand(columns.resource, ref.key[:-1] if ref.sub else ref.key).jsonb()
    primary = (
        f"(SELECT {scalar(_Operand('e.v', keys))} FROM jsonb_array_elements({_array(array)}) AS e(v) "
        "WHERE e.v -> 'primary' = 'true'::jsonb LIMIT 1)"
    )
    return f"COALESCE({primary}, {scalar(_Operand(f'({array} -> 0)', keys))})"
