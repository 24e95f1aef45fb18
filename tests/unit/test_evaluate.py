"""Evaluate: RMSE and MAE on known values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from taxi_duration.evaluate import mae, regression_metrics, rmse


@pytest.mark.parametrize(
    ("y_true", "y_pred", "expected_rmse", "expected_mae"),
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 0.0, 0.0),
        ([0.0, 0.0], [3.0, -4.0], math.sqrt(12.5), 3.5),
        ([10.0, 20.0, 30.0, 40.0], [12.0, 18.0, 30.0, 44.0], math.sqrt(6.0), 2.0),
        ([5.0], [2.0], 3.0, 3.0),
    ],
)
def test_known_values(
    y_true: list[float], y_pred: list[float], expected_rmse: float, expected_mae: float
) -> None:
    assert rmse(np.array(y_true), np.array(y_pred)) == pytest.approx(expected_rmse)
    assert mae(np.array(y_true), np.array(y_pred)) == pytest.approx(expected_mae)
    assert regression_metrics(np.array(y_true), np.array(y_pred)) == pytest.approx(
        {"rmse": expected_rmse, "mae": expected_mae}
    )


def test_metrics_are_python_floats() -> None:
    metrics = regression_metrics(np.array([1, 2], dtype=np.float32), np.array([2, 2]))
    assert all(type(value) is float for value in metrics.values())


def test_symmetric_and_rmse_at_least_mae() -> None:
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.normal(15, 5, 500), rng.normal(15, 5, 500)
    assert rmse(y_true, y_pred) == pytest.approx(rmse(y_pred, y_true))
    assert mae(y_true, y_pred) == pytest.approx(mae(y_pred, y_true))
    assert rmse(y_true, y_pred) >= mae(y_true, y_pred)


def test_accepts_lists_and_series() -> None:
    series = (pd.Series([1.0, 3.0]), pd.Series([1.0, 1.0]))
    assert rmse(*series) == pytest.approx(math.sqrt(2.0))  # type: ignore[arg-type]
    assert mae([1.0, 3.0], [1.0, 1.0]) == pytest.approx(1.0)  # type: ignore[arg-type]
