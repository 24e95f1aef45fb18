"""Prepare: duration in minutes, the 1..60 minute filter, zones as categories, schema errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tlc_samples import make_trips, write_month

from taxi_duration.errors import DataError, InvalidInputError
from taxi_duration.months import Month
from taxi_duration.prepare import (
    REQUEST_COLUMNS,
    join_months,
    layout,
    normalize_raw_trips,
    prepare_trips,
    raw_example,
    timestamp_columns,
)

JAN = Month(2023, 1)
START = np.datetime64("2023-01-10T08:00:00", "us")
REQUIRED = ("pickup", "dropoff", "PULocationID", "DOLocationID", "trip_distance")


def _columns(color: str, seconds: list[float], **overrides: pa.Array) -> dict[str, pa.Array]:
    """A raw TLC table whose trips last ``seconds``; ``overrides`` replace columns."""
    n = len(seconds)
    pickup = np.full(n, START)
    dropoff = pickup + (np.asarray(seconds) * 1_000_000).astype("timedelta64[us]")
    names = layout(color)
    columns: dict[str, pa.Array] = {
        "VendorID": pa.array(np.ones(n, dtype=np.int64)),
        names.pickup: pa.array(pickup, pa.timestamp("us")),
        names.dropoff: pa.array(dropoff, pa.timestamp("us")),
        "PULocationID": pa.array(np.arange(n, dtype=np.int64) % 5 + 1),
        "DOLocationID": pa.array(np.arange(n, dtype=np.int64) % 3 + 10),
        names.distance: pa.array(np.linspace(0.5, 5.0, n)),
    }
    for name, values in overrides.items():
        columns[name] = values
    return columns


def _write(tmp_path: Path, color: str, columns: dict[str, pa.Array]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{color}_tripdata_2023-01.parquet"
    pq.write_table(pa.table(columns), path)
    return path


def _column_name(color: str, short: str) -> str:
    names = layout(color)
    return {"pickup": names.pickup, "dropoff": names.dropoff, "trip_distance": names.distance}.get(
        short, short
    )


# --- duration and filter ------------------------------------------------------------------


@pytest.mark.parametrize("color", ["green", "yellow", "fhvhv"])
def test_duration_filter_keeps_1_to_60_minutes_inclusive(color: str, tmp_path: Path) -> None:
    seconds = [60.0, 3600.0, 59.4, 3600.6, -60.0, 0.0, 1800.0, 7200.0]
    path = _write(tmp_path, color, _columns(color, seconds))
    prepared = prepare_trips(path, color)
    assert prepared.rows_loaded == 8
    assert prepared.rows_kept == 3
    np.testing.assert_array_equal(prepared.frame["duration"].to_numpy(), [1.0, 60.0, 30.0])
    # The kept rows are the right ones (their own distances and zones travel with them).
    np.testing.assert_allclose(prepared.frame["trip_distance"], np.linspace(0.5, 5.0, 8)[[0, 1, 6]])
    assert list(prepared.frame["PULocationID"].astype(int)) == [1, 2, 2]


@pytest.mark.parametrize("color", ["green", "yellow"])
def test_prepared_layout(color: str, tmp_path: Path) -> None:
    path = _write(tmp_path, color, _columns(color, [600.0] * 4))
    frame = prepare_trips(path, color).frame
    assert list(frame.columns) == [
        "pickup_datetime",
        "PULocationID",
        "DOLocationID",
        "trip_distance",
        "duration",
        *REQUEST_COLUMNS,
    ]
    assert pd.api.types.is_datetime64_any_dtype(frame["pickup_datetime"])
    assert (frame["pickup_datetime"] == pd.Timestamp("2023-01-10 08:00")).all()
    assert frame["trip_distance"].dtype == np.float64
    assert frame["duration"].dtype == np.float64
    # VendorID is in the file; trip_type and passenger_count are not: missing, not an error.
    assert (frame["VendorID"] == 1.0).all()
    for name in REQUEST_COLUMNS:
        assert frame[name].dtype == np.float32
    assert frame["trip_type"].isna().all()
    assert frame["passenger_count"].isna().all()


def test_request_time_fields_and_nothing_known_after_the_trip(tmp_path: Path) -> None:
    n = 4
    columns = _columns(
        "green",
        [600.0, 30.0, 600.0, 600.0],  # the second trip is filtered out
        VendorID=pa.array([2, 1, None, 1], pa.int64()),
        trip_type=pa.array([1.0, 2.0, 2.0, None]),
        passenger_count=pa.array([1.0, 3.0, None, 5.0]),
        RatecodeID=pa.array([1.0] * n),
        store_and_fwd_flag=pa.array(["N"] * n),
        fare_amount=pa.array([10.0] * n),
        tip_amount=pa.array([1.0] * n),
        total_amount=pa.array([12.0] * n),
        ehail_fee=pa.nulls(n),
    )
    frame = prepare_trips(_write(tmp_path, "green", columns), "green").frame
    np.testing.assert_array_equal(frame["VendorID"], [2.0, np.nan, 1.0])
    np.testing.assert_array_equal(frame["trip_type"], [1.0, 2.0, np.nan])
    np.testing.assert_array_equal(frame["passenger_count"], [1.0, np.nan, 5.0])
    for after in ("RatecodeID", "store_and_fwd_flag", "fare_amount", "tip_amount", "ehail_fee"):
        assert after not in frame.columns


def test_fhvhv_month_distance_is_trip_miles_and_nothing_known_after_the_trip(
    tmp_path: Path,
) -> None:
    path = write_month(tmp_path, "fhvhv", JAN, rows=300)
    raw = pd.read_parquet(path)
    frame = prepare_trips(path, "fhvhv").frame
    kept = (raw["dropoff_datetime"] - raw["pickup_datetime"]).dt.total_seconds().between(60, 3600)
    np.testing.assert_array_equal(frame["trip_distance"], raw.loc[kept, "trip_miles"])
    # No request-time field of green or yellow in fhvhv files: missing, the same every month.
    for name in REQUEST_COLUMNS:
        assert frame[name].isna().all()
    known_after = {"trip_time", "base_passenger_fare", "driver_pay", "tips", "dropoff_datetime"}
    assert not known_after & set(frame.columns)


def test_request_time_field_that_is_not_a_number_is_missing(tmp_path: Path) -> None:
    columns = _columns("yellow", [600.0] * 2, VendorID=pa.array(["CMT", "VTS"]))
    frame = prepare_trips(_write(tmp_path, "yellow", columns), "yellow").frame
    assert frame["VendorID"].isna().all()


@pytest.mark.parametrize("color", ["green", "yellow", "fhvhv"])
def test_generated_month_matches_pandas_reference(color: str, tmp_path: Path) -> None:
    path = write_month(tmp_path, color, JAN)
    raw = pd.read_parquet(path)
    names = layout(color)
    minutes = (raw[names.dropoff] - raw[names.pickup]).dt.total_seconds() / 60
    expected = raw[(minutes >= 1) & (minutes <= 60)].reset_index(drop=True)

    prepared = prepare_trips(path, color)
    frame = prepared.frame
    assert prepared.rows_loaded == len(raw) == 2_000
    assert prepared.rows_kept == len(expected)
    assert 0 < prepared.rows_kept < prepared.rows_loaded  # the generator's outliers dropped
    assert frame["duration"].between(1, 60).all()
    np.testing.assert_allclose(
        frame["duration"], minutes[(minutes >= 1) & (minutes <= 60)], rtol=0, atol=1e-9
    )
    np.testing.assert_array_equal(frame["trip_distance"], expected[names.distance])
    for zone in ("PULocationID", "DOLocationID"):
        assert isinstance(frame[zone].dtype, pd.CategoricalDtype)
        categories = frame[zone].cat.categories
        assert pd.api.types.is_integer_dtype(categories)
        assert list(categories) == sorted(expected[zone].unique())
        np.testing.assert_array_equal(frame[zone].astype("int64"), expected[zone])
    np.testing.assert_array_equal(
        frame["pickup_datetime"].to_numpy(dtype="datetime64[us]"),
        expected[names.pickup].to_numpy(dtype="datetime64[us]"),
    )


def test_a_window_joins_its_months_in_order_with_the_union_of_their_zones(
    tmp_path: Path,
) -> None:
    first = _columns("green", [600.0] * 3, PULocationID=pa.array([5, 7, 5], pa.int64()))
    second = _columns("green", [120.0] * 2, PULocationID=pa.array([9, None], pa.int64()))
    months = [
        prepare_trips(_write(tmp_path / name, "green", columns), "green")
        for name, columns in (("a", first), ("b", second))
    ]
    joined = join_months(months)
    assert joined.rows_loaded == 5
    assert list(joined.frame.columns) == list(months[0].frame.columns)
    assert joined.frame.index.tolist() == [0, 1, 2, 3, 4]
    zones = joined.frame["PULocationID"]
    assert isinstance(zones.dtype, pd.CategoricalDtype)  # not Python objects
    assert list(zones.cat.categories) == [5, 7, 9]
    assert zones.tolist()[:4] == [5, 7, 5, 9]
    assert zones.isna().tolist() == [False, False, False, False, True]
    np.testing.assert_array_equal(joined.frame["duration"], [10.0] * 3 + [2.0] * 2)
    assert join_months(months[:1]) is months[0]


def test_missing_timestamps_are_dropped(tmp_path: Path) -> None:
    columns = _columns("green", [600.0, 600.0, 600.0])
    columns["lpep_dropoff_datetime"] = pa.array(
        [START + np.timedelta64(600, "s"), None, START + np.timedelta64(600, "s")],
        pa.timestamp("us"),
    )
    prepared = prepare_trips(_write(tmp_path, "green", columns), "green")
    assert prepared.rows_loaded == 3
    assert prepared.rows_kept == 2


def test_null_zone_ids_become_missing_categories(tmp_path: Path) -> None:
    columns = _columns(
        "green",
        [600.0] * 4,
        PULocationID=pa.array([5, None, 7, 5], pa.int64()),
        DOLocationID=pa.array([None, None, 3, 4], pa.int64()),
    )
    frame = prepare_trips(_write(tmp_path, "green", columns), "green").frame
    assert len(frame) == 4
    assert list(frame["PULocationID"].cat.categories) == [5, 7]
    assert list(frame["DOLocationID"].cat.categories) == [3, 4]
    assert frame["PULocationID"].isna().tolist() == [False, True, False, False]
    assert frame["DOLocationID"].isna().tolist() == [True, True, False, False]
    assert frame["PULocationID"].iloc[2] == 7


def test_all_null_zone_column(tmp_path: Path) -> None:
    columns = _columns("green", [600.0] * 2, PULocationID=pa.array([None, None], pa.int64()))
    frame = prepare_trips(_write(tmp_path, "green", columns), "green").frame
    assert frame["PULocationID"].isna().all()
    assert len(frame["PULocationID"].cat.categories) == 0


def test_zone_ids_stored_as_doubles(tmp_path: Path) -> None:
    columns = _columns(
        "yellow",
        [600.0] * 3,
        PULocationID=pa.array([132.0, 236.0, 132.0]),
        DOLocationID=pa.array([1.0, None, 265.0]),
    )
    frame = prepare_trips(_write(tmp_path, "yellow", columns), "yellow").frame
    assert list(frame["PULocationID"].cat.categories) == [132, 236]
    assert list(frame["DOLocationID"].cat.categories) == [1, 265]
    assert pd.api.types.is_integer_dtype(frame["PULocationID"].cat.categories)
    assert frame["DOLocationID"].isna().tolist() == [False, True, False]


def test_integer_trip_distance_and_other_timestamp_units(tmp_path: Path) -> None:
    columns = _columns("green", [120.0, 240.0])
    columns["trip_distance"] = pa.array([1, 2], pa.int32())
    columns["lpep_pickup_datetime"] = columns["lpep_pickup_datetime"].cast(pa.timestamp("ns"))
    columns["lpep_dropoff_datetime"] = columns["lpep_dropoff_datetime"].cast(pa.timestamp("ms"))
    frame = prepare_trips(_write(tmp_path, "green", columns), "green").frame
    assert frame["trip_distance"].dtype == np.float64
    np.testing.assert_array_equal(frame["duration"], [2.0, 4.0])


# --- schema and data errors ------------------------------------------------------------------


@pytest.mark.parametrize("color", ["green", "yellow", "fhvhv"])
@pytest.mark.parametrize("short", REQUIRED)
def test_missing_required_column(color: str, short: str, tmp_path: Path) -> None:
    column = _column_name(color, short)
    columns = _columns(color, [600.0] * 3)
    del columns[column]
    with pytest.raises(DataError, match=f"'{column}'"):
        prepare_trips(_write(tmp_path, color, columns), color)


def test_file_of_the_other_color(tmp_path: Path) -> None:
    path = _write(tmp_path, "green", _columns("green", [600.0]))
    with pytest.raises(DataError, match="'tpep_pickup_datetime'"):
        prepare_trips(path, "yellow")


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("trip_distance", pa.array(["1.5", "2.0"])),
        ("lpep_pickup_datetime", pa.array(["2023-01-10 08:00:00"] * 2)),
        ("lpep_dropoff_datetime", pa.array([1.0, 2.0])),
        ("PULocationID", pa.array(["161", "236"])),
        ("DOLocationID", pa.array([True, False])),
    ],
)
def test_column_of_the_wrong_type(column: str, values: pa.Array, tmp_path: Path) -> None:
    columns = _columns("green", [600.0, 600.0], **{column: values})
    with pytest.raises(DataError, match=f"'{column}'") as caught:
        prepare_trips(_write(tmp_path, "green", columns), "green")
    assert str(values.type) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_no_rows_kept(tmp_path: Path) -> None:
    path = _write(tmp_path, "green", _columns("green", [10.0, 7200.0, -5.0]))
    with pytest.raises(DataError, match="no trips kept") as caught:
        prepare_trips(path, "green")
    assert "3 rows" in str(caught.value)
    assert path.name in str(caught.value)


def test_empty_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "green", _columns("green", []))
    with pytest.raises(DataError, match="none of 0 rows"):
        prepare_trips(path, "green")


def test_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "green_tripdata_2023-01.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="not a readable parquet file"):
        prepare_trips(path, "green")


def test_unknown_color(tmp_path: Path) -> None:
    path = _write(tmp_path, "green", _columns("green", [600.0]))
    with pytest.raises(InvalidInputError, match="'blue'"):
        prepare_trips(path, "blue")


@pytest.mark.parametrize(
    ("color", "names"),
    [
        ("green", ("lpep_pickup_datetime", "lpep_dropoff_datetime")),
        ("yellow", ("tpep_pickup_datetime", "tpep_dropoff_datetime")),
        ("fhvhv", ("pickup_datetime", "dropoff_datetime")),
    ],
)
def test_timestamp_columns(color: str, names: tuple[str, str]) -> None:
    assert timestamp_columns(color) == names


def test_timestamp_columns_unknown_color() -> None:
    with pytest.raises(InvalidInputError, match=r"'fhv'.*green, yellow"):
        timestamp_columns("fhv")


# --- raw rows at prediction time ------------------------------------------------------------


@pytest.mark.parametrize("color", ["green", "yellow", "fhvhv"])
def test_normalize_raw_trips_renames(color: str) -> None:
    raw = make_trips(color, JAN, rows=20)
    names = layout(color)
    frame = normalize_raw_trips(raw)
    assert {"pickup_datetime", "dropoff_datetime", "trip_distance"} <= set(frame.columns)
    assert not {"lpep_pickup_datetime", "tpep_pickup_datetime", "trip_miles"} & set(frame)
    pd.testing.assert_series_equal(frame["pickup_datetime"], raw[names.pickup], check_names=False)
    pd.testing.assert_series_equal(frame["trip_distance"], raw[names.distance], check_names=False)
    assert len(frame) == 20  # no duration filter at prediction time
    assert {names.pickup, names.distance} <= set(raw.columns)  # the input is not modified


def test_normalize_raw_trips_without_dropoff() -> None:
    raw = make_trips("green", JAN, rows=5).drop(columns=["lpep_dropoff_datetime"])
    frame = normalize_raw_trips(raw)
    assert "pickup_datetime" in frame.columns


@pytest.mark.parametrize(
    ("dropped", "named"),
    [
        ("trip_distance", "trip_distance"),
        ("PULocationID", "PULocationID"),
        ("lpep_pickup_datetime", "pickup_datetime"),
    ],
)
def test_normalize_raw_trips_rejects_missing_columns(dropped: str, named: str) -> None:
    raw = make_trips("green", JAN, rows=5).drop(columns=[dropped])
    with pytest.raises(DataError, match=named):
        normalize_raw_trips(raw)


def test_normalize_raw_trips_request_fields_are_optional() -> None:
    raw = make_trips("yellow", JAN, rows=3).drop(columns=["VendorID", "passenger_count"])
    raw["trip_type"] = ["1", "x", None]  # e.g. from JSON: numbers as text, or junk
    frame = normalize_raw_trips(raw)
    assert frame["VendorID"].isna().all()
    assert frame["passenger_count"].isna().all()
    np.testing.assert_array_equal(frame["trip_type"], [1.0, np.nan, np.nan])


def test_normalize_raw_trips_names_all_missing_columns() -> None:
    with pytest.raises(DataError) as caught:
        normalize_raw_trips(pd.DataFrame({"VendorID": [1]}))
    for column in (
        "pickup_datetime",
        "PULocationID",
        "DOLocationID",
        "trip_distance or trip_miles",
    ):
        assert column in str(caught.value)


@pytest.mark.parametrize("color", ["green", "yellow", "fhvhv"])
def test_raw_example_round_trips(color: str, tmp_path: Path) -> None:
    frame = prepare_trips(write_month(tmp_path, color, JAN, rows=200), color).frame
    raw = raw_example(frame, color, rows=4)
    names = layout(color)
    assert list(raw.columns) == [
        names.pickup,
        "PULocationID",
        "DOLocationID",
        names.distance,
        *REQUEST_COLUMNS,
    ]
    assert len(raw) == 4
    assert raw["PULocationID"].dtype == np.int64
    back = normalize_raw_trips(raw)
    np.testing.assert_array_equal(back["PULocationID"], frame["PULocationID"].head(4).astype(int))
    np.testing.assert_array_equal(back["trip_distance"], frame["trip_distance"].head(4))


def test_null_zone_with_negative_zone_id_is_missing(tmp_path: Path) -> None:
    columns = _columns("green", [600.0] * 3, PULocationID=pa.array([-5, None, 7], pa.int64()))
    frame = prepare_trips(_write(tmp_path, "green", columns), "green").frame
    assert frame["PULocationID"].isna().tolist() == [False, True, False]
    assert list(frame["PULocationID"].cat.categories) == [-5, 7]
