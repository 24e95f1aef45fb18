"""Early stopping really stops: the boosting ends ``early_stopping_rounds`` after the best."""

from __future__ import annotations

import numpy as np
import xgboost as xgb

from taxi_duration.models import XGBoostParams, train_booster


def _data(seed: int, rows: int = 400) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    features = generator.normal(size=(rows, 3))
    return features, 3 * features[:, 0] + generator.normal(size=rows)


def test_boosting_stops_once_validation_stops_improving() -> None:
    x_train, y_train = _data(0)
    x_val, _ = _data(1)
    # Labels unrelated to the features: after a round or two, every tree makes it worse.
    noise = np.random.default_rng(2).normal(size=len(x_val))
    params = XGBoostParams(
        params={"max_depth": 6, "learning_rate": 0.3, "seed": 0},
        num_boost_round=500,
        early_stopping_rounds=5,
    )
    fit = train_booster(
        params, xgb.DMatrix(x_train, label=y_train), xgb.DMatrix(x_val, label=noise)
    )
    curve = fit.history["validation_rmse"]
    assert fit.best_iteration is not None
    assert len(curve) < 100  # far short of the 500 rounds allowed
    assert len(curve) == fit.best_iteration + 1 + params.early_stopping_rounds
    assert fit.best_iteration == int(np.argmin(curve))
    # Only the trees up to the best round are kept.
    assert isinstance(fit.estimator, xgb.Booster)
    assert fit.estimator.num_boosted_rounds() == fit.best_iteration + 1


def test_without_early_stopping_every_round_is_kept() -> None:
    x_train, y_train = _data(0)
    x_val, _ = _data(1)
    noise = np.random.default_rng(2).normal(size=len(x_val))
    params = XGBoostParams(
        params={"max_depth": 6, "learning_rate": 0.3, "seed": 0},
        num_boost_round=30,
        early_stopping_rounds=5,
        keep_best_iteration=False,
    )
    fit = train_booster(
        params, xgb.DMatrix(x_train, label=y_train), xgb.DMatrix(x_val, label=noise)
    )
    assert isinstance(fit.estimator, xgb.Booster)
    assert fit.estimator.num_boosted_rounds() == len(fit.history["validation_rmse"])
