from service.admin.present import page_link, showing


def test_the_range_of_a_page_and_its_total() -> None:
    assert showing(0, 50, 5000, False, 10_000) == "1\u201350 of 5,000"
    assert showing(4950, 50, 5000, False, 10_000) == "4,951\u20135,000 of 5,000"
    assert showing(50, 50, 10_001, True, 10_000) == "51\u2013100 of more than 10,000"
    assert showing(9_999, 50, 1_000_000, False, 10_000) == "10,000\u201310,049 of 1,000,000"


def test_past_the_counted_rows_a_page_says_so_instead_of_a_wrong_number() -> None:
    assert showing(10_000, 50, 1_000_000, False, 10_000) == "50 past the first 10,000 of 1,000,000"
    assert showing(10_000, 12, 10_001, True, 10_000) == "12 past the first 10,000 of more than 10,000"


def test_next_and_previous_keep_the_filters_that_are_set() -> None:
    assert page_link({"q": "ada & bob", "state": ""}, "after", "u1") == "?q=ada+%26+bob&after=u1"
    assert page_link({}, "before", "u2") == "?before=u2"
