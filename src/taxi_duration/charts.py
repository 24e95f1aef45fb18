"""Charts that explain a trained model: PNG files for the run's page in MLflow.

Plain matplotlib (the Agg backend, no display): the learning curve, the features' importance,
the residuals on the validation month by pickup hour and by distance band, and predicted
against actual durations.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from taxi_duration.models import FeatureData, TripDurationModel

# Distance bands (miles) for the residuals: short hops to airport runs.
DISTANCE_BANDS = (0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, np.inf)


def model_charts(
    model: TripDurationModel,
    data: FeatureData,
    history: dict[str, list[float]],
    val: pd.DataFrame | None,
) -> dict[str, bytes]:
    """Every chart that applies to the model, by file name: PNG bytes."""
    charts = {
        "learning_curve.png": learning_curve(history),
        "feature_importance.png": feature_importance(model.estimator),
    }
    if val is not None and data.x_val is not None and data.y_val is not None:
        predicted = model.predict_features(data.x_val)
        charts.update(residuals_by(val, data.y_val, predicted))
        charts["predicted_vs_actual.png"] = predicted_vs_actual(data.y_val, predicted)
    return {name: png for name, png in charts.items() if png is not None}


def _figure(draw: Callable[[Any], None], width: float = 7.0) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(width, 4.2))
    try:
        draw(axes)
        axes.grid(alpha=0.3)
        figure.tight_layout()
        png = io.BytesIO()
        figure.savefig(png, format="png", dpi=100)
    finally:
        plt.close(figure)
    return png.getvalue()


def learning_curve(history: dict[str, list[float]]) -> bytes | None:
    """RMSE by boosting round (XGBoost's own evaluation); None for a model without rounds."""
    if not history:
        return None

    def draw(axes: Any) -> None:
        for name, values in history.items():
            axes.plot(range(1, len(values) + 1), values, label=name)
        axes.set_xlabel("boosting round")
        axes.set_ylabel("RMSE (minutes)")
        axes.set_title("Learning curve")
        axes.legend()

    return _figure(draw)


def feature_importance(estimator: Any, top: int = 20) -> bytes | None:
    """Total gain of each feature (XGBoost); None for a linear model (its one-hot weights are
    not importances)."""
    if not isinstance(estimator, xgb.Booster):
        return None
    gains = estimator.get_score(importance_type="total_gain")
    if not gains:
        return None
    ranked = sorted(gains.items(), key=lambda item: item[1])[-top:]

    def draw(axes: Any) -> None:
        axes.barh([name for name, _ in ranked], [gain for _, gain in ranked])
        axes.set_xlabel("total gain")
        axes.set_title("Feature importance")

    return _figure(draw)


def residuals_by(trips: pd.DataFrame, truth: np.ndarray, predicted: np.ndarray) -> dict[str, bytes]:
    """Mean and spread of (predicted - actual) on the validation month by pickup hour and by
    distance band."""
    residual = pd.Series(np.asarray(predicted) - np.asarray(truth), index=trips.index)
    hour = trips["pickup_datetime"].dt.hour
    band = pd.cut(trips["trip_distance"], bins=list(DISTANCE_BANDS), right=False)
    charts = {}
    for name, groups, label in (
        ("residuals_by_hour.png", hour, "pickup hour"),
        ("residuals_by_distance.png", band.astype(str), "distance band (miles)"),
    ):
        stats = residual.groupby(groups, sort=True).agg(["mean", "std", "count"])

        def draw(axes: Any, stats: pd.DataFrame = stats, label: str = label) -> None:
            axes.errorbar(
                [str(key) for key in stats.index], stats["mean"], yerr=stats["std"], fmt="o"
            )
            axes.axhline(0, color="grey", linewidth=1)
            axes.set_xlabel(label)
            axes.set_ylabel("predicted - actual (minutes)")
            axes.set_title(f"Residuals by {label}, validation month")
            axes.tick_params(axis="x", labelrotation=45)

        charts[name] = _figure(draw, width=9.0)
    return charts


def predicted_vs_actual(truth: np.ndarray, predicted: np.ndarray) -> bytes:
    """A 2-D histogram of predicted against actual duration on the validation month."""

    def draw(axes: Any) -> None:
        axes.hist2d(truth, predicted, bins=60, range=[[0, 60], [0, 60]], cmin=1)
        axes.plot([0, 60], [0, 60], color="red", linewidth=1)
        axes.set_xlabel("actual duration (minutes)")
        axes.set_ylabel("predicted duration (minutes)")
        axes.set_title("Predicted vs actual, validation month")

    return _figure(draw, width=5.5)
