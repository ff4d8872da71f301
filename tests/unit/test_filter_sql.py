"""Filter → SQL compilation: values only ever travel as parameters, with explicit casts."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from service.domain.errors import InvalidFilter, InvalidValue
from service.domain.filter import Compare, parse_filter
from service.domain.schema import USER_SCHEMA, USER_TYPE, Attribute, AttrRef, resolve
from service.store.filter_sql import USER_COLUMNS, Column, order_sql, resource_columns, to_sql

INJECTION = "x'); drop table users; --"
UUID = "2819c223-7f76-453a-919d-413861904646"


def compile_(text: str, offset: int = 0) -> tuple[str, list[object]]:
    params: list[object] = [f"p{i}" for i in range(offset)]
    sql = to_sql(parse_filter(text), params)
    return sql, params[offset:]


def placeholders(sql: str) -> list[int]:
    return [int(n) for n in re.findall(r"\$(\d+)::", sql)]


@pytest.mark.parametrize(
    "text",
    [
        f'userName eq "{INJECTION}"',
        f'displayName co "{INJECTION}"',
        f'name.familyName sw "{INJECTION}"',
        f'emails[type eq "{INJECTION}"].value ew "{INJECTION}"',
        f'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department gt "{INJECTION}"',
        f'externalId ne "{INJECTION}"',
        f'id eq "{INJECTION}"',
        f'id co "{INJECTION}"',
        'userName eq "%_\\\\$1 {}"',
    ],
)
def test_values_never_in_sql(text: str) -> None:
    sql, params = compile_(text, offset=2)
    assert "drop" not in sql and "%" not in sql and "$1 " not in sql
    for value in params:
        assert isinstance(value, str) and value not in sql


def test_placeholders_continue_after_existing_params() -> None:
    sql, params = compile_('userName eq "a" or (title co "b" and meta.created gt "2020-01-01T00:00:00Z")', offset=3)
    assert placeholders(sql) == [4, 5, 6] and len(params) == 3


def test_userName_uses_the_lower_index() -> None:
    sql, params = compile_('UserName eq "A@B.COM"')
    assert sql == "(lower(user_name) = lower($1::text))" and params == ["A@B.COM"]


def test_externalId_is_case_exact_column() -> None:
    sql, params = compile_('externalId eq "abc"')
    assert sql == "(external_id = $1::text)" and params == ["abc"]


def test_id_compares_as_uuid_or_not_at_all() -> None:
    sql, params = compile_(f'id eq "{UUID.upper()}"')
    assert sql == "(id = $1::uuid)" and params == [uuid.UUID(UUID)]
    sql, params = compile_('id eq "not-a-uuid"')
    assert sql == "FALSE" and params == []
    sql, params = compile_('id ne "not-a-uuid"')
    assert sql == "(NOT COALESCE(FALSE, FALSE))"
    sql, params = compile_('id sw "2819"')
    assert "id::text" in sql and params == ["2819"]


@pytest.mark.parametrize(
    ("text", "cast", "param"),
    [
        ("active eq true", "boolean", True),
        ('active eq "False"', "boolean", False),
        ("emails[primary eq true]", "boolean", True),
        ('meta.lastModified gt "2011-05-13T04:42:34Z"', "timestamptz", datetime(2011, 5, 13, 4, 42, 34, tzinfo=UTC)),
        ('meta.created le "2011-05-13"', "timestamptz", datetime(2011, 5, 13, tzinfo=UTC)),
        ('displayName eq "x"', "text", "x"),
    ],
)
def test_param_types(text: str, cast: str, param: object) -> None:
    sql, params = compile_(text)
    assert f"$1::{cast}" in sql and params == [param]
    assert type(params[0]) is type(param)


def test_columns() -> None:
    assert compile_("active eq false")[0] == "(active = $1::boolean)"
    assert compile_('meta.created lt "2020-01-01T00:00:00Z"')[0] == "(created_at < $1::timestamptz)"
    assert compile_('meta.lastModified ge "2020-01-01T00:00:00Z"')[0] == "(updated_at >= $1::timestamptz)"
    assert compile_('meta.resourceType eq "User"')[0] == "('User'::text = $1::text)"


def test_json_paths_and_extension_keys() -> None:
    sql, _ = compile_('name.givenName eq "x"')
    assert sql == "(lower(resource -> 'name' ->> 'givenName') = lower($1::text))"
    sql, _ = compile_('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "x"')
    assert "resource -> 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User' ->> 'department'" in sql


def test_multi_valued_uses_exists() -> None:
    sql, params = compile_('emails[type eq "work"].value ew "x"')
    assert sql.startswith("EXISTS (SELECT 1 FROM jsonb_array_elements(CASE jsonb_typeof(resource -> 'emails')")
    assert "e.v ->> 'type'" in sql and "e.v ->> 'value'" in sql and params == ["work", "x"]
    sql, _ = compile_('emails co "@x"')
    assert "EXISTS" in sql and "strpos(lower(e.v ->> 'value'), lower($1::text)) > 0" in sql


def test_an_email_value_lookup_uses_the_indexed_expression_in_every_form() -> None:
    indexed = "(scim_emails(resource) @> ARRAY[lower($1::text)])"
    assert compile_('emails.value eq "X@Y"') == (indexed, ["X@Y"])
    assert compile_('emails[value eq "X@Y"]') == (indexed, ["X@Y"])
    sql, params = compile_('emails[type eq "work" and value eq "X@Y"]')  # the index first, then the element check
    assert sql.startswith(f"({indexed} AND EXISTS (SELECT 1 FROM jsonb_array_elements(") and params == [
        "X@Y",
        "work",
        "X@Y",
    ]
    sql, _ = compile_('emails[type eq "work"].value eq "X@Y"')
    assert sql.startswith(f"({indexed} AND EXISTS")
    for unindexed in ('emails[value eq "x" or type eq "work"]', 'emails[value co "x"]', 'emails[not (value eq "x")]'):
        assert "scim_emails" not in compile_(unindexed)[0], unindexed


def test_string_operators_avoid_like() -> None:
    for op in ("co", "sw", "ew"):
        sql, _ = compile_(f'displayName {op} "a%"')
        assert "LIKE" not in sql.upper()
    assert compile_('externalId sw "A"')[0] == "starts_with(external_id, $1::text)"
    assert compile_('externalId ew "A"')[0] == "(right(external_id, char_length($1::text)) = $1::text)"


def test_negation_is_null_safe() -> None:
    assert compile_('title ne "x"')[0] == "(NOT COALESCE((lower(resource ->> 'title') = lower($1::text)), FALSE))"
    sql, _ = compile_('not (title eq "x" or nickName pr)')
    assert sql.startswith("(NOT COALESCE(((lower(")
    assert compile_("title eq null")[0].startswith("(NOT COALESCE(resource -> 'title' NOT IN (")


def test_type_mismatches_raise_invalid_filter() -> None:
    active = resolve(USER_TYPE, "active")
    assert active is not None
    for expr in (Compare(active, "gt", True), Compare(active, "eq", "maybe"), Compare(active, "eq", 1)):
        with pytest.raises(InvalidFilter):
            to_sql(expr, [])
    created = resolve(USER_TYPE, "meta.created")
    assert created is not None
    with pytest.raises(InvalidFilter, match="dateTime"):
        to_sql(Compare(created, "gt", "2011-13-45"), [])


def test_numbers_compare_as_numeric() -> None:
    ref = AttrRef(USER_SCHEMA, Attribute("level", type="integer"))
    params: list[object] = []
    sql = to_sql(Compare(ref, "ge", 3), params)
    assert (
        sql
        == "((CASE WHEN jsonb_typeof(resource -> 'level') = 'number' THEN (resource -> 'level')::numeric END)"
        " >= $1::numeric)"
        and params == [Decimal(3)]
    )


def test_unsafe_keys_are_refused() -> None:
    ref = AttrRef(USER_SCHEMA, Attribute("x' OR 1=1 --"))
    with pytest.raises(ValueError, match="unsafe"):
        to_sql(Compare(ref, "eq", "v"), [])


def test_group_columns_reuse() -> None:
    groups = resource_columns("Group", {("displayName",): Column("display_name")})
    ref = AttrRef("urn:ietf:params:scim:schemas:core:2.0:Group", Attribute("displayName"))
    params: list[object] = ["tenant"]
    assert to_sql(Compare(ref, "eq", "Group Name"), params, groups) == "(lower(display_name) = lower($2::text))"
    assert order_sql(ref, groups) == "lower(display_name)"


def test_order_sql() -> None:
    def order(name: str) -> str:
        ref = resolve(USER_TYPE, name)
        assert ref is not None
        return order_sql(ref, USER_COLUMNS)

    assert order("userName") == "lower(user_name)"
    assert order("externalId") == "external_id"
    assert order("id") == "id"
    assert order("meta.lastModified") == "updated_at"
    assert order("name.familyName") == "lower(resource -> 'name' ->> 'familyName')"
    assert "'primary' = 'true'::jsonb" in order("emails")
    assert order("emails").startswith("COALESCE((SELECT lower(e.v ->> 'value')")
    with pytest.raises(InvalidValue):
        order("name")
    with pytest.raises(InvalidValue):
        order("password")
