import pytest

from activeft_label import InputError, parse_budget


@pytest.mark.parametrize("budget, pool, expected", [
    (5, 100, 5), ("5", 100, 5), (" 7 ", 100, 7), ("1%", 1000, 10), ("0.5%", 60000, 300),
    ("50%", 3, 2), ("100%", 9, 9), (3.0, 10, 3),
])
def test_counts_and_percentages(budget, pool, expected):
    assert parse_budget(budget, pool) == expected


@pytest.mark.parametrize("budget, pool, message", [
    (0, 10, "at least 1"), ("-1", 10, "at least 1"), (11, 10, "larger than"), ("101%", 10, "more than 100%"),
    ("40%", 1, "rounds to 0"), ("x%", 10, "not a percentage"), (2.5, 10, "whole number"), (True, 10, "count"),
    (None, 10, "count"), ("nan%", 10, "above 0"),
])
def test_bad_budgets(budget, pool, message):
    with pytest.raises(InputError, match=message):
        parse_budget(budget, pool)


def test_already_labeled_items_reduce_what_is_available():
    assert parse_budget(8, 10, already_labeled=2) == 8
    with pytest.raises(InputError, match="2 of 10 are already labeled"):
        parse_budget(9, 10, already_labeled=2)
