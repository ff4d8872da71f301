from datetime import UTC, datetime

import pytest

from service.domain.errors import PreconditionFailed
from service.domain.versions import check_version, etag, iso


def test_etag_is_weak() -> None:
    assert etag(3) == 'W/"3"'


@pytest.mark.parametrize("if_match", [None, 'W/"3"', '"3"', "*", 'W/"1", W/"3"'])
def test_if_match_that_names_the_version_passes(if_match: str | None) -> None:
    check_version(3, if_match)


@pytest.mark.parametrize("if_match", ['W/"2"', '"4"', "W/3", ""])
def test_if_match_naming_another_version_is_412(if_match: str) -> None:
    with pytest.raises(PreconditionFailed) as raised:
        check_version(3, if_match)
    assert raised.value.status == 412


def test_iso_is_utc_with_z() -> None:
    assert iso(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
