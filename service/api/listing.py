"""List and search requests (RFC 7644 §3.4.2, §3.4.3): filter, sort, paging, projection, ListResponse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from service.api.responses import ScimResponse
from service.domain.errors import InvalidFilter, InvalidSyntax, InvalidValue
from service.domain.filter import Expr, parse_filter
from service.domain.resource import project
from service.domain.schema import LIST_RESPONSE, SEARCH_REQUEST, USER_TYPE, AttrRef, ResourceType, resolve

MAX_START_INDEX = 2**63  # OFFSET startIndex - 1 must fit a bigint


@dataclass(frozen=True)
class ListQuery:
    filter: Expr | None
    sort: tuple[AttrRef, bool] | None  # (attribute, descending)
    start_index: int
    count: int
    attributes: list[str] | None
    excluded: list[str] | None

    @classmethod
    def from_params(cls, params: dict[str, str], max_count: int, rtype: ResourceType = USER_TYPE) -> ListQuery:
        lowered = {k.lower(): v for k, v in params.items()}
        attributes, excluded = cls.projection(params)
        return cls._build(lowered, attributes, excluded, max_count, rtype)

    @classmethod
    def from_body(cls, body: dict[str, Any], max_count: int, rtype: ResourceType = USER_TYPE) -> ListQuery:
        lowered = {k.lower(): v for k, v in body.items()}
        schemas = lowered.get("schemas")
        if schemas is not None and SEARCH_REQUEST not in schemas:
            raise InvalidSyntax(f"A search request must have schemas [{SEARCH_REQUEST!r}]")
        return cls._build(
            lowered, _names(lowered.get("attributes")), _names(lowered.get("excludedattributes")), max_count, rtype
        )

    @classmethod
    def _build(
        cls,
        raw: dict[str, Any],
        attributes: list[str] | None,
        excluded: list[str] | None,
        max_count: int,
        rtype: ResourceType,
    ) -> ListQuery:
        text = raw.get("filter")
        if text is not None and not isinstance(text, str):
            raise InvalidFilter("filter must be a string")
        sort = None
        if raw.get("sortby"):
            ref = resolve(rtype, str(raw["sortby"]))
            if ref is None:
                raise InvalidValue(f"sortBy names an unknown attribute: {raw['sortby']}")
            order = str(raw.get("sortorder") or "ascending").lower()
            if order not in ("ascending", "descending"):
                raise InvalidValue("sortOrder must be ascending or descending")
            sort = (ref, order == "descending")
        # RFC 7644 §3.4.2.4 interprets paging values rather than refusing them: startIndex < 1 means 1, a
        # negative count means 0, and we cap count. A start past the end is an empty page, so a start beyond
        # what Postgres can OFFSET (64 bits) is clamped: same answer, no overflow.
        start = min(max(1, _integer(raw.get("startindex"), "startIndex", 1)), MAX_START_INDEX)
        count = min(max(0, _integer(raw.get("count"), "count", max_count)), max_count)
        expr = parse_filter(text, rtype) if text and text.strip() else None
        return cls(expr, sort, start, count, attributes, excluded)

    @staticmethod
    def projection(params: dict[str, str]) -> tuple[list[str] | None, list[str] | None]:
        lowered = {k.lower(): v for k, v in params.items()}
        return _names(lowered.get("attributes")), _names(lowered.get("excludedattributes"))


def _names(value: Any) -> list[str] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise InvalidValue("attributes and excludedAttributes must be attribute names")
    return [item.strip() for item in items if item.strip()] or None


def _integer(value: Any, name: str, default: int) -> int:
    """A paging number from the query string or a search body: any size (the caller clamps), never 1.5."""
    if value is None or value == "":
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # a search body may carry 1e300: finite (orjson refuses infinities), integral
    if isinstance(value, str):
        try:
            return int(value)  # ValueError too for more digits than Python converts (4,300)
        except ValueError:
            pass
    raise InvalidValue(f"{name} must be an integer")


def list_response(query: ListQuery, total: int, resources: list[dict[str, Any]], rtype: ResourceType) -> Response:
    return ScimResponse(
        {
            "schemas": [LIST_RESPONSE],
            "totalResults": total,
            "startIndex": query.start_index,
            "itemsPerPage": len(resources),
            "Resources": [project(r, query.attributes, query.excluded, rtype) for r in resources],
        }
    )
