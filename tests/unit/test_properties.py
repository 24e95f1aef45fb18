"""Property tests: prepare and features on arbitrary rows never crash nor emit NaN/inf features.

Rows may have null timestamps, a dropoff before the pickup, zones missing, negative, huge
or unknown, and distances that are null, negative, NaN, infinite or huge. Contract:

- ``prepare_trips`` keeps exactly the rows lasting 1-60 minutes, or raises DataError
  ("no trips kept") when there are none; it never raises anything else.
- ``transform_sparse`` (linear models) is always finite: a missing number counts as 0.
- ``transform_frame`` (XGBoost) has float32 numerics that are finite or NaN, and NaN
  only where the input number is missing or not finite: XGBoost reads NaN as "missing"
  and routes it down each split's learned default branch, so no imputation is needed.
  A distance beyond float32's range is also missing there (it would otherwise be inf),
  and so is one of 0 or less in ``default``. Zone statistics are finite or missing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taxi_duration.choices import FEATURE_SETS
from taxi_duration.errors import DataError
from taxi_duration.features.preprocessor import Preprocessor
from taxi_duration.prepare import prepare_trips

Trip = tuple[int | None, int | None, int | None, int | None, float | None]
START = np.datetime64("2023-01-01T00:00:00", "us")
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

zones = st.one_of(
    st.none(),
    st.integers(1, 60),  # the generated training months' zones
    st.integers(-1_000, 300),  # negative, zero, unknown
    st.sampled_from([2**31 - 1, -(2**31), 1 << 20, (1 << 20) - 1]),
)
distances = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-10, 100),
)
rows = st.lists(
    st.tuples(
        st.one_of(st.none(), st.integers(0, 31 * 24 * 3600)),  # pickup, seconds into the month
        # duration in seconds: mostly 1-60 minutes, also negative, zero and huge
        st.one_of(st.none(), st.integers(60, 3600), st.integers(-(10**9), 10**9)),
        zones,
        zones,
        distances,
    ),
    min_size=1,
    max_size=40,
)


def _write(trips: list[Trip], zone_type: pa.DataType, folder: Path) -> Path:
    pickup = [None if p is None else START + np.timedelta64(p, "s") for p, *_ in trips]
    dropoff = [
        None if p is None or d is None else START + np.timedelta64(p + d, "s") for p, d, *_ in trips
    ]

    def zone_array(values: list[int | None]) -> pa.Array:
        if pa.types.is_integer(zone_type):
            return pa.array(values, type=pa.int64())
        return pa.array([None if v is None else float(v) for v in values], type=pa.float64())

    table = pa.table(
        {
            "lpep_pickup_datetime": pa.array(pickup, type=pa.timestamp("us")),
            "lpep_dropoff_datetime": pa.array(dropoff, type=pa.timestamp("us")),
            "PULocationID": zone_array([t[2] for t in trips]),
            "DOLocationID": zone_array([t[3] for t in trips]),
            "trip_distance": pa.array([t[4] for t in trips], type=pa.float64()),
        }
    )
    path = folder / "green_tripdata_2023-01.parquet"
    pq.write_table(table, path)
    return path


def _expected_kept(trips: list[Trip]) -> int:
    return sum(p is not None and d is not None and 60 <= d <= 3600 for p, d, *_ in trips)


def _check_features(
    preprocessor: Preprocessor, frame: pd.DataFrame, training: bool = False
) -> None:
    sparse = preprocessor.transform_sparse(frame, training=training)
    assert sparse.shape == (len(frame), len(preprocessor.feature_names))
    assert np.isfinite(sparse.data).all()
    encoded = preprocessor.transform_frame(frame, training=training)
    assert len(encoded) == len(frame)
    assert not set(preprocessor.absent) & set(encoded.columns)
    for name in preprocessor.features.numeric:
        if name in preprocessor.absent:
            continue
        values = encoded[name].to_numpy()
        assert values.dtype == np.float32
        assert not np.isinf(values).any()
        if name == "trip_distance":
            with np.errstate(over="ignore"):
                as_float32 = frame[name].to_numpy(dtype=np.float64).astype(np.float32)
            unknown = ~np.isfinite(as_float32)
            if preprocessor.features.zero_distance_unknown:
                unknown |= ~(frame[name].to_numpy(dtype=np.float64) > 0)
            np.testing.assert_array_equal(np.isnan(values), unknown)
        elif name in ("pickup_hour", "pickup_weekday"):  # every kept trip has a pickup time
            assert np.isfinite(values).all()
        # Request-time fields and zone statistics may be missing (NaN), never infinite.
    for name in preprocessor.features.categorical:
        assert isinstance(encoded[name].dtype, pd.CategoricalDtype)


@SETTINGS
@given(trips=rows, zone_type=st.sampled_from([pa.int64(), pa.float64()]))
def test_prepare_and_features_never_crash_nor_emit_nan(
    trips: list[Trip], zone_type: pa.DataType, green_train: pd.DataFrame
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = _write(trips, zone_type, Path(folder))
        expected = _expected_kept(trips)
        if expected == 0:
            with pytest.raises(DataError, match="no trips kept"):
                prepare_trips(path, "green")
            return
        prepared = prepare_trips(path, "green")
    assert prepared.rows_loaded == len(trips)
    assert prepared.rows_kept == expected
    frame = prepared.frame
    assert frame["duration"].between(1, 60).all()
    for features in FEATURE_SETS.values():
        # Fitted on a real-looking month and applied to these rows (unknown zones) ...
        _check_features(Preprocessor.fit(green_train, features), frame)
        # ... and fitted on these rows themselves (odd zones in the vocabulary), which then
        # also get their statistics out of fold.
        _check_features(Preprocessor.fit(frame, features), frame)
        _check_features(Preprocessor.fit(frame, features), frame, training=True)
