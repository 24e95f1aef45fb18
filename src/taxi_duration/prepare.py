"""Prepare: trips with their duration in minutes, kept when 1 <= duration <= 60.

Reads only the columns the model needs, computes the duration vectorized, and gives the
zones a categorical type. Green and yellow files differ only in the prefix of their
timestamp columns (``lpep_`` and ``tpep_``); both become ``pickup_datetime`` and
``dropoff_datetime``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from taxi_duration.errors import DataError, InvalidInputError

MIN_DURATION_MINUTES = 1.0
MAX_DURATION_MINUTES = 60.0
ZONE_COLUMNS = ("PULocationID", "DOLocationID")
_TIMESTAMP_PREFIX = {"green": "lpep", "yellow": "tpep"}


@dataclass(frozen=True)
class PreparedTrips:
    """The kept trips of one month and how many rows the file had."""

    frame: pd.DataFrame
    rows_loaded: int

    @property
    def rows_kept(self) -> int:
        return len(self.frame)


def timestamp_columns(color: str) -> tuple[str, str]:
    """The pickup and dropoff column names of a color's files."""
    try:
        prefix = _TIMESTAMP_PREFIX[color]
    except KeyError:
        allowed = ", ".join(_TIMESTAMP_PREFIX)
        raise InvalidInputError(f"color {color!r} is unknown: allowed are {allowed}") from None
    return f"{prefix}_pickup_datetime", f"{prefix}_dropoff_datetime"


def _check_schema(schema: pa.Schema, path: Path, color: str) -> None:
    pickup, dropoff = timestamp_columns(color)
    expected: dict[str, tuple[str, object]] = {
        pickup: ("a timestamp", pa.types.is_timestamp),
        dropoff: ("a timestamp", pa.types.is_timestamp),
        "PULocationID": ("an integer", _is_whole_number),
        "DOLocationID": ("an integer", _is_whole_number),
        "trip_distance": ("a number", _is_number),
    }
    for column, (kind, is_kind) in expected.items():
        if column not in schema.names:
            raise DataError(f"{path.name}: required column {column!r} is missing ({color} data)")
        field_type = schema.field(column).type
        if not is_kind(field_type):  # type: ignore[operator]
            raise DataError(f"{path.name}: column {column!r} is {field_type}, expected {kind}")


def _is_number(field_type: pa.DataType) -> bool:
    return bool(pa.types.is_integer(field_type) or pa.types.is_floating(field_type))


def _is_whole_number(field_type: pa.DataType) -> bool:
    # Some published months store zone ids as doubles.
    return _is_number(field_type)


def read_trips(path: Path, color: str) -> pa.Table:
    """The needed columns of a TLC file, timestamps renamed to pickup/dropoff_datetime."""
    try:
        schema = pq.read_schema(path)
    except Exception as error:
        raise DataError(f"{path} is not a readable parquet file: {error}") from error
    _check_schema(schema, path, color)
    pickup, dropoff = timestamp_columns(color)
    table = pq.read_table(path, columns=[pickup, dropoff, *ZONE_COLUMNS, "trip_distance"])
    return table.rename_columns(
        ["pickup_datetime", "dropoff_datetime", *ZONE_COLUMNS, "trip_distance"]
    )


def duration_minutes(table: pa.Table) -> np.ndarray:
    """Dropoff minus pickup in minutes, as float64 (NaN where either is missing)."""
    pickup = table.column("pickup_datetime").to_numpy()
    dropoff = table.column("dropoff_datetime").to_numpy()
    seconds = (dropoff - pickup) / np.timedelta64(1, "s")
    return np.asarray(seconds / 60.0, dtype=np.float64)


def zones_as_categories(values: pa.ChunkedArray) -> pd.Categorical:
    """Zone ids (integers, nulls allowed) as a categorical of int categories; nulls missing."""
    ids = pc.cast(values, pa.int32(), safe=False).to_numpy(zero_copy_only=False)
    present = ~pc.is_null(values).to_numpy(zero_copy_only=False)
    categories = np.unique(ids[present])
    # pandas narrows the codes to the smallest integer type that fits.
    codes = np.full(len(ids), -1, dtype=np.int32)
    codes[present] = np.searchsorted(categories, ids[present])
    return pd.Categorical.from_codes(codes, categories=pd.Index(categories, dtype="int32"))


def prepare_trips(path: Path, color: str) -> PreparedTrips:
    """Read a TLC file and keep the trips of 1 to 60 minutes, zones as categories."""
    table = read_trips(path, color)
    rows_loaded = table.num_rows
    duration = duration_minutes(table)
    keep = (duration >= MIN_DURATION_MINUTES) & (duration <= MAX_DURATION_MINUTES)
    kept = table.filter(pa.array(keep))
    del table
    frame = pd.DataFrame(
        {
            "pickup_datetime": kept.column("pickup_datetime").to_numpy(),
            "PULocationID": zones_as_categories(kept.column("PULocationID")),
            "DOLocationID": zones_as_categories(kept.column("DOLocationID")),
            "trip_distance": kept.column("trip_distance")
            .to_numpy(zero_copy_only=False)
            .astype(np.float64, copy=False),
            "duration": duration[keep],
        }
    )
    if frame.empty:
        raise DataError(
            f"{path.name}: no trips kept: none of {rows_loaded} rows lasts "
            f"{MIN_DURATION_MINUTES:g} to {MAX_DURATION_MINUTES:g} minutes"
        )
    return PreparedTrips(frame=frame, rows_loaded=rows_loaded)


def normalize_raw_trips(raw: pd.DataFrame) -> pd.DataFrame:
    """Raw TLC rows (green or yellow, as published) in the prepared column layout.

    Used at prediction time, when the dropoff is not known: no duration filter.
    """
    rename = {}
    for prefix in _TIMESTAMP_PREFIX.values():
        rename[f"{prefix}_pickup_datetime"] = "pickup_datetime"
        rename[f"{prefix}_dropoff_datetime"] = "dropoff_datetime"
    frame = raw.rename(columns=rename)
    missing = [c for c in ("pickup_datetime", *ZONE_COLUMNS, "trip_distance") if c not in frame]
    if missing:
        raise DataError(f"input rows lack column(s) {', '.join(missing)}")
    return frame


def raw_example(frame: pd.DataFrame, color: str, rows: int = 5) -> pd.DataFrame:
    """A few prepared trips in the raw TLC layout a model is served with (no dropoff)."""
    pickup, _ = timestamp_columns(color)
    head = frame.head(rows)
    return pd.DataFrame(
        {
            pickup: head["pickup_datetime"].to_numpy(),
            "PULocationID": head["PULocationID"].astype("int64").to_numpy(),
            "DOLocationID": head["DOLocationID"].astype("int64").to_numpy(),
            "trip_distance": head["trip_distance"].to_numpy(),
        }
    )
