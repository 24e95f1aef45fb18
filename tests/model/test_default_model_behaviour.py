"""What the default model must never do, whatever it learned (Made-With-ML's model tests).

Trained on a generated month (tests/tlc_samples.py), so these run without the real data:
- every prediction lies in the trained range, 1-60 minutes;
- a longer trip is never predicted shorter (same zones, time): monotone in distance;
- missing request-time fields, a distance of 0 and unknown zones still get a prediction;
  a missing zone or distance gets none (NaN) from raw rows.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from tlc_samples import make_trips, write_month

from taxi_duration import models
from taxi_duration.features.preprocessor import Preprocessor
from taxi_duration.months import Month
from taxi_duration.prepare import REQUEST_COLUMNS, prepare_trips

DISTANCES = np.round(np.arange(0.1, 40.0, 0.1), 2)
PAIRS = [(12, 8), (39, 50), (5, 5), (1, 59), (30, 2)]
TIMES = ["2023-02-06 08:15", "2023-02-11 23:30", "2023-02-08 14:00"]


def _train(config: models.TrainingConfig, frame: pd.DataFrame) -> models.TripDurationModel:
    # One thread: OpenMP threads contend badly on a busy 2-core runner.
    assert config.xgboost is not None
    schedule = dataclasses.replace(
        config.xgboost, params={**config.xgboost.params, "nthread": 1}, num_boost_round=200
    )
    config = dataclasses.replace(config, xgboost=schedule)
    preprocessor = Preprocessor.fit(frame, config.feature_set)
    x_train = models.encode_training(preprocessor, frame, config)
    fit = models.fit_estimator(config, x_train, frame["duration"].to_numpy())
    return models.TripDurationModel(config, preprocessor, fit.estimator)


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    path = write_month(tmp_path_factory.mktemp("tlc"), "green", Month(2023, 1), rows=6_000)
    return prepare_trips(path, "green").frame


@pytest.fixture(scope="module")
def default_model(month: pd.DataFrame) -> models.TripDurationModel:
    return _train(models.training_config(), month)


def _raw(pu: float, do: float, distances: np.ndarray, pickup: str) -> pd.DataFrame:
    n = len(distances)
    return pd.DataFrame(
        {
            "lpep_pickup_datetime": pd.Timestamp(pickup),
            "PULocationID": np.full(n, pu),
            "DOLocationID": np.full(n, do),
            "trip_distance": distances,
            "VendorID": 2,
            "trip_type": 1.0,
            "passenger_count": 1.0,
        }
    )


def test_predictions_stay_in_the_trained_range(default_model: models.TripDurationModel) -> None:
    extreme = np.array([0.01, 0.0, 0.5, 80.0, 500.0, 1e6, -3.0])
    for pu, do in [*PAIRS, (264, 265), (200, 7)]:
        for pickup in TIMES:
            predictions = default_model.predict_raw(_raw(pu, do, extreme, pickup))
            assert np.isfinite(predictions).all()
            assert ((predictions >= 1.0) & (predictions <= 60.0)).all(), (pu, do, predictions)


def test_a_generated_month_is_predicted_within_1_to_60(
    default_model: models.TripDurationModel,
) -> None:
    raw = make_trips("yellow", Month(2023, 2), rows=3_000, seed=5)
    raw.loc[::7, "trip_distance"] = raw["trip_distance"] * 40  # some absurdly long trips
    predictions = default_model.predict_raw(raw)
    assert predictions.min() >= 1.0
    assert predictions.max() <= 60.0


def test_default_model_never_predicts_a_longer_trip_shorter(
    default_model: models.TripDurationModel,
) -> None:
    for pu, do in PAIRS:
        for pickup in TIMES:
            predictions = default_model.predict_raw(_raw(pu, do, DISTANCES, pickup))
            assert (np.diff(predictions) >= 0).all(), (pu, do, pickup)


def test_default_model_predicts_a_much_longer_trip_longer(
    default_model: models.TripDurationModel,
) -> None:
    """Directional: 10 miles takes longer than 1 mile (not only never shorter)."""
    for pu, do in PAIRS:
        for pickup in TIMES:
            short, long = default_model.predict_raw(_raw(pu, do, np.array([1.0, 10.0]), pickup))
            assert long > short, (pu, do, pickup)


def test_missing_request_fields_zero_distance_and_unknown_zones_are_predicted(
    default_model: models.TripDurationModel,
) -> None:
    raw = _raw(12, 8, np.array([2.0, 0.0, 2.0, 2.0]), TIMES[0])
    raw.loc[2, list(REQUEST_COLUMNS)] = np.nan
    raw.loc[3, "PULocationID"] = 264  # the TLC's "unknown" zone
    predictions = default_model.predict_raw(raw)
    assert np.isfinite(predictions).all()
    # A month without any request-time field (e.g. an old file): predicted all the same.
    bare = default_model.predict_raw(raw.drop(columns=list(REQUEST_COLUMNS)))
    assert np.isfinite(bare).all()
    assert ((bare >= 1.0) & (bare <= 60.0)).all()


def test_a_missing_zone_or_distance_gets_no_prediction(
    default_model: models.TripDurationModel,
) -> None:
    raw = _raw(12, 8, np.array([2.0, 2.0, 2.0, np.nan]), TIMES[0])
    raw["PULocationID"] = raw["PULocationID"].astype("float64")
    raw.loc[1, "PULocationID"] = np.nan
    raw.loc[2, "DOLocationID"] = np.nan
    predictions = default_model.predict_raw(raw)
    assert np.isfinite(predictions[0])
    assert np.isnan(predictions[1:]).all()


def test_the_range_holds_whatever_the_estimator_predicts(month: pd.DataFrame) -> None:
    """A linear fit on the default features extrapolates far beyond 60; the model clips it."""
    config = models.training_config("linear", "default")
    preprocessor = Preprocessor.fit(month, config.feature_set)
    x_train = models.encode_training(preprocessor, month, config)
    fit = models.fit_estimator(config, x_train, month["duration"].to_numpy())
    model = models.TripDurationModel(config, preprocessor, fit.estimator)
    raw = _raw(12, 8, np.array([0.01, 2.0, 300.0]), TIMES[0])
    unclipped = dataclasses.replace(
        model, config=dataclasses.replace(config, prediction_range=None)
    )
    assert unclipped.predict_raw(raw)[-1] > 60.0  # what the estimator itself says
    predictions = model.predict_raw(raw)
    assert predictions[-1] == 60.0
    assert ((predictions >= 1.0) & (predictions <= 60.0)).all()
