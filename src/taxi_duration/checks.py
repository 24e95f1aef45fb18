"""Data checks: a prepared month passes them before features are built, or the run stops.

Declared once, as data: the prepared frame's columns and types (a pandera schema, built when
a month is checked: pandera loads pandas, which the CLI's help must not) and a table of
thresholds on a month's figures (``CHECKS``). The figures are shares, not maxima: every real
month holds a few trips of tens of thousands of miles. A month that fails raises one
``DataCheckError`` line naming the month, each failing check, its figure and its threshold.
The defaults hold, with a wide margin, for the real months measured by
``benchmarks/check_figures.py`` (docs/checks.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Literal

from taxi_duration.choices import (
    FIRST_ZONE_ID,
    LAST_NYC_ZONE_ID,
    MAX_DURATION_MINUTES,
    MIN_DURATION_MINUTES,
    REQUEST_COLUMNS,
    ZONE_COLUMNS,
)
from taxi_duration.errors import DataCheckError, InvalidInputError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pandera.pandas

# The columns every layout has: a missing value there is a broken record. The request-time
# columns are optional by design (yellow has no trip_type, fhvhv none of them): their missing
# shares are figures, not checks.
CORE_COLUMNS = ("pickup_datetime", *ZONE_COLUMNS, "trip_distance")
# Zones the model can place: the NYC zones (choices.py). 264 and 265 name no zone, and a meter
# that stops recording locations writes 264, so they count as unknown with missing ids and
# ids off the list.
# About twice the longest drive within the city (Staten Island's south tip to the north
# Bronx). Longer trips exist (out of town, or a broken odometer), so its figure is a share.
LONG_TRIP_MILES = 100.0


@dataclass(frozen=True)
class CheckThresholds:
    """What a month must reach. Sanity bounds, not fits: each default is several times the
    worst of the four real green months measured (docs/checks.md), so that other real months
    pass and a broken one fails."""

    # Fewer trips make no model; the measured months keep 62,000 to 74,000 (a yellow or fhvhv
    # month millions).
    min_kept_rows: int = 10_000
    # Kept rows (1 to 60 minutes) over the published rows: 0.959 to 0.967 measured.
    min_kept_share: float = 0.8
    # Each core column on its own (pickup time, zones, distance): none measured.
    max_null_share: float = 0.05
    # Distance 0 (or less): 0.022 to 0.033 measured.
    max_zero_distance_share: float = 0.15
    # Over LONG_TRIP_MILES (some of tens of thousands of miles): 0.0004 to 0.0008 measured.
    max_long_distance_share: float = 0.01
    # Pickup or dropoff zone missing, off the list, 264 or 265: 0.005 to 0.006 measured.
    max_unknown_zone_share: float = 0.1

    def __post_init__(self) -> None:
        if self.min_kept_rows < 0:
            raise InvalidInputError(f"min_kept_rows {self.min_kept_rows} is negative")
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name.endswith("_share") and not 0.0 <= value <= 1.0:
                raise InvalidInputError(f"{field.name} {value} is not a share between 0 and 1")


@dataclass(frozen=True)
class MonthFigures:
    """A prepared month's data-quality figures: the checks' inputs, and what a monitor compares.

    Shares are of the kept trips, but ``kept_share`` (of the published rows).
    """

    published_rows: int
    kept_rows: int
    kept_share: float
    zero_distance_share: float
    long_distance_share: float
    unknown_zone_share: float
    # Each model column's share of nulls, the request-time columns' included.
    null_shares: dict[str, float]

    def as_dict(self) -> dict[str, float]:
        """Flat figures by name (``null_share_<column>``), e.g. for metrics."""
        flat: dict[str, float] = {
            name: value for name, value in asdict(self).items() if name != "null_shares"
        }
        for column, share in self.null_shares.items():
            flat[f"null_share_{column}"] = share
        return flat


@dataclass(frozen=True)
class MonthCheck:
    """One threshold on one figure: ``figure`` (a key of ``MonthFigures.as_dict``) must stay at
    or above (``min``) or at or below (``max``) the ``threshold`` field of CheckThresholds."""

    name: str
    figure: str
    threshold: str
    bound: Literal["min", "max"]

    def failure(self, figures: dict[str, float], thresholds: CheckThresholds) -> str | None:
        """The check's part of the one line if the figure is past the threshold, else None."""
        value = figures[self.figure]
        limit = getattr(thresholds, self.threshold)
        if self.bound == "min" and value < limit:
            return f"{self.name} {_number(value)} is under the required {_number(limit)}"
        if self.bound == "max" and value > limit:
            return f"{self.name} {_number(value)} is over the allowed {_number(limit)}"
        return None


CHECKS = (
    MonthCheck("kept rows", "kept_rows", "min_kept_rows", "min"),
    MonthCheck("share of published rows kept", "kept_share", "min_kept_share", "min"),
    *(
        MonthCheck(
            f"share of trips with no {column}", f"null_share_{column}", "max_null_share", "max"
        )
        for column in CORE_COLUMNS
    ),
    MonthCheck(
        "share of trips with zero distance", "zero_distance_share", "max_zero_distance_share", "max"
    ),
    MonthCheck(
        f"share of trips over {LONG_TRIP_MILES:g} miles",
        "long_distance_share",
        "max_long_distance_share",
        "max",
    ),
    MonthCheck(
        "share of trips with an unknown zone", "unknown_zone_share", "max_unknown_zone_share", "max"
    ),
)


def _number(value: float) -> str:
    """A figure or threshold as the message shows it: whole numbers whole, shares to 3 digits."""
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value)}"
    return f"{value:.3g}"


def check_month(
    month_label: str,
    published_rows: int,
    frame: pd.DataFrame,
    thresholds: CheckThresholds | None = None,
) -> MonthFigures:
    """The month's figures, if its frame has the prepared schema and passes every check.

    ``month_label`` names the month in the error (e.g. ``green 2023-01``); ``published_rows``
    is the file's row count. Raises DataCheckError, one line listing every failure.
    """
    schema_errors = schema_failures(frame)
    if schema_errors:
        raise DataCheckError(
            f"{month_label}: prepared trips do not match the schema: {schema_errors}"
        )
    figures = month_figures(published_rows, frame)
    failures = failed_checks(figures, thresholds or CheckThresholds())
    if failures:
        raise DataCheckError(f"{month_label}: " + "; ".join(failures))
    return figures


def audit_month(
    month_label: str,
    published_rows: int,
    frame: pd.DataFrame,
    thresholds: CheckThresholds | None = None,
) -> tuple[MonthFigures, str]:
    """What ``check_month`` finds, without stopping: the figures, and the line it would raise
    ('' if the month passes). For a run that skips the checks (``--skip-checks``)."""
    try:
        return check_month(month_label, published_rows, frame, thresholds), ""
    except DataCheckError as failure:
        return month_figures(published_rows, frame), str(failure)


def check_metrics(
    window: Sequence[MonthFigures], validation: MonthFigures | None
) -> dict[str, float]:
    """The figures of a run's months as metrics: ``check_train_<figure>`` for the training
    month, ``check_val_<figure>`` for the validation month and, in a wider window,
    ``check_train-<k>_<figure>`` for the month k before the training month. Named by role,
    not by date, so that a monitor compares the same names from run to run."""
    roles = [
        ("train" if k == 0 else f"train-{k}", figures) for k, figures in enumerate(reversed(window))
    ]
    if validation is not None:
        roles.append(("val", validation))
    return {
        f"check_{role}_{name}": float(value)
        for role, figures in roles
        for name, value in figures.as_dict().items()
    }


def failed_checks(figures: MonthFigures, thresholds: CheckThresholds) -> list[str]:
    """Each failing check's message, in the order of ``CHECKS``."""
    flat = figures.as_dict()
    return [message for check in CHECKS if (message := check.failure(flat, thresholds))]


def month_figures(published_rows: int, frame: pd.DataFrame) -> MonthFigures:
    """The figures of a prepared month (the frame ``prepare.kept_trips`` makes), vectorized."""
    import numpy as np

    kept = len(frame)
    distance = frame["trip_distance"].to_numpy(dtype=np.float64, copy=False)
    nulls = {
        column: _share(int(frame[column].isna().sum()), kept) for column in _model_columns(frame)
    }
    return MonthFigures(
        published_rows=published_rows,
        kept_rows=kept,
        kept_share=_share(kept, published_rows),
        zero_distance_share=_share(int(np.count_nonzero(distance <= 0.0)), kept),
        long_distance_share=_share(int(np.count_nonzero(distance > LONG_TRIP_MILES)), kept),
        unknown_zone_share=_share(int(np.count_nonzero(_unknown_zone(frame))), kept),
        null_shares=nulls,
    )


def _model_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in (*CORE_COLUMNS, "duration", *REQUEST_COLUMNS) if c in frame.columns]


def _share(count: int, total: int) -> float:
    return count / total if total else 0.0


def _unknown_zone(frame: pd.DataFrame) -> np.ndarray:
    """Per trip, whether its pickup or dropoff zone is unknown (boolean array).

    Looked up per category, then by code: one small table and one gather per column.
    """
    import numpy as np

    unknown = np.zeros(len(frame), dtype=bool)
    for column in ZONE_COLUMNS:
        zones = frame[column].cat
        ids = np.asarray(zones.categories, dtype=np.int64)
        # Code -1 (missing) picks the trailing True.
        is_unknown = np.append((ids < FIRST_ZONE_ID) | (ids > LAST_NYC_ZONE_ID), True)
        unknown |= is_unknown[zones.codes.to_numpy()]
    return unknown


def schema_failures(frame: pd.DataFrame) -> str:
    """What in ``frame`` breaks the prepared schema, as one line ('' if nothing)."""
    import pandera.errors

    try:
        # In place: nothing is coerced, and a copy of a 20-million-row month would cost 1 GB.
        prepared_schema().validate(frame, lazy=True, inplace=True)
    except pandera.errors.SchemaErrors as errors:
        return _one_line(errors.failure_cases)
    return ""


def _one_line(cases: pd.DataFrame) -> str:
    """Pandera's failure cases, one part per column and check: 'column 'x' is float32, expected
    float64; column 'duration' is missing'."""
    found: dict[tuple[str, str], list[str]] = {}
    for case in cases.itertuples(index=False):
        # A frame-wide failure (a missing column) names the column as its failure case.
        frame_wide = case.schema_context == "DataFrameSchema"
        column = str(case.failure_case if frame_wide else case.column)
        found.setdefault((column, str(case.check)), []).append(str(case.failure_case))
    return "; ".join(
        f"column {column!r} {_case_text(check, values)}"
        for (column, check), values in found.items()
    )


def _case_text(check: str, values: list[str]) -> str:
    if check == "column_in_dataframe":
        return "is missing"
    if check.startswith("dtype("):  # dtype('float64'): the expected type
        expected = check.removeprefix("dtype(").removesuffix(")").strip("'")
        return f"is {values[0]}, expected {expected}"
    if check == "not_nullable":
        return "has missing values"
    if check in _WHOLE_COLUMN_CHECKS:
        return f"is not {check}"
    shown = ", ".join(values[:3]) + (f" and {len(values) - 3} more" if len(values) > 3 else "")
    return f"fails {check}: {shown}"


_TIMESTAMPS = "a timestamp without time zone"
_ZONE_IDS = "a categorical of integer zone ids"
_WHOLE_COLUMN_CHECKS = (_TIMESTAMPS, _ZONE_IDS)


def _naive_timestamps(values: pd.Series) -> bool:
    # numpy's datetime64 has no time zone; pandas' DatetimeTZDtype (kind "M" too) has one.
    return values.dtype.kind == "M" and not hasattr(values.dtype, "tz")


def _integer_zone_ids(values: pd.Series) -> bool:
    categories = getattr(values.dtype, "categories", None)
    return categories is not None and categories.dtype.kind in "iu"


def prepared_schema() -> pandera.pandas.DataFrameSchema:
    """The pandera schema of a prepared month (``prepare.kept_trips``' frame): its columns and
    their types. Missing values are allowed but in ``duration`` (the filter drops them): how
    many there may be is a threshold (``CheckThresholds``)."""
    import pandera.pandas as pa

    return pa.DataFrameSchema(
        {
            # Any unit: prepare keeps the file's own (microseconds in TLC files).
            "pickup_datetime": pa.Column(
                checks=pa.Check(_naive_timestamps, name=_TIMESTAMPS), nullable=True
            ),
            **{
                column: pa.Column(checks=pa.Check(_integer_zone_ids, name=_ZONE_IDS), nullable=True)
                for column in ZONE_COLUMNS
            },
            "trip_distance": pa.Column("float64", nullable=True),
            "duration": pa.Column(
                "float64", pa.Check.in_range(MIN_DURATION_MINUTES, MAX_DURATION_MINUTES)
            ),
            **{column: pa.Column("float32", nullable=True) for column in REQUEST_COLUMNS},
        },
        name="prepared trips",
    )
