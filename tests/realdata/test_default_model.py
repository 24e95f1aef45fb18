"""The default model against the course's on real months: at least 17% lower RMSE.

The default is scored honestly: its statistics come out of fold on the training month and it
stops early on a slice of the training month, never on the month it is scored on. Speed is
measured in benchmarks/default_vs_reference.py, not here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from taxi_duration import models
from taxi_duration.evaluate import rmse
from taxi_duration.features import Preprocessor
from taxi_duration.prepare import PreparedTrips, prepare_trips

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def _validation_rmse(
    config: models.TrainingConfig, train: PreparedTrips, val: PreparedTrips
) -> float:
    """RMSE on ``val`` through the train flow's own steps (features_task, fit, evaluate)."""
    preprocessor = Preprocessor.fit(train.frame, config.feature_set)
    x_train = models.encode_training(preprocessor, train.frame, config)
    x_val = models.encode(preprocessor, val.frame, config)
    y_val = val.frame["duration"].to_numpy()
    fit = models.fit_estimator(config, x_train, train.frame["duration"].to_numpy(), x_val, y_val)
    model = models.TripDurationModel(config, preprocessor, fit.estimator)
    return rmse(y_val, model.predict_features(x_val))


@pytest.mark.parametrize(
    ("train_month", "val_month"), [("2021-01", "2021-02"), ("2023-01", "2023-02")]
)
def test_default_beats_the_reference_by_17_percent(
    real_data_dir: Path, train_month: str, val_month: str
) -> None:
    train = prepare_trips(real_data_dir / f"green_tripdata_{train_month}.parquet", "green")
    val = prepare_trips(real_data_dir / f"green_tripdata_{val_month}.parquet", "green")
    default = _validation_rmse(models.training_config(), train, val)
    reference = _validation_rmse(models.training_config(preset="reference"), train, val)
    assert default <= 0.83 * reference, f"default {default:.4f} vs reference {reference:.4f}"
