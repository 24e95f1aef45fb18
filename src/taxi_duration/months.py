"""Calendar months, the unit TLC publishes data in, written as ``YYYY-MM``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from taxi_duration.errors import InvalidInputError

_MONTH_PATTERN = re.compile(r"^(\d{4})-(\d{1,2})$")


@dataclass(frozen=True, order=True)
class Month:
    """One calendar month."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise InvalidInputError(
                f"month {self.year:04d}-{self.month:02d} is not a month: month must be 1-12"
            )

    @classmethod
    def parse(cls, text: str) -> Month:
        """Parse ``YYYY-MM``."""
        match = _MONTH_PATTERN.match(text.strip())
        if match is None:
            raise InvalidInputError(f"month {text!r} is not of the form YYYY-MM")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def current(cls) -> Month:
        """The calendar month it is now, in UTC."""
        now = datetime.now(UTC)
        return cls(now.year, now.month)

    def next(self) -> Month:
        """The following month; December wraps to January of the next year."""
        if self.month == 12:
            return Month(self.year + 1, 1)
        return Month(self.year, self.month + 1)

    def previous(self) -> Month:
        """The month before; January wraps to December of the year before."""
        if self.month == 1:
            return Month(self.year - 1, 12)
        return Month(self.year, self.month - 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"
