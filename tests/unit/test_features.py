"""Features: the one-hot layout equals DictVectorizer's on the course's dicts; categoricals."""

from __future__ import annotations

import importlib
import inspect
import io
import pickle
from collections.abc import Hashable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction import DictVectorizer

from taxi_duration.choices import FEATURE_SETS, STATISTIC_FEATURES, feature_set
from taxi_duration.errors import InvalidInputError
from taxi_duration.features.encoding import Vocabulary, absent_features, numeric_values
from taxi_duration.features.preprocessor import Preprocessor
from taxi_duration.prepare import REQUEST_COLUMNS


def course_dicts(frame: pd.DataFrame, features: str) -> list[dict[Hashable, Any]]:
    """The course's feature dicts: zones as strings, PU_DO = PU + '_' + DO."""
    df = pd.DataFrame(
        {
            "PULocationID": frame["PULocationID"].astype(str),
            "DOLocationID": frame["DOLocationID"].astype(str),
            "trip_distance": frame["trip_distance"].astype(float),
        }
    )
    if features == "pu_do":
        df["PU_DO"] = df["PULocationID"] + "_" + df["DOLocationID"]
        return df[["PU_DO", "trip_distance"]].to_dict(orient="records")
    if features == "separate":
        return df[["PULocationID", "DOLocationID"]].to_dict(orient="records")
    pickup = frame["pickup_datetime"].dt
    df["pickup_hour"] = pickup.hour + pickup.minute / 60.0
    df["pickup_weekday"] = pickup.weekday.astype(float)
    return df.to_dict(orient="records")


def assert_same_csr(actual: sp.csr_matrix, expected: sp.csr_matrix) -> None:
    """Same shape, same stored entries (explicit zeros included), same values."""
    expected = sp.csr_matrix(expected, copy=True)
    expected.sort_indices()
    actual = sp.csr_matrix(actual, copy=True)
    assert actual.has_sorted_indices  # built sorted, no re-sort needed
    assert actual.shape == expected.shape
    assert actual.dtype == np.float64
    np.testing.assert_array_equal(actual.indptr, expected.indptr)
    np.testing.assert_array_equal(actual.indices, expected.indices)
    np.testing.assert_array_equal(actual.data, expected.data)
    assert (actual - expected).count_nonzero() == 0


# The course's feature sets; ``default`` (fixed zone list, statistics) is tested below.
@pytest.mark.parametrize("features", ["pu_do", "separate"])
def test_sparse_equals_dictvectorizer(
    features: str,
    green_train: pd.DataFrame,
    green_val: pd.DataFrame,
    month_with_unseen_zones: pd.DataFrame,
) -> None:
    vectorizer = DictVectorizer()
    expected_train = vectorizer.fit_transform(course_dicts(green_train, features))
    preprocessor = Preprocessor.fit(green_train, feature_set(features))

    assert preprocessor.feature_names == list(vectorizer.feature_names_)
    assert_same_csr(preprocessor.transform_sparse(green_train), expected_train)
    for other in (green_val, month_with_unseen_zones):
        assert_same_csr(
            preprocessor.transform_sparse(other),
            vectorizer.transform(course_dicts(other, features)),
        )


@pytest.mark.parametrize("features", ["pu_do"])
def test_explicit_zero_distance_is_stored_like_dictvectorizer(
    features: str, green_train: pd.DataFrame
) -> None:
    frame = green_train.copy()
    frame.loc[frame.index[::10], "trip_distance"] = 0.0
    vectorizer = DictVectorizer()
    expected = vectorizer.fit_transform(course_dicts(frame, features))
    actual = Preprocessor.fit(frame, feature_set(features)).transform_sparse(frame)
    assert_same_csr(actual, expected)
    column = vectorizer.feature_names_.index("trip_distance")
    stored_zeros = (actual.indices == column) & (actual.data == 0.0)
    assert stored_zeros.sum() == len(frame.index[::10])


def test_unseen_zones_get_no_column(
    green_train: pd.DataFrame,
    month_with_unseen_zones: pd.DataFrame,
    unseen_zones: tuple[int, ...],
) -> None:
    pre = Preprocessor.fit(green_train, feature_set("separate"))
    names = pre.feature_names
    for zone in unseen_zones:
        assert f"PULocationID={zone}" not in names
    matrix = pre.transform_sparse(month_with_unseen_zones)
    per_row = np.diff(matrix.indptr)
    pu = month_with_unseen_zones["PULocationID"].astype(int).to_numpy()
    do = month_with_unseen_zones["DOLocationID"].astype(int).to_numpy()
    expected = (~np.isin(pu, unseen_zones)).astype(int) + (~np.isin(do, unseen_zones))
    np.testing.assert_array_equal(per_row, expected)
    assert (per_row == 0).any()  # rows with both zones unseen: an empty row, no error

    pu_do = Preprocessor.fit(green_train, feature_set("pu_do"))
    pairs = pu_do.transform_sparse(month_with_unseen_zones)
    assert pairs.shape[1] == len(pu_do.feature_names)
    unseen_row = np.isin(pu, unseen_zones) | np.isin(do, unseen_zones)
    # Only trip_distance is left where the pair includes an unseen zone.
    np.testing.assert_array_equal(np.diff(pairs.indptr)[unseen_row], 1)


def test_missing_zone_gets_no_column(green_train: pd.DataFrame) -> None:
    frame = green_train.head(3).copy()
    frame.loc[frame.index[1], "PULocationID"] = np.nan
    for features, expected in (("separate", [2, 1, 2]), ("pu_do", [2, 1, 2])):
        pre = Preprocessor.fit(green_train, feature_set(features))
        matrix = pre.transform_sparse(frame)
        np.testing.assert_array_equal(np.diff(matrix.indptr), expected)


def test_plain_integer_zones_encode_like_categoricals(green_train: pd.DataFrame) -> None:
    """Raw rows at prediction time carry zones as int64, not categoricals."""
    plain = green_train.assign(
        PULocationID=green_train["PULocationID"].astype("int64"),
        DOLocationID=green_train["DOLocationID"].astype("int64"),
    )
    for name in FEATURE_SETS:
        pre = Preprocessor.fit(green_train, feature_set(name))
        assert_same_csr(pre.transform_sparse(plain), pre.transform_sparse(green_train))
        assert Preprocessor.fit(plain, feature_set(name)).feature_names == pre.feature_names
        pd.testing.assert_frame_equal(pre.transform_frame(plain), pre.transform_frame(green_train))


def test_feature_names_are_dictvectorizer_names(green_train: pd.DataFrame) -> None:
    names = Preprocessor.fit(green_train, feature_set("pu_do")).feature_names
    assert names[-1] == "trip_distance"
    assert all(name.startswith("PU_DO=") for name in names[:-1])
    assert names[:-1] == sorted(names[:-1])  # string order: PU_DO=10_1 before PU_DO=2_1
    first_pu, first_do = green_train["PULocationID"].iloc[0], green_train["DOLocationID"].iloc[0]
    assert f"PU_DO={first_pu}_{first_do}" in names


def test_transform_frame_categories_and_unseen_zones(
    green_train: pd.DataFrame,
    month_with_unseen_zones: pd.DataFrame,
    unseen_zones: tuple[int, ...],
) -> None:
    pre = Preprocessor.fit(green_train, feature_set("default"))
    out = pre.transform_frame(month_with_unseen_zones)
    assert list(out.columns) == [
        "PULocationID",
        "DOLocationID",
        "trip_distance",
        "pickup_hour",
        "pickup_weekday",
        # Those the month has values of (the generated green months have no trip type).
        *(name for name in REQUEST_COLUMNS if name not in pre.absent),
        # Not expected_duration, which grows with distance: the default is monotone in it.
        *(name for name in STATISTIC_FEATURES if name != "expected_duration"),
    ]
    assert out.index.equals(month_with_unseen_zones.index)
    tlc_zones = sorted(str(zone) for zone in range(1, 266))
    for zone in ("PULocationID", "DOLocationID"):
        assert isinstance(out[zone].dtype, pd.CategoricalDtype)
        # The TLC's zone list, whatever the month holds: the codes mean the same zones.
        assert list(out[zone].cat.categories) == tlc_zones
        assert list(pre.transform_frame(green_train)[zone].cat.categories) == tlc_zones
        original = month_with_unseen_zones[zone].astype(int)
        unseen = original.isin(unseen_zones)
        assert unseen.any()
        # A zone the training month never saw is still that zone, not missing.
        assert (out[zone].astype(str) == original.astype(str)).all()
    for numeric in pre.features.numeric:
        if numeric not in pre.absent:
            assert out[numeric].dtype == np.float32
    np.testing.assert_allclose(
        out["trip_distance"], month_with_unseen_zones["trip_distance"], rtol=1e-6
    )


def test_default_zones_outside_the_tlc_list_are_missing(green_train: pd.DataFrame) -> None:
    frame = green_train.head(4).assign(
        PULocationID=[0, 266, 265, 1], DOLocationID=[1, np.nan, -3, 264]
    )
    out = Preprocessor.fit(green_train, feature_set("default")).transform_frame(frame)
    assert out["PULocationID"].isna().tolist() == [True, True, False, False]
    assert out["DOLocationID"].isna().tolist() == [False, True, True, False]


def test_default_categories_do_not_depend_on_the_month(
    green_train: pd.DataFrame, month_with_unseen_zones: pd.DataFrame
) -> None:
    default = feature_set("default")
    one = Preprocessor.fit(green_train, default).transform_frame(green_train)
    other = Preprocessor.fit(month_with_unseen_zones, default).transform_frame(green_train)
    for zone in ("PULocationID", "DOLocationID"):
        pd.testing.assert_series_equal(one[zone], other[zone])


def test_default_zero_distance_is_unknown(green_train: pd.DataFrame) -> None:
    frame = green_train.head(4).assign(trip_distance=[0.0, -1.0, 2.5, np.nan])
    pre = Preprocessor.fit(green_train, feature_set("default"))
    out = pre.transform_frame(frame)
    assert np.isnan(out["trip_distance"].to_numpy()).tolist() == [True, True, False, True]
    # The course's sets keep a recorded 0 as the number 0.
    pu_do = Preprocessor.fit(green_train, feature_set("pu_do")).transform_sparse(frame)
    assert pu_do[0, pu_do.shape[1] - 1] == 0.0


def test_feature_set_unknown_lists_allowed() -> None:
    with pytest.raises(InvalidInputError) as caught:
        feature_set("nope")
    message = str(caught.value)
    assert "'nope'" in message
    for name in ("default", "pu_do", "separate"):
        assert name in message


def test_feature_set_definitions() -> None:
    assert feature_set("pu_do").categorical == ("PU_DO",)
    assert feature_set("pu_do").numeric == ("trip_distance",)
    assert feature_set("separate").categorical == ("PULocationID", "DOLocationID")
    assert feature_set("separate").numeric == ()
    default = feature_set("default")
    assert default.native_categorical
    assert default.fixed_zones
    assert default.zero_distance_unknown
    assert default.zone_statistics
    assert {"pickup_hour", "pickup_weekday", "trip_distance"} <= set(default.numeric)
    assert set(REQUEST_COLUMNS) | set(STATISTIC_FEATURES) - {"expected_duration"} <= set(
        default.numeric
    )
    # It grows with distance: the default, monotone in distance, leaves it out.
    assert "expected_duration" not in default.numeric
    # Nothing known only after the trip.
    for after in ("fare_amount", "tip_amount", "total_amount", "RatecodeID", "store_and_fwd_flag"):
        assert after not in default.numeric
    for name in ("pu_do", "separate"):
        assert not feature_set(name).zone_statistics
        assert not feature_set(name).fixed_zones


def test_time_features() -> None:
    frame = pd.DataFrame(
        {
            "pickup_datetime": pd.to_datetime(
                [
                    "2023-01-02 00:00:00",  # Monday
                    "2023-01-04 13:30:00",  # Wednesday
                    "2023-01-08 23:59:59",  # Sunday
                ]
            )
        }
    )
    hour = numeric_values(frame, "pickup_hour")
    np.testing.assert_allclose(hour, [0.0, 13.5, 23 + 59 / 60])
    np.testing.assert_array_equal(numeric_values(frame, "pickup_weekday"), [0.0, 2.0, 6.0])


def test_time_features_on_generated_month(green_train: pd.DataFrame) -> None:
    hour = numeric_values(green_train, "pickup_hour")
    weekday = numeric_values(green_train, "pickup_weekday")
    assert hour.dtype == np.float64
    assert ((hour >= 0) & (hour < 24)).all()
    assert (hour != np.floor(hour)).any()  # fractional hours
    assert set(np.unique(weekday)) == set(range(7))


def test_fit_on_frame_without_any_zone() -> None:
    frame = pd.DataFrame(
        {
            "pickup_datetime": pd.to_datetime(["2023-01-02 10:00"]),
            "PULocationID": pd.Categorical([np.nan], categories=pd.Index([], dtype="int32")),
            "DOLocationID": pd.Categorical([np.nan], categories=pd.Index([], dtype="int32")),
            "trip_distance": [1.0],
        }
    )
    pre = Preprocessor.fit(frame, feature_set("pu_do"))
    assert pre.feature_names == ["trip_distance"]
    matrix = pre.transform_sparse(frame)
    assert matrix.shape == (1, 1)
    assert matrix.toarray().tolist() == [[1.0]]


def test_pu_do_with_large_categorical_zone_id_matches_dictvectorizer() -> None:
    frame = pd.DataFrame(
        {
            "pickup_datetime": pd.to_datetime(["2023-01-02 10:00"] * 2),
            "PULocationID": pd.Categorical([5, 6]),
            "DOLocationID": pd.Categorical([1234, 8]),
            "trip_distance": [1.0, 2.0],
        }
    )
    vectorizer = DictVectorizer()
    expected = vectorizer.fit_transform(course_dicts(frame, "pu_do"))
    preprocessor = Preprocessor.fit(frame, feature_set("pu_do"))
    assert preprocessor.feature_names == list(vectorizer.feature_names_)
    assert_same_csr(preprocessor.transform_sparse(frame), expected)


@pytest.mark.parametrize("unit", ["ns", "us", "s"])
def test_the_hour_and_weekday_of_a_pickup_are_those_of_pandas(unit: str) -> None:
    """From minutes since the epoch: what the ``dt`` accessor gives, NaN where missing, and
    the wall-clock time of a zoned pickup."""
    rng = np.random.default_rng(0)
    seconds = rng.integers(-(10**9), 2 * 10**9, 5_000)  # before 1970 too
    pickup = pd.Series(pd.to_datetime(seconds, unit="s").astype(f"datetime64[{unit}]"))
    pickup.iloc[::97] = pd.NaT
    zoned = pd.Series(pd.date_range("2023-03-11", periods=500, freq="37min", tz="America/New_York"))
    for times in (pickup, zoned):
        frame = pd.DataFrame({"pickup_datetime": times})
        hour = (times.dt.hour + times.dt.minute / 60.0).to_numpy(dtype=np.float64)
        weekday = times.dt.day_of_week.to_numpy(dtype=np.float64)
        np.testing.assert_array_equal(numeric_values(frame, "pickup_hour"), hour)
        np.testing.assert_array_equal(numeric_values(frame, "pickup_weekday"), weekday)


def test_request_features_without_a_value_are_left_out_of_the_model_frame(
    green_train: pd.DataFrame, green_val: pd.DataFrame
) -> None:
    """Request-time features the training month has no value of (fhvhv has none of them,
    yellow no trip type; prepare gives them as empty columns) get no column in the model's
    frame, in training and scoring alike: XGBoost never splits on them and an empty column
    makes its matrices sparse. A month with values keeps them."""
    default = feature_set("default")
    month = green_train.assign(trip_type=1.0)
    with_them = Preprocessor.fit(month, default).transform_frame(green_val)
    assert set(REQUEST_COLUMNS) <= set(with_them.columns)
    without = month.drop(columns=["VendorID"]).assign(trip_type=np.nan)
    pre = Preprocessor.fit(without, default)
    assert pre.absent == ("VendorID", "trip_type")
    for frame in (pre.transform_frame(without, training=True), pre.transform_frame(green_val)):
        assert list(frame.columns) == [c for c in with_them.columns if c not in pre.absent]
    # The linear models' one-hot layout is DictVectorizer's: it keeps every column.
    assert pre.transform_sparse(green_val).shape[1] == len(pre.feature_names)
    assert "VendorID" in pre.feature_names
    # Fitted elsewhere (the Dask path) from the counts of values the cluster found.
    assert absent_features(default, {"trip_type": 0, "passenger_count": 7}) == pre.absent


def test_a_model_pickled_before_the_package_was_split_still_loads() -> None:
    """Versions registered before features.py became features/ name their classes
    ``taxi_duration.features.<Class>``; a process that imported the package (serve, predict)
    must still unpickle them."""
    unpickler = pickle.Unpickler(io.BytesIO(b""))
    for module in ("encoding", "zone_statistics", "preprocessor"):  # features.py's parts
        found = importlib.import_module(f"taxi_duration.features.{module}")
        classes = [c for _, c in inspect.getmembers(found, inspect.isclass)]
        for now in [c for c in classes if c.__module__ == found.__name__]:
            assert unpickler.find_class("taxi_duration.features", now.__name__) is now

    vocabulary = Vocabulary.fit("PULocationID", np.array([3, 1, 2, 1], dtype=np.int64))
    as_before = pickle.dumps(vocabulary, protocol=0).replace(
        b"taxi_duration.features.encoding\n", b"taxi_duration.features\n"
    )
    assert b"taxi_duration.features\nVocabulary" in as_before
    loaded = pickle.loads(as_before)
    assert loaded.labels == vocabulary.labels
    np.testing.assert_array_equal(loaded.keys, vocabulary.keys)
