"""Data checks: a month's figures, the prepared schema, and the one line a failing month gives."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tlc_samples import write_month

from taxi_duration.checks import (
    CHECKS,
    CORE_COLUMNS,
    CheckThresholds,
    MonthFigures,
    audit_month,
    check_metrics,
    check_month,
    month_figures,
)
from taxi_duration.errors import DataCheckError, DataError, InvalidInputError
from taxi_duration.months import Month
from taxi_duration.prepare import REQUEST_COLUMNS, prepare_trips
from taxi_duration.settings import Settings

JAN = Month(2023, 1)
LABEL = "green 2023-01"
KEPT = 20_000  # the clean month's kept rows
PUBLISHED = 21_000  # its published rows: 95.2% kept


@pytest.fixture(scope="module")
def clean_month(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """A generated month's first 20,000 kept trips, every figure at its best."""
    path = write_month(tmp_path_factory.mktemp("tlc"), "green", JAN, rows=22_000)
    frame = prepare_trips(path, "green").frame.head(KEPT).copy()
    figures = month_figures(PUBLISHED, frame)
    assert figures.zero_distance_share == figures.long_distance_share == 0.0
    assert figures.unknown_zone_share == 0.0
    assert all(figures.null_shares[column] == 0.0 for column in CORE_COLUMNS)
    return frame


@pytest.fixture
def month(clean_month: pd.DataFrame) -> pd.DataFrame:
    return clean_month.copy()


@pytest.mark.parametrize("color", ["green", "yellow", "fhvhv"])
def test_a_generated_month_passes_the_default_checks(color: str, tmp_path: Path) -> None:
    path = write_month(tmp_path, color, JAN, rows=12_000)
    prepared = prepare_trips(path, color)
    figures = check_month(f"{color} 2023-01", prepared.rows_loaded, prepared.frame)
    assert figures.published_rows == 12_000
    assert figures.kept_rows == prepared.rows_kept > 10_000
    assert figures.kept_share == prepared.rows_kept / 12_000


def _first(frame: pd.DataFrame, share: float) -> np.ndarray:
    """A mask of the first ``share`` of the rows."""
    mask = np.zeros(len(frame), dtype=bool)
    mask[: round(share * len(frame))] = True
    return mask


def _zone(frame: pd.DataFrame, column: str, share: float, zone: float) -> None:
    zones = frame[column]
    if zone == zone and zone not in zones.cat.categories:  # not NaN, a new id
        zones = zones.cat.add_categories([int(zone)])
    frame[column] = zones.where(~_first(frame, share), zone)


def _distance(frame: pd.DataFrame, share: float, miles: float) -> None:
    frame.loc[_first(frame, share), "trip_distance"] = miles


def _pickup(frame: pd.DataFrame, share: float) -> None:
    frame.loc[_first(frame, share), "pickup_datetime"] = pd.NaT


# Each check's figure pushed past its default threshold, alone: (how, published rows, message).
PUSHED = {
    "kept rows": (
        lambda frame: frame.drop(index=frame.index[5_000:], inplace=True),
        5_250,
        "kept rows 5000 is under the required 10000",
    ),
    "kept share": (
        lambda frame: None,
        2 * KEPT,
        "share of published rows kept 0.5 is under the required 0.8",
    ),
    "no pickup time": (
        lambda frame: _pickup(frame, 0.06),
        PUBLISHED,
        "share of trips with no pickup_datetime 0.06 is over the allowed 0.05",
    ),
    "no pickup zone": (
        lambda frame: _zone(frame, "PULocationID", 0.06, np.nan),
        PUBLISHED,
        # A missing zone is unknown too: 6% passes that check's 10%.
        "share of trips with no PULocationID 0.06 is over the allowed 0.05",
    ),
    "no dropoff zone": (
        lambda frame: _zone(frame, "DOLocationID", 0.06, np.nan),
        PUBLISHED,
        "share of trips with no DOLocationID 0.06 is over the allowed 0.05",
    ),
    "no distance": (
        lambda frame: _distance(frame, 0.06, np.nan),
        PUBLISHED,
        "share of trips with no trip_distance 0.06 is over the allowed 0.05",
    ),
    "zero distance": (
        lambda frame: _distance(frame, 0.2, 0.0),
        PUBLISHED,
        "share of trips with zero distance 0.2 is over the allowed 0.15",
    ),
    "negative distance": (
        lambda frame: _distance(frame, 0.2, -1.5),
        PUBLISHED,
        "share of trips with zero distance 0.2 is over the allowed 0.15",
    ),
    "over 100 miles": (
        lambda frame: _distance(frame, 0.02, 25_000.0),
        PUBLISHED,
        "share of trips over 100 miles 0.02 is over the allowed 0.01",
    ),
    "unknown zone 264": (
        lambda frame: _zone(frame, "PULocationID", 0.12, 264),
        PUBLISHED,
        "share of trips with an unknown zone 0.12 is over the allowed 0.1",
    ),
    "zone off the list": (
        lambda frame: _zone(frame, "DOLocationID", 0.12, 999),
        PUBLISHED,
        "share of trips with an unknown zone 0.12 is over the allowed 0.1",
    ),
}


@pytest.mark.parametrize("case", list(PUSHED))
def test_each_check_fails_alone_in_one_line_naming_month_check_value_and_threshold(
    case: str, month: pd.DataFrame
) -> None:
    push, published, expected = PUSHED[case]
    push(month)
    with pytest.raises(DataCheckError) as raised:
        check_month(LABEL, published, month)
    assert str(raised.value) == f"{LABEL}: {expected}"
    assert "\n" not in str(raised.value)
    assert raised.value.exit_code == 1
    assert isinstance(raised.value, DataError)


def test_a_figure_at_its_threshold_passes(month: pd.DataFrame) -> None:
    _distance(month, 0.15, 0.0)
    month.loc[month.index[-200:], "trip_distance"] = 500.0  # 1%, not the zero ones
    figures = check_month(LABEL, round(KEPT / 0.8), month)
    assert figures.zero_distance_share == 0.15
    assert figures.long_distance_share == 0.01
    assert figures.kept_share == 0.8


def test_every_failing_check_is_listed_in_the_one_line(month: pd.DataFrame) -> None:
    _distance(month, 0.5, 0.0)
    _zone(month, "PULocationID", 0.25, 265)
    with pytest.raises(DataCheckError) as raised:
        check_month(LABEL, 4 * KEPT, month)
    assert str(raised.value) == (
        f"{LABEL}: share of published rows kept 0.25 is under the required 0.8; "
        "share of trips with zero distance 0.5 is over the allowed 0.15; "
        "share of trips with an unknown zone 0.25 is over the allowed 0.1"
    )


def test_thresholds_are_the_callers(month: pd.DataFrame) -> None:
    strict = CheckThresholds(min_kept_rows=50_000, max_zero_distance_share=0.0)
    _distance(month, 0.0001, 0.0)
    with pytest.raises(DataCheckError, match="kept rows 20000 is under the required 50000; "):
        check_month(LABEL, PUBLISHED, month, strict)
    lenient = CheckThresholds(min_kept_rows=0, min_kept_share=0.0)
    assert check_month(LABEL, 10 * PUBLISHED, month.tail(3), lenient).kept_rows == 3


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda frame: frame.drop(columns="duration"),
            "column 'duration' is missing",
        ),
        (
            lambda frame: frame.astype({"trip_distance": "float32"}),
            "column 'trip_distance' is float32, expected float64",
        ),
        (
            lambda frame: frame.astype({"VendorID": "float64"}),
            "column 'VendorID' is float64, expected float32",
        ),
        (
            lambda frame: frame.astype({"PULocationID": "int64"}),
            "column 'PULocationID' is not a categorical of integer zone ids",
        ),
        (
            lambda frame: frame.astype({"DOLocationID": "str"}).astype(
                {"DOLocationID": "category"}
            ),
            "column 'DOLocationID' is not a categorical of integer zone ids",
        ),
        (
            lambda frame: frame.assign(pickup_datetime=frame["pickup_datetime"].astype("str")),
            "column 'pickup_datetime' is not a timestamp without time zone",
        ),
        (
            lambda frame: frame.assign(
                pickup_datetime=frame["pickup_datetime"].dt.tz_localize("UTC")
            ),
            "column 'pickup_datetime' is not a timestamp without time zone",
        ),
    ],
)
def test_the_schema_rejects_a_missing_column_or_a_wrong_type(
    change: object, expected: str, month: pd.DataFrame
) -> None:
    with pytest.raises(DataCheckError) as raised:
        check_month(LABEL, PUBLISHED, change(month))  # type: ignore[operator]
    assert str(raised.value) == f"{LABEL}: prepared trips do not match the schema: {expected}"


def test_the_schema_lists_every_failure_in_one_line(month: pd.DataFrame) -> None:
    broken = month.drop(columns=["duration", "trip_type"]).astype({"trip_distance": "int64"})
    with pytest.raises(DataCheckError) as raised:
        check_month(LABEL, PUBLISHED, broken)
    message = str(raised.value)
    assert "\n" not in message
    for part in (
        "column 'duration' is missing",
        "column 'trip_type' is missing",
        "column 'trip_distance' is int64, expected float64",
    ):
        assert part in message


def test_the_schema_accepts_any_timestamp_unit(month: pd.DataFrame) -> None:
    as_ns = month.assign(pickup_datetime=month["pickup_datetime"].astype("datetime64[ns]"))
    assert check_month(LABEL, PUBLISHED, as_ns).kept_rows == KEPT


def test_a_duration_outside_1_to_60_minutes_breaks_the_schema(month: pd.DataFrame) -> None:
    month.loc[month.index[:5], "duration"] = [0.5, 61.0, 75.0, 90.0, 120.0]
    with pytest.raises(DataCheckError) as raised:
        check_month(LABEL, PUBLISHED, month)
    assert str(raised.value) == (
        f"{LABEL}: prepared trips do not match the schema: column 'duration' fails "
        "in_range(1.0, 60.0): 0.5, 61.0, 75.0 and 2 more"
    )


def _zones(ids: list[float]) -> pd.Categorical:
    known = sorted({int(i) for i in ids if i == i})
    return pd.Categorical(ids, categories=pd.Index(known, dtype="int32"))


def test_the_figures_of_a_small_month_are_counted_exactly() -> None:
    pickup = pd.Series(pd.to_datetime(["2023-01-05 08:00"] * 8).astype("datetime64[us]"))
    pickup[7] = pd.NaT
    frame = pd.DataFrame(
        {
            "pickup_datetime": pickup,
            "PULocationID": _zones([1, 263, 264, 42, 7, np.nan, 7, 7]),
            "DOLocationID": _zones([5, 5, 5, 265, 0, 5, 5, 999]),
            "trip_distance": [0.0, 1.5, 150.0, np.nan, -0.5, 100.0, 100.01, 3.0],
            "duration": np.full(8, 12.0),
            "VendorID": np.array([1, 2, np.nan, np.nan, 1, 1, 2, 2], dtype=np.float32),
            "trip_type": np.full(8, np.nan, dtype=np.float32),
            "passenger_count": np.ones(8, dtype=np.float32),
        }
    )
    figures = month_figures(10, frame)
    assert figures == MonthFigures(
        published_rows=10,
        kept_rows=8,
        kept_share=0.8,
        zero_distance_share=2 / 8,  # 0.0 and -0.5; NaN is missing, not zero
        long_distance_share=2 / 8,  # 150 and 100.01; 100 is not over
        # rows 2 (264), 3 (265), 4 (0), 5 (missing pickup zone), 7 (999); 263 is a zone
        unknown_zone_share=5 / 8,
        null_shares={
            "pickup_datetime": 1 / 8,
            "PULocationID": 1 / 8,
            "DOLocationID": 0.0,
            "trip_distance": 1 / 8,
            "duration": 0.0,
            "VendorID": 2 / 8,
            "trip_type": 1.0,
            "passenger_count": 0.0,
        },
    )
    flat = figures.as_dict()
    assert flat["kept_rows"] == 8
    assert flat["null_share_VendorID"] == 0.25
    assert "null_shares" not in flat
    assert all(isinstance(value, int | float) for value in flat.values())


def test_every_declared_check_names_a_figure_and_a_threshold(month: pd.DataFrame) -> None:
    figures = month_figures(PUBLISHED, month).as_dict()
    thresholds = {field.name for field in fields(CheckThresholds)}
    for check in CHECKS:
        assert check.figure in figures, check
        assert check.threshold in thresholds, check
    # Every threshold is used; the request-time columns' nulls are figures, not checks.
    assert {check.threshold for check in CHECKS} == thresholds
    assert not any(column in check.figure for check in CHECKS for column in REQUEST_COLUMNS)


@pytest.mark.parametrize(
    "bad",
    [{"min_kept_rows": -1}, {"min_kept_share": 1.5}, {"max_unknown_zone_share": -0.1}],
)
def test_thresholds_out_of_range_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(InvalidInputError, match=next(iter(bad))):
        CheckThresholds(**bad)  # type: ignore[arg-type]


def test_importing_the_checks_loads_neither_pandera_nor_pandas() -> None:
    """The CLI's help must answer without heavy imports (tests/unit/test_cli_args.py)."""
    code = (
        "import sys, taxi_duration.checks; print('pandera' in sys.modules, 'pandas' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["False", "False"]


def test_a_skipped_check_gives_the_figures_and_the_line_it_would_raise(
    month: pd.DataFrame,
) -> None:
    _distance(month, 0.2, 0.0)
    figures, failure = audit_month(LABEL, PUBLISHED, month)
    assert figures == month_figures(PUBLISHED, month)
    assert failure == f"{LABEL}: share of trips with zero distance 0.2 is over the allowed 0.15"
    passing = month.assign(trip_distance=month["trip_distance"].clip(lower=0.5))
    assert audit_month(LABEL, PUBLISHED, passing) == (month_figures(PUBLISHED, passing), "")


def test_the_figures_are_metrics_named_by_the_months_role(month: pd.DataFrame) -> None:
    figures = month_figures(PUBLISHED, month)
    older = replace(figures, kept_rows=1)
    metrics = check_metrics([older, figures], replace(figures, kept_rows=2))
    assert metrics["check_train_kept_rows"] == KEPT  # the training month: the window's last
    assert metrics["check_train-1_kept_rows"] == 1  # the month before it
    assert metrics["check_val_kept_rows"] == 2
    assert metrics["check_val_null_share_trip_distance"] == 0.0
    assert len(metrics) == 3 * len(figures.as_dict())
    assert set(check_metrics([figures], None)) == {f"check_train_{n}" for n in figures.as_dict()}


def test_thresholds_come_from_the_settings_else_from_the_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for field in fields(CheckThresholds):  # one setting per threshold, none of the shell's
        assert f"check_{field.name}" in Settings.model_fields, field.name
        monkeypatch.delenv(f"TAXI_DURATION_CHECK_{field.name.upper()}", raising=False)
    assert CheckThresholds(**Settings().check_thresholds()) == CheckThresholds()
    monkeypatch.setenv("TAXI_DURATION_CHECK_MIN_KEPT_ROWS", "500")
    monkeypatch.setenv("TAXI_DURATION_CHECK_MAX_ZERO_DISTANCE_SHARE", "0.3")
    assert CheckThresholds(**Settings().check_thresholds()) == CheckThresholds(
        min_kept_rows=500, max_zero_distance_share=0.3
    )
    monkeypatch.setenv("TAXI_DURATION_CHECK_MIN_KEPT_SHARE", "1.5")
    with pytest.raises(InvalidInputError, match=r"min_kept_share 1\.5 is not a share"):
        CheckThresholds(**Settings().check_thresholds())
