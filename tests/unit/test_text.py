"""Which decoded JSON strings Postgres can't store, and the filter parser's view of them."""

from __future__ import annotations

import pytest

from service.domain.errors import InvalidFilter
from service.domain.filter import MAX_LENGTH, Compare, parse_filter
from service.domain.limits import MAX_VALUE_LENGTH
from service.domain.text import first_unstorable, unstorable


def test_nul_and_lone_surrogates_are_unstorable() -> None:
    assert unstorable("plain é 😀") is None
    assert unstorable("a\x00b") and "NUL" in str(unstorable("a\x00b"))
    assert unstorable("\ud800") and "surrogate" in str(unstorable("\udfff x"))


def test_first_unstorable_looks_at_keys_and_nested_values() -> None:
    assert first_unstorable({"a": [1, {"b": "ok"}], "c": None, "d": True}) is None
    assert first_unstorable({"a": [1, {"b": "o\x00k"}]}) is not None
    assert first_unstorable({"k\x00": 1}) is not None
    assert first_unstorable(["\ud800"]) is not None


@pytest.mark.parametrize(
    "text",
    ['userName eq "a\\u0000"', 'userName eq "\\ud800"', 'userName eq "a\x01b"', 'userName eq "a\nb"'],
)
def test_filters_refuse_unstorable_strings_and_raw_control_characters(text: str) -> None:
    with pytest.raises(InvalidFilter):
        parse_filter(text)


def test_a_filter_can_name_the_longest_value_even_fully_escaped() -> None:
    literal = '"' + "\\u0001" * MAX_VALUE_LENGTH + '"'
    assert len(f"userName eq {literal}") <= MAX_LENGTH
    expr = parse_filter(f"userName eq {literal}")
    assert isinstance(expr, Compare) and expr.value == "\x01" * MAX_VALUE_LENGTH
    with pytest.raises(InvalidFilter, match=str(MAX_VALUE_LENGTH)):
        parse_filter(f'userName eq "{"x" * (MAX_VALUE_LENGTH + 1)}"')
