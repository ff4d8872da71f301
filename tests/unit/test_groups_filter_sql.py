"""Group filters → SQL: members live in group_members, so filters on them are EXISTS over that table (Relation)."""

from __future__ import annotations

import uuid

import pytest

from service.domain.errors import InvalidFilter, InvalidValue
from service.domain.filter import parse_filter
from service.domain.schema import GROUP_TYPE, resolve
from service.store.filter_sql import GROUP_COLUMNS, order_sql, to_sql

A = "2819c223-7f76-453a-919d-413861904646"
EXISTS = "EXISTS (SELECT 1 FROM group_members AS m WHERE m.tenant_id = groups.tenant_id AND m.group_id = groups.id"


def compile_(text: str) -> tuple[str, list[object]]:
    params: list[object] = ["tenant"]
    return to_sql(parse_filter(text, GROUP_TYPE), params, GROUP_COLUMNS), params[1:]


def test_displayName_uses_the_lower_index() -> None:
    assert compile_('DisplayName eq "Floor 3"') == ("(lower(display_name) = lower($2::text))", ["Floor 3"])


@pytest.mark.parametrize("text", [f'members[value eq "{A}"]', f'members.value eq "{A}"', f'members eq "{A}"'])
def test_members_value_is_an_exists_over_the_membership_table(text: str) -> None:
    assert compile_(text) == (f"{EXISTS} AND (m.user_id = $2::uuid))", [uuid.UUID(A)])


def test_other_member_filters() -> None:
    assert compile_("members pr") == (f"{EXISTS})", [])
    assert compile_('members[value eq "not-a-uuid"]') == (f"{EXISTS} AND FALSE)", [])
    sql, params = compile_(f'members[value eq "{A}" or value sw "28"] and not (members.value eq "{A}")')
    assert sql.count("EXISTS") == 2 and params == [uuid.UUID(A), "28", uuid.UUID(A)]
    assert "lower(m.user_id::text)" in sql


@pytest.mark.parametrize("text", ['members[display eq "x"]', 'members.type eq "User"', "members[$ref pr]"])
def test_sub_attributes_not_stored_cannot_be_filtered_on(text: str) -> None:
    with pytest.raises(InvalidFilter):
        compile_(text)


def test_members_cannot_be_sorted_on() -> None:
    with pytest.raises(InvalidValue):
        order_sql(resolve(GROUP_TYPE, "members.value"), GROUP_COLUMNS)  # type: ignore[arg-type]
    assert order_sql(resolve(GROUP_TYPE, "displayName"), GROUP_COLUMNS) == "lower(display_name)"  # type: ignore[arg-type]


def test_common_columns() -> None:
    assert compile_('externalId eq "e"')[0] == "(external_id = $2::text)"
    assert compile_('meta.resourceType eq "Group"')[0] == "('Group'::text = $2::text)"
