"""The service's requests: MLflow's scoring protocol read into trips, each bad field refused
with one line that names it and what is allowed."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from taxi_duration.errors import InvalidInputError
from taxi_duration.trip_requests import (
    SMOKE_TRIP,
    checked_trips,
    trip_from_request,
    trips_from_request,
)

TRIP = {
    "lpep_pickup_datetime": "2023-03-01T08:15:00",
    "PULocationID": 74,
    "DOLocationID": 75,
    "trip_distance": 2.5,
}


def _records(*trips: dict[str, Any]) -> bytes:
    return json.dumps({"dataframe_records": list(trips)}).encode()


def _without(name: str) -> dict[str, Any]:
    return {key: value for key, value in TRIP.items() if key != name}


def test_records_and_split_give_the_same_trips_in_the_layout_a_model_takes() -> None:
    second = {**TRIP, "PULocationID": None, "passenger_count": 2}
    records = trips_from_request(_records(TRIP, second))
    columns = list(second)
    split = {"columns": columns, "data": [[t.get(c) for c in columns] for t in (TRIP, second)]}
    pd.testing.assert_frame_equal(
        records, trips_from_request(json.dumps({"dataframe_split": split}).encode())
    )
    assert list(records.columns) == [
        "pickup_datetime", "PULocationID", "DOLocationID", "trip_distance", "passenger_count",
    ]  # fmt: skip
    assert records["pickup_datetime"].tolist() == [pd.Timestamp("2023-03-01 08:15")] * 2
    assert records["PULocationID"].isna().tolist() == [False, True]  # unknown: null answer
    assert records["passenger_count"].tolist()[1] == 2.0
    assert np.isnan(records["passenger_count"].tolist()[0])


def test_each_layout_names_and_offsets() -> None:
    fhvhv = {"pickup_datetime": "2023-03-01T13:15:00Z", "PULocationID": 1, "DOLocationID": 265,
             "trip_miles": 0}  # fmt: skip
    trips = trip_from_request(json.dumps(fhvhv).encode())
    # TLC times are New York's: an offset is read as such (13:15 UTC is 08:15 EST).
    assert trips["pickup_datetime"].tolist() == [pd.Timestamp("2023-03-01 08:15")]
    assert trips["trip_distance"].tolist() == [0.0]
    assert trips["PULocationID"].dtype == np.int64
    assert len(checked_trips({k: [v] for k, v in SMOKE_TRIP.items()}, 1)) == 1


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"{not json", "request body is not valid JSON"),
        (b'{"dataframe_records": "\xc3\x28"}', "not UTF-8"),
        (json.dumps({"inputs": [TRIP]}).encode(), "dataframe_records, dataframe_split"),
        (json.dumps([TRIP]).encode(), "dataframe_records, dataframe_split"),
        (json.dumps({"dataframe_records": TRIP}).encode(), "dataframe_records must be a list"),
        (json.dumps({"dataframe_split": {"data": []}}).encode(), "dataframe_split needs"),
        (_records(), "no trips"),
        (_records(_without("lpep_pickup_datetime")), "lpep_pickup_datetime or tpep_pickup"),
        (_records(TRIP, {**TRIP, "lpep_pickup_datetime": None}), "is missing in trip 1"),
        (_records({**TRIP, "lpep_pickup_datetime": "yesterday"}), "lpep_pickup_datetime 'yes"),
        (_records({**TRIP, "lpep_pickup_datetime": 1677658500000}), "not a date and time"),
        (_records(_without("trip_distance")), "trip_distance or trip_miles is missing"),
        (_records({**TRIP, "trip_distance": -5}), "trip_distance -5 in trip 0 is out of range"),
        (_records({**TRIP, "trip_distance": 250}), "allowed 0-100 miles"),
        (_records({**TRIP, "trip_distance": "far"}), "trip_distance 'far' in trip 0 is not a"),
        (_records(_without("PULocationID")), "PULocationID is missing"),
        (_records({**TRIP, "PULocationID": "abc"}), "PULocationID 'abc' in trip 0 is not a zone"),
        (_records({**TRIP, "DOLocationID": 0}), "DOLocationID 0 in trip 0 is not a zone id"),
        (_records({**TRIP, "DOLocationID": 266}), "allowed are whole numbers 1-265"),
        (_records({**TRIP, "DOLocationID": 7.5}), "DOLocationID 7.5"),
        (_records({**TRIP, "DOLocationID": True}), "DOLocationID True"),
        (_records({**TRIP, "passenger_count": "two"}), "passenger_count 'two' in trip 0"),
    ],
)
def test_a_bad_request_is_one_line_naming_the_field(body: bytes, named: str) -> None:
    with pytest.raises(InvalidInputError) as raised:
        trips_from_request(body)
    message = str(raised.value)
    assert named in message
    assert "\n" not in message


def test_nan_is_null_as_python_writes_it() -> None:
    body = (
        b'{"dataframe_records": [{"pickup_datetime": "2023-03-01T08:15:00", '
        b'"PULocationID": NaN, "DOLocationID": 1, "trip_distance": 1, "VendorID": NaN}]}'
    )
    trips = trips_from_request(body)
    assert trips[["PULocationID", "VendorID"]].isna().all(axis=None)
    with pytest.raises(InvalidInputError, match="trip_distance or trip_miles is missing"):
        trips_from_request(body.replace(b'"trip_distance": 1', b'"trip_distance": NaN'))


def test_one_trip_must_be_an_object() -> None:
    with pytest.raises(InvalidInputError, match="one trip \\(a JSON object\\): got a JSON array"):
        trip_from_request(b"[]")
