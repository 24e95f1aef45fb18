"""The charts that explain a model: every one that applies, as PNG bytes."""

from __future__ import annotations

import pandas as pd
import pytest

from taxi_duration.charts import model_charts
from taxi_duration.models import (
    TripDurationModel,
    fit_estimator,
    month_pair_features,
    training_config,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("model", "features", "expected"),
    [
        (
            "xgboost",
            "default",
            {
                "learning_curve.png",
                "feature_importance.png",
                "residuals_by_hour.png",
                "residuals_by_distance.png",
                "predicted_vs_actual.png",
            },
        ),
        (
            "linear",
            "pu_do",
            {"residuals_by_hour.png", "residuals_by_distance.png", "predicted_vs_actual.png"},
        ),
    ],
)
def test_charts_of_a_trained_model(
    model: str,
    features: str,
    expected: set[str],
    green_train: pd.DataFrame,
    green_val: pd.DataFrame,
) -> None:
    config = training_config(model, features)
    if config.xgboost is not None:
        config = config.with_xgboost_params({"max_depth": 3})
    data = month_pair_features(config, green_train, green_val)
    fit = fit_estimator(config, data.x_train, data.y_train, data.x_val, data.y_val)
    trained = TripDurationModel(config, data.preprocessor, fit.estimator)

    charts = model_charts(trained, data, fit.history, green_val)
    assert set(charts) == expected
    assert all(png.startswith(PNG) and len(png) > 1000 for png in charts.values())
    without_validation = model_charts(trained, data, {}, None)
    assert "predicted_vs_actual.png" not in without_validation
