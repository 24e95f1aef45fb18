"""Small, seeded TLC-schema months for tests that must run without the real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from taxi_duration.ingest import tlc_file_name
from taxi_duration.months import Month

PREFIX = {"green": "lpep", "yellow": "tpep"}


def make_trips(color: str, month: Month, rows: int = 2_000, seed: int = 0) -> pd.DataFrame:
    """Trips whose duration depends on distance, zones and hour, like the real ones.

    About 5% of rows fall outside 1-60 minutes so that the filter has work to do.
    """
    rng = np.random.default_rng(seed + month.year * 12 + month.month)
    start = np.datetime64(f"{month}-01T00:00:00", "us")
    pickup = start + rng.integers(0, 27 * 24 * 3600, rows).astype("timedelta64[s]")
    pu = rng.integers(1, 60, rows)
    do = rng.integers(1, 60, rows)
    distance = np.round(rng.gamma(2.0, 1.5, rows), 2)
    hour = (pickup - pickup.astype("datetime64[D]")).astype("timedelta64[h]").astype(int)
    minutes = 3 + 3.2 * distance + (pu % 7) + (do % 5) + 4 * ((hour >= 7) & (hour <= 9))
    minutes = minutes + rng.normal(0, 2, rows)
    outliers = rng.random(rows) < 0.05
    minutes[outliers] = rng.choice([0.2, 75.0, -3.0], outliers.sum())
    dropoff = pickup + (minutes * 60_000_000).astype("timedelta64[us]")
    if color == "fhvhv":
        return _fhvhv_trips(rng, pickup, dropoff, pu, do, distance, minutes)
    prefix = PREFIX[color]
    return pd.DataFrame(
        {
            "VendorID": rng.integers(1, 3, rows).astype("int64"),
            f"{prefix}_pickup_datetime": pickup,
            f"{prefix}_dropoff_datetime": dropoff,
            "store_and_fwd_flag": "N",
            "RatecodeID": 1.0,
            "PULocationID": pu.astype("int64"),
            "DOLocationID": do.astype("int64"),
            "passenger_count": 1.0,
            "trip_distance": distance,
            "fare_amount": np.round(2.5 + 2.0 * distance, 2),
            "total_amount": np.round(4.0 + 2.4 * distance, 2),
        }
    )


def write_month(
    directory: Path, color: str, month: Month, rows: int = 2_000, seed: int = 0
) -> Path:
    """Write a month under the TLC file name and return its path."""
    return write_trips(directory, color, month, make_trips(color, month, rows, seed))


def with_zero_distances(trips: pd.DataFrame, share: float) -> pd.DataFrame:
    """The trips with a distance of 0 in ``share`` of the rows, spread over the month (a
    broken odometer: the durations stay as they were)."""
    zero = np.arange(len(trips)) % 100 < round(share * 100)
    return trips.assign(trip_distance=trips["trip_distance"].where(~zero, 0.0))


def slower(trips: pd.DataFrame, factor: float) -> pd.DataFrame:
    """The same trips, each lasting ``factor`` times as long (any layout's timestamps)."""
    [pickup] = [c for c in trips.columns if c.endswith("pickup_datetime")]
    [dropoff] = [c for c in trips.columns if c.endswith("dropoff_datetime")]
    slowed = trips.copy()
    slowed[dropoff] = trips[pickup] + (trips[dropoff] - trips[pickup]) * factor
    if "trip_time" in slowed:
        slowed["trip_time"] = np.round(slowed["trip_time"] * factor).astype("int64")
    return slowed


def write_trips(directory: Path, color: str, month: Month, trips: pd.DataFrame) -> Path:
    """Write ``trips`` as ``month``'s file, under the TLC file name; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / tlc_file_name(color, month)
    trips.to_parquet(path, index=False)
    return path


def write_bad_months(directory: Path) -> Path:
    """Green 2023-01..04, two of them broken: 2023-02 with 90% of its distances 0 (it fails
    the zero-distance check), 2023-04 without its ``PULocationID`` column."""
    for month in (Month(2023, 1), Month(2023, 3)):
        write_month(directory, "green", month)
    feb, apr = Month(2023, 2), Month(2023, 4)
    write_trips(directory, "green", feb, with_zero_distances(make_trips("green", feb), 0.9))
    write_trips(directory, "green", apr, make_trips("green", apr).drop(columns="PULocationID"))
    return directory


def _fhvhv_trips(
    rng: np.random.Generator,
    pickup: np.ndarray,
    dropoff: np.ndarray,
    pu: np.ndarray,
    do: np.ndarray,
    distance: np.ndarray,
    minutes: np.ndarray,
) -> pd.DataFrame:
    """The high-volume for-hire layout (TLC data dictionary, 2023): no prefix on the
    timestamps, the distance as ``trip_miles``, int32 zones, the company and bases as text,
    and what is known only after the trip (``trip_time`` in seconds, fares, pay)."""
    rows = len(pickup)
    request = pickup - rng.integers(60, 600, rows).astype("timedelta64[s]")
    fare = np.round(5.0 + 1.8 * distance + 0.6 * np.clip(minutes, 0, None), 2)
    return pd.DataFrame(
        {
            "hvfhs_license_num": rng.choice(["HV0003", "HV0005"], rows),
            "dispatching_base_num": rng.choice(["B03404", "B03406"], rows),
            "originating_base_num": "B03404",
            "request_datetime": request,
            "on_scene_datetime": request + np.timedelta64(120, "s"),
            "pickup_datetime": pickup,
            "dropoff_datetime": dropoff,
            "PULocationID": pu.astype("int32"),
            "DOLocationID": do.astype("int32"),
            "trip_miles": distance,
            "trip_time": np.round(minutes * 60).astype("int64"),
            "base_passenger_fare": fare,
            "tolls": 0.0,
            "bcf": np.round(0.025 * fare, 2),
            "sales_tax": np.round(0.08875 * fare, 2),
            "congestion_surcharge": 2.75,
            "airport_fee": 0.0,
            "tips": 0.0,
            "driver_pay": np.round(0.7 * fare, 2),
            "shared_request_flag": "N",
            "shared_match_flag": "N",
            "access_a_ride_flag": " ",
            "wav_request_flag": "N",
            "wav_match_flag": "N",
        }
    )
