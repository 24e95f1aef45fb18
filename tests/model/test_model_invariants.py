"""Model behaviour (Made-With-ML's ``tests/model`` kind): what a trained model must and must
never do, whatever its accuracy. Trained here on generated months of the TLC schema."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tlc_samples import make_trips

from taxi_duration.models import (
    TripDurationModel,
    fit_estimator,
    month_pair_features,
    training_config,
)
from taxi_duration.months import Month
from taxi_duration.prepare import normalize_raw_trips

JAN = Month(2023, 1)


@pytest.fixture(scope="module", params=["default", "linear-pu_do"])
def model(request: pytest.FixtureRequest) -> TripDurationModel:
    """The default model and the course's linear one, trained on a generated green month."""
    config = training_config() if request.param == "default" else training_config("linear", "pu_do")
    trips = normalize_raw_trips(make_trips("green", JAN, rows=3_000))
    trips["duration"] = np.clip(np.random.default_rng(0).gamma(4, 3, len(trips)), 1, 60)
    trips["duration"] += 3 * trips["trip_distance"].to_numpy()
    data = month_pair_features(config, trips, None)
    fit = fit_estimator(config, data.x_train, data.y_train)
    return TripDurationModel(config, data.preprocessor, fit.estimator)


def _raw(color: str) -> pd.DataFrame:
    return make_trips(color, Month(2023, 2), rows=300, seed=3)


def test_predictions_are_finite_numbers_of_minutes(model: TripDurationModel) -> None:
    predictions = model.predict_raw(_raw("green"))
    assert predictions.shape == (300,)
    assert np.isfinite(predictions).all()


def test_the_same_trip_predicts_the_same_in_green_and_yellow_schema(
    model: TripDurationModel,
) -> None:
    green = _raw("green")
    yellow = green.rename(
        columns={"lpep_pickup_datetime": "tpep_pickup_datetime",
                 "lpep_dropoff_datetime": "tpep_dropoff_datetime"}
    )  # fmt: skip
    np.testing.assert_array_equal(model.predict_raw(green), model.predict_raw(yellow))


def test_a_trip_without_zone_or_distance_has_no_prediction(model: TripDurationModel) -> None:
    raw = _raw("green")
    raw["PULocationID"] = raw["PULocationID"].astype("float64")
    raw.loc[0, "PULocationID"] = np.nan
    raw.loc[1, "trip_distance"] = np.nan
    predictions = model.predict_raw(raw)
    assert np.isnan(predictions[:2]).all()
    assert np.isfinite(predictions[2:]).all()


def test_the_dropoff_is_never_used(model: TripDurationModel) -> None:
    """Known only after the trip: changing it must not change the prediction."""
    raw = _raw("green")
    later = raw.assign(lpep_dropoff_datetime=raw["lpep_dropoff_datetime"] + pd.Timedelta("3h"))
    np.testing.assert_array_equal(model.predict_raw(raw), model.predict_raw(later))
