"""Prepare: trips with their duration in minutes, kept when 1 <= duration <= 60.

Reads only the columns the model needs, computes the duration vectorized, and gives the
zones a categorical type. The colors name the same things differently (``LAYOUTS``): green
and yellow prefix their timestamps (``lpep_``, ``tpep_``), high-volume for-hire trips
(``fhvhv``) do not and record their distance as ``trip_miles``; all become
``pickup_datetime``, ``dropoff_datetime`` and ``trip_distance``. The request-time fields
(vendor, trip type, passenger count) are carried as float32 where a month has them, NaN
where it does not (fhvhv has none of them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from taxi_duration.choices import MAX_DURATION_MINUTES as MAX_DURATION_MINUTES
from taxi_duration.choices import MIN_DURATION_MINUTES as MIN_DURATION_MINUTES
from taxi_duration.choices import REQUEST_COLUMNS as REQUEST_COLUMNS
from taxi_duration.choices import ZONE_COLUMNS as ZONE_COLUMNS
from taxi_duration.choices import one_of
from taxi_duration.errors import DataError


@dataclass(frozen=True)
class TlcLayout:
    """Where a color's files keep the pickup and dropoff times and the distance."""

    pickup: str
    dropoff: str
    distance: str


LAYOUTS = {
    "green": TlcLayout("lpep_pickup_datetime", "lpep_dropoff_datetime", "trip_distance"),
    "yellow": TlcLayout("tpep_pickup_datetime", "tpep_dropoff_datetime", "trip_distance"),
    "fhvhv": TlcLayout("pickup_datetime", "dropoff_datetime", "trip_miles"),
}
# The other columns the TLC publishes for green and yellow trips: known only at the end of
# the trip (dropoff, fares, tips, totals, rate code) or not predictive. A model accepts and
# ignores them, so a published row scores as it is.
IGNORED_TLC_COLUMNS = (
    "lpep_dropoff_datetime",
    "tpep_dropoff_datetime",
    "store_and_fwd_flag",
    "RatecodeID",
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "ehail_fee",
    "improvement_surcharge",
    "total_amount",
    "payment_type",
    "congestion_surcharge",
    "airport_fee",
    "Airport_fee",
    "cbd_congestion_fee",
    # High-volume for-hire trips: the company and bases, request and arrival times, and
    # what is known after the trip (its time in seconds, fares, pay, shared or not).
    "dropoff_datetime",
    "hvfhs_license_num",
    "dispatching_base_num",
    "originating_base_num",
    "request_datetime",
    "on_scene_datetime",
    "trip_time",
    "base_passenger_fare",
    "tolls",
    "bcf",
    "sales_tax",
    "tips",
    "driver_pay",
    "shared_request_flag",
    "shared_match_flag",
    "access_a_ride_flag",
    "wav_request_flag",
    "wav_match_flag",
)


@dataclass(frozen=True)
class PreparedTrips:
    """The kept trips of one month and how many rows the file had."""

    frame: pd.DataFrame
    rows_loaded: int

    @property
    def rows_kept(self) -> int:
        return len(self.frame)


def layout(color: str) -> TlcLayout:
    """A color's column names."""
    return LAYOUTS[one_of("color", color, LAYOUTS)]


def timestamp_columns(color: str) -> tuple[str, str]:
    """The pickup and dropoff column names of a color's files."""
    names = layout(color)
    return names.pickup, names.dropoff


def _check_schema(path: Path, color: str, needs_dropoff: bool = True) -> None:
    """Raise DataError unless the file is parquet with the needed columns, of the right types."""
    try:
        schema = pq.read_schema(path)
    except Exception as error:
        raise DataError(f"{path} is not a readable parquet file: {error}") from error
    names = layout(color)
    expected: dict[str, tuple[str, object]] = {
        names.pickup: ("a timestamp", pa.types.is_timestamp),
        **({names.dropoff: ("a timestamp", pa.types.is_timestamp)} if needs_dropoff else {}),
        "PULocationID": ("an integer", _is_whole_number),
        "DOLocationID": ("an integer", _is_whole_number),
        names.distance: ("a number", _is_number),
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


_POOL = pa.system_memory_pool()


def request_columns_in(path: Path) -> list[str]:
    """The request-time columns a file has as numbers (others are missing, not an error)."""
    schema = pq.read_schema(path)
    return [
        name
        for name in REQUEST_COLUMNS
        if name in schema.names and _is_number(schema.field(name).type)
    ]


def read_trips(path: Path, color: str) -> pa.Table:
    """The needed columns of a TLC file, renamed to pickup/dropoff_datetime, trip_distance.

    The five core columns come first, in the order they always had; the request-time
    columns the file has follow.
    """
    _check_schema(path, color)
    columns = trip_columns(path, color)
    # pq.read_table's own reader (the dataset scanner), on an allocator that gives back what
    # it frees: arrow's default one keeps a month's parquet decoding buffers (~250 MB).
    table = ds.dataset(path, format="parquet").to_table(columns=list(columns), memory_pool=_POOL)
    return table.rename_columns(list(columns.values()))


def trip_columns(path: Path, color: str) -> dict[str, str]:
    """The columns ``read_trips`` reads from a file, each with its prepared name.

    The five core columns come first, in the order they always had; the request-time
    columns the file has follow.
    """
    names = layout(color)
    optional = request_columns_in(path)
    return {
        names.pickup: "pickup_datetime",
        names.dropoff: "dropoff_datetime",
        **{name: name for name in ZONE_COLUMNS},
        names.distance: "trip_distance",
        **{name: name for name in optional},
    }


def duration_minutes(table: pa.Table) -> np.ndarray:
    """Dropoff minus pickup in minutes, as float64 (NaN where either is missing).

    Computed as the course does (seconds, then divided by 60), to the last bit.
    """
    minutes = np.empty(table.num_rows, dtype=np.float64)
    start = 0
    # Batch by batch (views of arrow's memory): no copy of the whole timestamp columns.
    for batch in table.select(["pickup_datetime", "dropoff_datetime"]).to_batches():
        pickup = batch.column(0).to_numpy(zero_copy_only=False)
        dropoff = batch.column(1).to_numpy(zero_copy_only=False)
        end = start + batch.num_rows
        np.divide(dropoff - pickup, np.timedelta64(1, "s"), out=minutes[start:end])
        start = end
    minutes /= 60.0
    return minutes


# Zone ids spanning at most this many values are encoded by table lookup, not sorting.
_MAX_LOOKUP_SPAN = 1 << 20


def zones_as_categories(values: pa.ChunkedArray | pa.Array) -> pd.Categorical:
    """Zone ids (integers, nulls allowed) as a categorical of the int ids present."""
    ids = pc.cast(values, pa.int32(), safe=False, memory_pool=_POOL)
    missing = None
    if values.null_count:
        missing = pc.is_null(values).to_numpy(zero_copy_only=False)
        ids = pc.fill_null(ids, 0)  # a placeholder, so that the ids stay int32
    numbers = ids.to_numpy(zero_copy_only=False)
    present = numbers if missing is None else numbers[~missing]
    if len(present) == 0:
        codes = np.full(len(numbers), -1, dtype=np.int16)
        return pd.Categorical.from_codes(codes, categories=pd.Index([], dtype="int32"))
    low, high = int(present.min()), int(present.max())
    if high - low < _MAX_LOOKUP_SPAN:
        # Which ids occur, then each row's rank among them: two passes, no sort.
        seen = np.flatnonzero(np.bincount(present - low, minlength=high - low + 1))
        categories = (seen + low).astype(np.int32)
        dtype = np.int16 if len(categories) < 32_000 else np.int32
        lookup = np.zeros(high - low + 1, dtype=dtype)
        lookup[seen] = np.arange(len(seen), dtype=dtype)
        if missing is not None:
            numbers = np.where(missing, low, numbers)
        codes = lookup[numbers - low]
    else:
        categories, inverse = np.unique(present, return_inverse=True)
        dtype = np.int16 if len(categories) < 32_000 else np.int32
        codes = np.empty(len(numbers), dtype=dtype)
        if missing is None:
            codes[:] = inverse
        else:
            codes[~missing] = inverse
    if missing is not None:
        codes[missing] = -1
    return pd.Categorical.from_codes(codes, categories=pd.Index(categories, dtype="int32"))


def _writable(array: np.ndarray) -> np.ndarray:
    """The array itself, or a copy where it is a read-only view of arrow memory."""
    return array if array.flags.writeable else array.copy()


def prepare_trips(path: Path, color: str) -> PreparedTrips:
    """Read a TLC file and keep the trips of 1 to 60 minutes, zones as categories."""
    table = read_trips(path, color)
    rows_loaded = table.num_rows
    frame = kept_trips(table)
    if frame.empty:
        raise DataError(
            f"{path.name}: no trips kept: none of {rows_loaded} rows lasts "
            f"{MIN_DURATION_MINUTES:g} to {MAX_DURATION_MINUTES:g} minutes"
        )
    return PreparedTrips(frame=frame, rows_loaded=rows_loaded)


def kept_trips(table: pa.Table) -> pd.DataFrame:
    """The trips of 1 to 60 minutes of ``read_trips``' table (or a part of it), prepared.

    Columns are taken out of the table one at a time, each dropped once used, so that
    little more than the file's five columns is in memory at once.
    """
    duration = duration_minutes(table)
    keep = (duration >= MIN_DURATION_MINUTES) & (duration <= MAX_DURATION_MINUTES)
    duration = duration[keep]
    mask = pa.array(keep)
    del keep
    table = table.drop_columns(["dropoff_datetime"])

    def take(column: str) -> pa.ChunkedArray:
        nonlocal table
        kept = pc.filter(table.column(column), mask, memory_pool=_POOL)
        table = table.drop_columns([column])
        return kept

    columns: dict[str, object] = {
        "pickup_datetime": _writable(take("pickup_datetime").to_numpy()),
        "PULocationID": zones_as_categories(take("PULocationID")),
        "DOLocationID": zones_as_categories(take("DOLocationID")),
        "trip_distance": _writable(
            take("trip_distance").to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        ),
        "duration": duration,
    }
    for name in REQUEST_COLUMNS:
        if name not in table.column_names:
            columns[name] = np.full(len(duration), np.nan, dtype=np.float32)
            continue
        # float32 (small whole numbers), cast before the filter: half the bytes to move.
        narrow = pc.cast(table.column(name), pa.float32(), safe=False, memory_pool=_POOL)
        table = table.drop_columns([name])
        kept = pc.filter(narrow, mask, memory_pool=_POOL)
        del narrow
        columns[name] = _writable(kept.to_numpy(zero_copy_only=False))
    return pd.DataFrame(columns, copy=False)  # the arrays are new: no need to copy them


def join_months(months: Sequence[PreparedTrips]) -> PreparedTrips:
    """Consecutive prepared months as one (a training window), in the order given.

    The zones stay categorical, over the union of the months' zones (concatenating
    categoricals with different categories would give Python objects).
    """
    if len(months) == 1:
        return months[0]
    frames = [month.frame for month in months]
    zones = {
        name: pd.CategoricalDtype(
            pd.Index(
                sorted(set().union(*(frame[name].cat.categories for frame in frames))),
                dtype="int32",
            )
        )
        for name in ZONE_COLUMNS
    }
    frame = pd.concat([frame.astype(zones) for frame in frames], ignore_index=True)
    return PreparedTrips(frame=frame, rows_loaded=sum(month.rows_loaded for month in months))


RAW_PICKUP_COLUMNS = tuple(dict.fromkeys(names.pickup for names in LAYOUTS.values()))
RAW_DISTANCE_COLUMNS = tuple(dict.fromkeys(names.distance for names in LAYOUTS.values()))


def normalize_raw_trips(raw: pd.DataFrame) -> pd.DataFrame:
    """Raw TLC rows (any color, as published) in the prepared column layout.

    Used at prediction time, when the dropoff is not known: no duration filter. A pickup
    time given as text (e.g. from JSON) is parsed; one that can't be parsed is missing.
    The request-time columns are optional: absent or not a number, they are missing (NaN).
    """
    rename = {}
    for names in LAYOUTS.values():
        rename[names.pickup] = "pickup_datetime"
        rename[names.dropoff] = "dropoff_datetime"
        rename[names.distance] = "trip_distance"
    frame = raw.rename(columns=rename)
    missing = [c for c in ZONE_COLUMNS if c not in frame]
    if "pickup_datetime" not in frame:
        missing.insert(0, " or ".join(RAW_PICKUP_COLUMNS))
    if "trip_distance" not in frame:
        missing.append(" or ".join(RAW_DISTANCE_COLUMNS))
    if missing:
        raise DataError(f"input rows lack column(s) {', '.join(missing)}")
    if not pd.api.types.is_datetime64_any_dtype(frame["pickup_datetime"]):
        frame = frame.assign(
            pickup_datetime=pd.to_datetime(frame["pickup_datetime"], errors="coerce")
        )
    optional = {
        name: (
            pd.to_numeric(frame[name], errors="coerce").astype(np.float64)
            if name in frame
            else np.full(len(frame), np.nan)
        )
        for name in REQUEST_COLUMNS
    }
    return frame.assign(**optional)


def read_trips_to_score(path: Path, color: str) -> pd.DataFrame:
    """Every trip of a TLC file (no duration filter), in the raw layout a model is served with."""
    _check_schema(path, color, needs_dropoff=False)
    names = layout(color)
    optional = request_columns_in(path)
    table = pq.read_table(path, columns=[names.pickup, *ZONE_COLUMNS, names.distance, *optional])
    trips: pd.DataFrame = table.to_pandas()
    return trips


def raw_example(frame: pd.DataFrame, color: str, rows: int | None = 5) -> pd.DataFrame:
    """Prepared trips (the first ``rows``, or all) in the raw TLC layout a model is served with."""
    names = layout(color)
    head = frame if rows is None else frame.head(rows)
    return pd.DataFrame(
        {
            names.pickup: head["pickup_datetime"].to_numpy(),
            # Integers as published; floats (NaN for missing) where a zone is missing.
            "PULocationID": _zone_ids(head["PULocationID"]),
            "DOLocationID": _zone_ids(head["DOLocationID"]),
            names.distance: head["trip_distance"].to_numpy(),
            # Request-time fields as numbers, NaN where the month lacks them.
            **{
                name: head[name].to_numpy(dtype=np.float64)
                for name in REQUEST_COLUMNS
                if name in head
            },
        }
    )


def _zone_ids(zones: pd.Series) -> np.ndarray:
    if zones.isna().any():
        return zones.astype("float64").to_numpy()
    return zones.astype("int64").to_numpy()
