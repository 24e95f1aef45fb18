"""What a training run asks for: its months and data files, checked before anything runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from taxi_duration import ingest
from taxi_duration.errors import InvalidInputError
from taxi_duration.months import Month


@dataclass(frozen=True)
class TrainRequest:
    """The months and data a training run uses, checked before anything runs."""

    color: str
    train_month: Month
    val_month: Month | None
    train_path: Path | None
    val_path: Path | None

    @classmethod
    def build(
        cls,
        color: str,
        year: int | None,
        month: int | None,
        val_year: int | None = None,
        val_month: int | None = None,
        validation: bool = True,
        train_path: str | None = None,
        val_path: str | None = None,
    ) -> TrainRequest:
        if year is None or month is None:
            raise InvalidInputError("the training month is required: give year and month")
        train_month = Month(year, month)
        ingest.check_color_and_month(color, train_month)
        if (val_year is None) != (val_month is None):
            raise InvalidInputError("give both val_year and val_month, or neither")
        chosen: Month | None = None
        if validation:
            if val_year is not None and val_month is not None:
                chosen = Month(val_year, val_month)
            else:
                chosen = train_month.next()
            ingest.check_color_and_month(color, chosen)
        elif val_year is not None or val_path is not None:
            raise InvalidInputError("--no-validation conflicts with a validation month or file")
        train_file = ingest.check_local_file(Path(train_path), "train") if train_path else None
        val_file = ingest.check_local_file(Path(val_path), "validation") if val_path else None
        return cls(color, train_month, chosen, train_file, val_file)


def check_tuning_budget(trials: int, timeout: float | None, jobs: int) -> None:
    """A search needs at least one trial and one job; a timeout, if any, is positive."""
    if trials < 1:
        raise InvalidInputError(f"trials {trials} is out of range: at least 1")
    if jobs < 1:
        raise InvalidInputError(f"jobs {jobs} is out of range: at least 1")
    if timeout is not None and timeout <= 0:
        raise InvalidInputError(f"timeout {timeout:g} is out of range: more than 0 seconds")


def check_min_improvement(min_improvement: float) -> None:
    """How much lower (minutes of RMSE) a new version must score to replace the champion."""
    if not min_improvement >= 0:
        raise InvalidInputError(
            f"min-improvement {min_improvement:g} is out of range: 0 or more (minutes of RMSE)"
        )
