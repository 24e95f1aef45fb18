"""What the prediction service accepts: trips in MLflow's scoring protocol, checked.

A request body (``{"dataframe_records": [...]}`` or ``{"dataframe_split": {"columns": [...],
"data": [...]}}``, as ``mlflow models serve`` takes) or one trip as a JSON object becomes the
trips a registered version predicts from, in the raw layout its signature names. A bad
request raises ``InvalidInputError`` with one line naming the field, the trip and what is
allowed, before anything is predicted: a batch is answered whole or not at all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from taxi_duration.checks import LONG_TRIP_MILES
from taxi_duration.choices import FIRST_ZONE_ID, LAST_ZONE_ID, REQUEST_COLUMNS, ZONE_COLUMNS
from taxi_duration.errors import InvalidInputError
from taxi_duration.prepare import RAW_DISTANCE_COLUMNS, RAW_PICKUP_COLUMNS

RECORDS = "dataframe_records"
SPLIT = "dataframe_split"
FORMATS = (RECORDS, SPLIT)
# The layout of the trips handed to a model: names its signature knows, one per role.
PICKUP = "pickup_datetime"
DISTANCE = "trip_distance"
_EXAMPLE_TIME = "2023-03-01T08:15:00"
# TLC times are New York's wall-clock times: a time given with an offset is read as such.
_TLC_TIME_ZONE = "America/New_York"
_ZONES_ALLOWED = (
    f"allowed are whole numbers {FIRST_ZONE_ID}-{LAST_ZONE_ID} (the TLC's taxi zones), "
    "or null for an unknown zone"
)
_DISTANCE_ALLOWED = f"allowed 0-{LONG_TRIP_MILES:g} miles"

# A fixed trip every version must answer before it is served (the service's smoke request).
SMOKE_TRIP: dict[str, Any] = {
    PICKUP: _EXAMPLE_TIME,
    "PULocationID": 74,
    "DOLocationID": 75,
    DISTANCE: 2.5,
}


def decode_json(body: bytes) -> Any:
    """The request's JSON; malformed JSON or text that is not UTF-8 is a bad request."""
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise InvalidInputError("request body is not UTF-8 text: send JSON") from None
    except json.JSONDecodeError as error:
        raise InvalidInputError(
            f"request body is not valid JSON: {error.msg} at line {error.lineno} "
            f"column {error.colno}"
        ) from None


def trips_from_request(body: bytes) -> pd.DataFrame:
    """The trips of a scoring request (MLflow's ``dataframe_records`` or ``dataframe_split``)."""
    payload = decode_json(body)
    given = sorted(payload) if isinstance(payload, dict) else []
    formats = [name for name in FORMATS if name in given]
    if len(formats) != 1:
        got = f"got {', '.join(given)}" if given else f"got a JSON {_kind(payload)}"
        raise InvalidInputError(
            f"request needs exactly one of {', '.join(FORMATS)} (MLflow's scoring protocol): {got}"
        )
    if formats[0] == RECORDS:
        records = payload[RECORDS]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise InvalidInputError(
                f"{RECORDS} must be a list of trips (JSON objects): got a JSON {_kind(records)}"
            )
        columns = list(dict.fromkeys(name for record in records for name in record))
        table = {name: [record.get(name) for record in records] for name in columns}
        return checked_trips(table, len(records))
    return checked_trips(*_split_table(payload[SPLIT]))


def trip_from_request(body: bytes) -> pd.DataFrame:
    """One trip given as a JSON object (the service's plain endpoint), as a one-row frame."""
    trip = decode_json(body)
    if not isinstance(trip, dict):
        raise InvalidInputError(
            f"request must be one trip (a JSON object): got a JSON {_kind(trip)}"
        )
    return checked_trips({name: [value] for name, value in trip.items()}, 1)


def _split_table(split: Any) -> tuple[dict[str, list[Any]], int]:
    """Columns by name from pandas' split orient (``index``, if given, is ignored)."""
    columns = split.get("columns") if isinstance(split, dict) else None
    rows = split.get("data") if isinstance(split, dict) else None
    if (
        not isinstance(columns, list)
        or not all(isinstance(name, str) for name in columns)
        or not isinstance(rows, list)
        or not all(isinstance(row, list) for row in rows)
    ):
        raise InvalidInputError(
            f"{SPLIT} needs 'columns' (a list of names) and 'data' (a list of rows, each a "
            "list of values)"
        )
    for number, row in enumerate(rows):
        if len(row) != len(columns):
            raise InvalidInputError(
                f"{SPLIT} data row {number} has {len(row)} values for {len(columns)} columns"
            )
    return {name: [row[i] for row in rows] for i, name in enumerate(columns)}, len(rows)


def checked_trips(table: Mapping[str, Sequence[Any]], rows: int) -> pd.DataFrame:
    """The trips a model predicts from: pickup time, zones, distance and the request-time
    fields given, each checked. The first bad value raises, naming its field and trip."""
    if rows == 0:
        raise InvalidInputError("request holds no trips: give at least one")
    trips = {
        PICKUP: _pickup_times(table, rows),
        **{zone: _zones(zone, table.get(zone), rows) for zone in ZONE_COLUMNS},
        DISTANCE: _distances(table, rows),
    }
    for name in REQUEST_COLUMNS:
        if name in table:
            trips[name] = _numbers(name, table[name])
    return pd.DataFrame(trips)


def _first_given(
    table: Mapping[str, Sequence[Any]], names: Sequence[str], rows: int
) -> tuple[list[Any], list[str]]:
    """Each trip's first non-null value among ``names`` (layouts differ only in names), and
    the name it came from."""
    values: list[Any] = [None] * rows
    sources = [names[0]] * rows
    for name in names:
        column = table.get(name)
        if column is None:
            continue
        for row, value in enumerate(column):
            if values[row] is None and not _is_null(value):
                values[row], sources[row] = value, name
    return values, sources


def _pickup_times(table: Mapping[str, Sequence[Any]], rows: int) -> np.ndarray:
    values, sources = _first_given(table, RAW_PICKUP_COLUMNS, rows)
    for row, value in enumerate(values):
        if value is None:
            raise InvalidInputError(
                f"{' or '.join(RAW_PICKUP_COLUMNS)} is missing in trip {row}: give the pickup "
                f"time, ISO 8601 (e.g. {_EXAMPLE_TIME})"
            )
        if not isinstance(value, str):
            raise _not_a_time(sources[row], value, row)
    try:  # all at once: one by one takes longer than the model on a batch
        times = pd.to_datetime(pd.Series(values), format="ISO8601")
    except (ValueError, TypeError):  # one that is not a time, or offsets mixed with none
        times = pd.Series(
            [_pickup_time(sources[row], value, row) for row, value in enumerate(values)]
        )
    if times.isna().any():  # text pandas reads as no time ("", "NaT")
        row = int(np.flatnonzero(times.isna().to_numpy())[0])
        raise _not_a_time(sources[row], values[row], row)
    if isinstance(times.dtype, pd.DatetimeTZDtype):
        times = times.dt.tz_convert(_TLC_TIME_ZONE).dt.tz_localize(None)
    return times.to_numpy(dtype="datetime64[us]")


def _pickup_time(source: str, value: str, row: int) -> pd.Timestamp:
    """One pickup time, naive in New York's time when given with an offset."""
    try:
        time = pd.Timestamp(value)
    except ValueError:
        raise _not_a_time(source, value, row) from None
    if pd.isna(time):  # "" or "NaT"
        raise _not_a_time(source, value, row)
    if time.tzinfo is not None:
        time = time.tz_convert(_TLC_TIME_ZONE).tz_localize(None)
    return time


def _not_a_time(source: str, value: Any, row: int) -> InvalidInputError:
    return InvalidInputError(
        f"{source} {value!r} in trip {row} is not a date and time: "
        f"give ISO 8601 text (e.g. {_EXAMPLE_TIME})"
    )


def _zones(name: str, column: Sequence[Any] | None, rows: int) -> np.ndarray:
    """Zone ids as published: integers, or floats with NaN where some are unknown."""
    if column is None:
        raise InvalidInputError(
            f"{name} is missing: give the {'pickup' if name.startswith('PU') else 'dropoff'} "
            f"zone id of each trip ({_ZONES_ALLOWED})"
        )
    zones = np.full(rows, np.nan)
    for row, value in enumerate(column):
        if _is_null(value):
            continue
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not whole or not FIRST_ZONE_ID <= value <= LAST_ZONE_ID:
            raise InvalidInputError(
                f"{name} {value!r} in trip {row} is not a zone id: {_ZONES_ALLOWED}"
            )
        zones[row] = value
    if np.isnan(zones).any():
        return zones
    return zones.astype(np.int64)


def _distances(table: Mapping[str, Sequence[Any]], rows: int) -> np.ndarray:
    values, sources = _first_given(table, RAW_DISTANCE_COLUMNS, rows)
    distances = np.empty(rows)
    for row, value in enumerate(values):
        if value is None:
            raise InvalidInputError(
                f"{' or '.join(RAW_DISTANCE_COLUMNS)} is missing in trip {row}: give the trip's "
                f"distance ({_DISTANCE_ALLOWED})"
            )
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not 0 <= value <= LONG_TRIP_MILES
        ):
            what = "is out of range" if _is_number(value) else "is not a number"
            raise InvalidInputError(
                f"{sources[row]} {value!r} in trip {row} {what}: {_DISTANCE_ALLOWED}"
            )
        distances[row] = value
    return distances


def _numbers(name: str, column: Sequence[Any]) -> np.ndarray:
    """A request-time field: numbers, NaN where null (the model takes a missing one)."""
    numbers = np.full(len(column), np.nan)
    for row, value in enumerate(column):
        if _is_null(value):
            continue
        if not _is_number(value):
            raise InvalidInputError(
                f"{name} {value!r} in trip {row} is not a number: give a number, or null"
            )
        numbers[row] = value
    return numbers


def _is_null(value: Any) -> bool:
    """JSON null, or NaN: Python's JSON (MLflow's client among its users) writes NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    """A JSON value's kind in JSON's words."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
