"""Errors: one hierarchy, exit code 2 for bad input and 1 for a failed run."""

from __future__ import annotations

import pytest

from taxi_duration.errors import (
    DataError,
    DownloadError,
    InvalidInputError,
    MonthNotPublishedError,
    TaxiDurationError,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidInputError, 2),
        (MonthNotPublishedError, 1),
        (DownloadError, 1),
        (DataError, 1),
        (TaxiDurationError, 1),
    ],
)
def test_exit_codes(error: type[TaxiDurationError], code: int) -> None:
    assert issubclass(error, TaxiDurationError)
    assert error("x").exit_code == code
    assert str(error("month 2023-13 is not a month")) == "month 2023-13 is not a month"
