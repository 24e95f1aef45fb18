"""Early stopping really stops: the boosting ends ``early_stopping_rounds`` after the best."""

from __future__ import annotations

import numpy as np
import xgboost as xgb

from taxi_duration.models import FitResult, XGBoostParams, train_booster


def _fit(rounds: int, keep_best_iteration: bool) -> tuple[XGBoostParams, FitResult]:
    """Boost on a learnable month, validated on labels unrelated to the features: after a
    round or two, every tree makes the validation RMSE worse."""
    generator = np.random.default_rng(0)
    x_train, x_val = generator.normal(size=(400, 3)), generator.normal(size=(400, 3))
    y_train = 3 * x_train[:, 0] + generator.normal(size=400)
    params = XGBoostParams(
        params={"max_depth": 6, "learning_rate": 0.3, "seed": 0},
        num_boost_round=rounds,
        early_stopping_rounds=5,
        keep_best_iteration=keep_best_iteration,
    )
    noise = generator.normal(size=400)
    dtrain, dval = xgb.DMatrix(x_train, label=y_train), xgb.DMatrix(x_val, label=noise)
    return params, train_booster(params, dtrain, dval)


def test_boosting_stops_once_validation_stops_improving() -> None:
    params, fit = _fit(rounds=500, keep_best_iteration=True)
    curve = fit.history["boosting_validation_rmse"]
    assert fit.best_iteration is not None
    assert len(curve) < 100  # far short of the 500 rounds allowed
    assert len(curve) == fit.best_iteration + 1 + params.early_stopping_rounds
    assert fit.best_iteration == int(np.argmin(curve))
    # Only the trees up to the best round are kept.
    assert isinstance(fit.estimator, xgb.Booster)
    assert fit.estimator.num_boosted_rounds() == fit.best_iteration + 1


def test_without_keeping_the_best_every_round_is_kept() -> None:
    _, fit = _fit(rounds=30, keep_best_iteration=False)
    assert isinstance(fit.estimator, xgb.Booster)
    assert fit.estimator.num_boosted_rounds() == len(fit.history["boosting_validation_rmse"])
