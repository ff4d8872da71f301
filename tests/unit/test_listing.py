import pytest

from service.api.listing import ListQuery
from service.domain.errors import InvalidFilter, InvalidSyntax, InvalidValue


def test_paging_defaults_and_bounds() -> None:
    query = ListQuery.from_params({}, max_count=100)
    assert (query.start_index, query.count, query.filter, query.sort) == (1, 100, None, None)
    query = ListQuery.from_params({"startIndex": "-3", "count": "100000"}, max_count=100)
    assert (query.start_index, query.count) == (1, 100)  # RFC 7644 §3.4.2.4: below 1 is 1; we cap count
    assert ListQuery.from_params({"count": "-1"}, max_count=100).count == 0


def test_parameter_names_are_case_insensitive() -> None:
    query = ListQuery.from_params(
        {"FILTER": 'userName eq "a"', "SortBy": "name.familyName", "sortorder": "Descending", "ATTRIBUTES": "userName"},
        max_count=10,
    )
    assert query.filter is not None and query.sort is not None and query.sort[1] is True
    assert query.attributes == ["userName"]


def test_a_search_request_body() -> None:
    body = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": 'userName sw "a"',
        "startIndex": 2,
        "count": 5,
        "excludedAttributes": ["emails"],
    }
    query = ListQuery.from_body(body, max_count=10)
    assert (query.start_index, query.count, query.excluded) == (2, 5, ["emails"])
    with pytest.raises(InvalidSyntax):
        ListQuery.from_body({**body, "schemas": ["urn:wrong"]}, max_count=10)


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"count": "ten"}, InvalidValue),
        ({"startIndex": "1.5"}, InvalidValue),
        ({"sortBy": "noSuchThing"}, InvalidValue),
        ({"sortBy": "userName", "sortOrder": "sideways"}, InvalidValue),
        ({"filter": "userName xx 1"}, InvalidFilter),
    ],
)
def test_bad_parameters(params: dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        ListQuery.from_params(params, max_count=10)
