"""Evaluate: error metrics of predicted against true durations (minutes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from taxi_duration.models import FeatureData, TripDurationModel


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((np.asarray(y_true) - np.asarray(y_pred)) ** 2)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(np.asarray(y_true) - np.asarray(y_pred))))


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """RMSE and MAE."""
    return {"rmse": rmse(y_true, y_pred), "mae": mae(y_true, y_pred)}


def model_metrics(model: TripDurationModel, data: FeatureData) -> dict[str, float]:
    """``rmse_train`` and ``mae_train`` on the training month; ``rmse`` and ``mae`` on the
    validation month, when there is one."""
    metrics = {
        f"{name}_train": value
        for name, value in regression_metrics(
            data.y_train, model.predict_features(data.x_train)
        ).items()
    }
    if data.x_val is not None and data.y_val is not None:
        metrics.update(regression_metrics(data.y_val, model.predict_features(data.x_val)))
    return metrics
