"""Month: parsing YYYY-MM, neighbours with year wrap, formatting and ordering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taxi_duration.errors import InvalidInputError, TaxiDurationError
from taxi_duration.months import Month


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-01", Month(2023, 1)),
        ("2023-1", Month(2023, 1)),
        ("2023-12", Month(2023, 12)),
        ("2009-01", Month(2009, 1)),
        (" 2024-02 ", Month(2024, 2)),
    ],
)
def test_parse_valid(text: str, expected: Month) -> None:
    assert Month.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2023/01",
        "abc",
        "",
        "2023",
        "2023-",
        "23-01",
        "2023-001",
        "2023-01-01",
        "-2023-01",
        "2023-1a",
    ],
)
def test_parse_malformed_names_the_value(text: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        Month.parse(text)
    assert repr(text) in str(caught.value)
    assert "YYYY-MM" in str(caught.value)


@pytest.mark.parametrize(("text", "shown"), [("2023-13", "2023-13"), ("2023-0", "2023-00")])
def test_parse_out_of_range_month_names_the_value(text: str, shown: str) -> None:
    with pytest.raises(InvalidInputError, match=shown):
        Month.parse(text)


@pytest.mark.parametrize("month", [0, 13, -1, 100])
def test_constructor_rejects_month_out_of_range(month: int) -> None:
    with pytest.raises(InvalidInputError, match="1-12"):
        Month(2023, month)


def test_invalid_month_is_a_user_error_with_exit_code_2() -> None:
    with pytest.raises(TaxiDurationError) as caught:
        Month.parse("2023/01")
    assert caught.value.exit_code == 2
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("month", "following"),
    [
        (Month(2023, 1), Month(2023, 2)),
        (Month(2023, 11), Month(2023, 12)),
        (Month(2023, 12), Month(2024, 1)),
    ],
)
def test_next(month: Month, following: Month) -> None:
    assert month.next() == following


@pytest.mark.parametrize(
    ("month", "preceding"),
    [
        (Month(2023, 2), Month(2023, 1)),
        (Month(2023, 12), Month(2023, 11)),
        (Month(2023, 1), Month(2022, 12)),
    ],
)
def test_previous(month: Month, preceding: Month) -> None:
    assert month.previous() == preceding


@given(st.integers(min_value=1, max_value=9998), st.integers(min_value=1, max_value=12))
def test_next_and_previous_are_inverse(year: int, month_number: int) -> None:
    month = Month(year, month_number)
    assert month.next().previous() == month
    assert month.previous().next() == month
    assert month.previous() < month < month.next()


@pytest.mark.parametrize(
    ("month", "text"),
    [(Month(2023, 1), "2023-01"), (Month(2023, 12), "2023-12"), (Month(999, 3), "0999-03")],
)
def test_str_is_yyyy_mm(month: Month, text: str) -> None:
    assert str(month) == text


@given(st.integers(min_value=1000, max_value=9999), st.integers(min_value=1, max_value=12))
def test_str_parse_round_trip(year: int, month_number: int) -> None:
    month = Month(year, month_number)
    assert Month.parse(str(month)) == month


def test_ordering_is_chronological() -> None:
    months = [Month(2023, 2), Month(2022, 12), Month(2023, 10), Month(2023, 1)]
    assert sorted(months) == [Month(2022, 12), Month(2023, 1), Month(2023, 2), Month(2023, 10)]
    assert Month(2022, 12) < Month(2023, 1)
    assert Month(2023, 9) < Month(2023, 10)  # numeric, not text, order
    assert max(months) == Month(2023, 10)


def test_months_are_hashable_values() -> None:
    assert {Month(2023, 1), Month.parse("2023-1")} == {Month(2023, 1)}
