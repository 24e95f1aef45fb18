"""Train: the model kinds (XGBoost, linear regression), their configurations and presets.

A ``TripDurationModel`` holds the fitted preprocessor and estimator together, so that
whatever loads it predicts from trips alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xgboost as xgb
from sklearn.linear_model import LinearRegression

from taxi_duration.errors import InvalidInputError
from taxi_duration.features import FeatureSet, Preprocessor, feature_set
from taxi_duration.prepare import MAX_DURATION_MINUTES, MIN_DURATION_MINUTES, normalize_raw_trips

MODEL_KINDS = ("xgboost", "linear")
# A one-hot matrix or a frame with categoricals, by the model's encoding.
Features: TypeAlias = sp.csr_matrix | pd.DataFrame


@dataclass(frozen=True)
class XGBoostParams:
    """Booster parameters and how many rounds to boost."""

    params: dict[str, Any]
    num_boost_round: int
    early_stopping_rounds: int
    # Keep only the trees up to the best validation round (the course keeps them all).
    keep_best_iteration: bool = True
    # Rounds when there is no validation month to stop early on (None: num_boost_round).
    rounds_without_validation: int | None = None
    # Early stopping watches this random fraction of the training rows, held out of the fit,
    # rather than the validation month (None: the validation month, as the course does).
    holdout_fraction: float | None = None


# The course's hard-coded tuned parameters, reproduced exactly by ``--preset reference``.
REFERENCE_XGBOOST = XGBoostParams(
    params={
        "learning_rate": 0.09585355369315604,
        "max_depth": 30,
        "min_child_weight": 1.060597050922164,
        "objective": "reg:squarederror",
        "reg_alpha": 0.018060244040060163,
        "reg_lambda": 0.011658731377413597,
        "seed": 42,
    },
    num_boost_round=100,
    early_stopping_rounds=20,
    keep_best_iteration=False,
)

# The project's default: zones as native categories, distance, pickup hour and weekday, the
# request-time fields and the training month's zone-pair statistics (features.py). Early
# stopping watches 10% of the training month, never the month the model is scored on.
# Parameters from taxi_duration.tune on the development months; measured in
# benchmarks/default_vs_reference.py.
DEFAULT_XGBOOST = XGBoostParams(
    params={
        "objective": "reg:squarederror",
        "eval_metric": "rmse",
        "tree_method": "hist",
        # `taxi-duration tune`'s best on green 2021-01 -> 2021-02 (40 trials), rounded, with
        # depth 8 for 9: the same RMSE on both development pairs (+0.1%), 25% faster. The
        # 2023 search's best trains 600+ rounds (10x slower) for 0.2% lower RMSE.
        "learning_rate": 0.166,
        "max_depth": 8,
        "min_child_weight": 65,
        "subsample": 0.98,
        "colsample_bytree": 0.97,
        "reg_lambda": 3.75,
        "reg_alpha": 0.87,
        "seed": 42,
    },
    num_boost_round=1000,
    early_stopping_rounds=20,
    holdout_fraction=0.1,
)

# Predictions non-decreasing in trip_distance: expected_duration grows with it too, so both
# are constrained. Not in the default: it costs more RMSE than the 0.5% it may (see README).
MONOTONE_IN_DISTANCE = {"monotone_constraints": {"trip_distance": 1, "expected_duration": 1}}


@dataclass(frozen=True)
class TrainingConfig:
    """What to train: model kind, feature set, and booster parameters for XGBoost."""

    model: str
    features: str
    xgboost: XGBoostParams | None = None
    preset: str | None = None
    # Predictions are clipped to this range (the trained 1-60 minutes); None: as predicted.
    prediction_range: tuple[float, float] | None = None

    @property
    def feature_set(self) -> FeatureSet:
        return feature_set(self.features)

    @property
    def uses_native_categorical(self) -> bool:
        return self.model == "xgboost" and self.feature_set.native_categorical

    def booster_params(self) -> XGBoostParams:
        """The XGBoost parameters; a linear model has none."""
        if self.xgboost is None:
            raise InvalidInputError(f"model {self.model!r} has no booster parameters")
        return self.xgboost

    def with_xgboost_params(self, params: dict[str, Any]) -> TrainingConfig:
        """The same config with booster parameters overridden (e.g. by tuning)."""
        base = self.booster_params()
        return replace(self, xgboost=replace(base, params={**base.params, **params}), preset=None)

    def params(self) -> dict[str, Any]:
        """Flat parameters for tracking."""
        flat: dict[str, Any] = {"model": self.model, "features": self.features}
        if self.preset:
            flat["preset"] = self.preset
        if self.xgboost is not None:
            flat.update(self.xgboost.params)
            flat["num_boost_round"] = self.xgboost.num_boost_round
            flat["early_stopping_rounds"] = self.xgboost.early_stopping_rounds
            if self.xgboost.rounds_without_validation is not None:
                flat["rounds_without_validation"] = self.xgboost.rounds_without_validation
            if self.xgboost.holdout_fraction is not None:
                flat["holdout_fraction"] = self.xgboost.holdout_fraction
        if self.prediction_range is not None:
            flat["prediction_range"] = list(self.prediction_range)
        return flat


PRESETS = {
    "reference": TrainingConfig(
        model="xgboost", features="pu_do", xgboost=REFERENCE_XGBOOST, preset="reference"
    ),
}


def training_config(
    model: str | None = None, features: str | None = None, preset: str | None = None
) -> TrainingConfig:
    """Chosen names (checked by the spec) as a config; a preset fixes model and features."""
    if preset is not None:
        config = PRESETS[preset]
        for option, given, fixed in (
            ("model", model, config.model),
            ("features", features, config.features),
        ):
            if given is not None and given != fixed:
                raise InvalidInputError(
                    f"--{option} {given} conflicts with --preset {preset}, which uses {fixed}"
                )
        return config
    model = model or "xgboost"
    features = features or "default"
    return TrainingConfig(
        model=model,
        features=features,
        xgboost=DEFAULT_XGBOOST if model == "xgboost" else None,
        # The course's feature sets keep the course's unclipped predictions (and figures).
        prediction_range=(
            (MIN_DURATION_MINUTES, MAX_DURATION_MINUTES) if features == "default" else None
        ),
    )


def encode(preprocessor: Preprocessor, frame: pd.DataFrame, config: TrainingConfig) -> Features:
    """The model's input for prepared trips: categorical frame or one-hot matrix.

    For any rows but the training month's own (validation, scoring): zone statistics are
    the whole training month's.
    """
    if config.uses_native_categorical:
        return preprocessor.transform_frame(frame)
    matrix: Features = preprocessor.transform_sparse(frame)
    return matrix


@dataclass(frozen=True)
class FeatureData:
    """A month pair as the model sees it: the preprocessor fitted on the training month,
    and both months encoded with it."""

    preprocessor: Preprocessor
    x_train: Features
    y_train: np.ndarray
    x_val: Features | None
    y_val: np.ndarray | None


def month_pair_features(
    config: TrainingConfig, train: pd.DataFrame, val: pd.DataFrame | None
) -> FeatureData:
    """Fit the preprocessor on the training month's prepared trips; encode both months."""
    preprocessor = Preprocessor.fit(train, config.feature_set)
    return FeatureData(
        preprocessor=preprocessor,
        x_train=encode_training(preprocessor, train, config),
        y_train=train["duration"].to_numpy(),
        x_val=None if val is None else encode(preprocessor, val, config),
        y_val=None if val is None else val["duration"].to_numpy(),
    )


def encode_training(
    preprocessor: Preprocessor, frame: pd.DataFrame, config: TrainingConfig
) -> Features:
    """``encode`` for the training rows the preprocessor was fitted on.

    Zone statistics come out of fold, so that no trip sees its own duration; without
    statistics in the feature set, this is ``encode``.
    """
    if config.uses_native_categorical:
        return preprocessor.transform_frame(frame, training=True)
    matrix: Features = preprocessor.transform_sparse(frame, training=True)
    return matrix


def n_features(features: Features) -> int:
    return int(features.shape[1])


def dmatrix(features: Features, label: np.ndarray | None = None) -> xgb.DMatrix:
    """XGBoost's input; categoricals are taken natively."""
    return xgb.DMatrix(features, label=label, enable_categorical=isinstance(features, pd.DataFrame))


@dataclass
class FitResult:
    """A fitted estimator and its training curve (validation RMSE per round, if any)."""

    estimator: LinearRegression | xgb.Booster
    best_iteration: int | None = None
    history: dict[str, list[float]] = field(default_factory=dict)


def fit_estimator(
    config: TrainingConfig,
    x_train: Features,
    y_train: np.ndarray,
    x_val: Features | None = None,
    y_val: np.ndarray | None = None,
) -> FitResult:
    """Fit the configured model.

    XGBoost stops early on the validation month when given, or, if its parameters hold out
    part of the training rows, on those (the validation month's RMSE is then only recorded).
    """
    if config.model == "linear":
        from taxi_duration.linear import fit_linear_regression  # scikit-learn's fit, fast

        return FitResult(fit_linear_regression(x_train, y_train))
    booster_params = config.booster_params()
    dval = dmatrix(x_val, y_val) if x_val is not None and y_val is not None else None
    if booster_params.holdout_fraction is None:
        return train_booster(booster_params, dmatrix(x_train, y_train), dval)
    # The holdout is split off the features, not off a DMatrix of every row (slicing copies
    # it), and the rows boosted on are given as hist's bins only (XGBoost's QuantileDMatrix),
    # not as a DMatrix: ~2.4 GB for 20 million trips. The same trees, to the last bit.
    fit_rows, held_rows = holdout_split(
        len(y_train), booster_params.holdout_fraction, int(booster_params.params.get("seed", 0))
    )
    dheld = dmatrix(_rows(x_train, held_rows), y_train[held_rows])
    dtrain = xgb.QuantileDMatrix(
        _rows(x_train, fit_rows),
        label=y_train[fit_rows],
        enable_categorical=isinstance(x_train, pd.DataFrame),
    )
    return train_booster(booster_params, dtrain, dval, holdout=dheld)


def _rows(features: Features, rows: np.ndarray) -> Features:
    if isinstance(features, pd.DataFrame):
        return features.iloc[rows]
    selected: Features = features[rows]
    return selected


def holdout_split(n_rows: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices of the rows to fit on and of the rows held out (a seeded random slice)."""
    if not 0 < fraction < 1:
        raise InvalidInputError(f"holdout fraction {fraction} is not between 0 and 1")
    order = np.random.default_rng(seed).permutation(n_rows)
    held = max(1, round(n_rows * fraction))
    return np.sort(order[held:]), np.sort(order[:held])


def train_booster(
    booster_params: XGBoostParams,
    dtrain: xgb.DMatrix,
    dval: xgb.DMatrix | None = None,
    callbacks: Sequence[xgb.callback.TrainingCallback] = (),
    nthread: int | None = None,
    holdout: xgb.DMatrix | None = None,
) -> FitResult:
    """Boost on ``dtrain``, stopping early on ``dval`` (the validation month) when given.

    With ``booster_params.holdout_fraction``, a random slice of ``dtrain`` is held out and early
    stopping watches it instead (it is the last of XGBoost's evals); ``dval`` is recorded.
    ``holdout``: that slice, already split off (``dtrain`` is then the rest).
    """
    params = dict(booster_params.params)
    if nthread is not None:
        params["nthread"] = nthread
    evals = [(dval, "validation")] if dval is not None else []
    if holdout is not None:
        evals.append((holdout, "holdout"))
    elif booster_params.holdout_fraction is not None:
        fit_rows, held_rows = holdout_split(
            dtrain.num_row(), booster_params.holdout_fraction, int(params.get("seed", 0))
        )
        evals.append((dtrain.slice(held_rows), "holdout"))
        dtrain = dtrain.slice(fit_rows)
    evals_result: dict[str, dict[str, list[float]]] = {}
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=boosting_rounds(booster_params, bool(evals)),
        evals=evals,
        early_stopping_rounds=booster_params.early_stopping_rounds if evals else None,
        evals_result=evals_result,
        verbose_eval=False,
        callbacks=list(callbacks),
    )
    return boosted(booster_params, booster, evals_result, bool(evals))


def boosting_rounds(booster_params: XGBoostParams, evaluated: bool) -> int:
    """How many rounds to boost, with evals to stop early on or (``evaluated`` false) none."""
    if not evaluated and booster_params.rounds_without_validation is not None:
        return booster_params.rounds_without_validation
    return booster_params.num_boost_round


def boosted(
    booster_params: XGBoostParams,
    booster: xgb.Booster,
    evals_result: dict[str, dict[str, list[float]]],
    evaluated: bool,
) -> FitResult:
    """A trained booster (cut at its best round if so configured) and its curves."""
    best_iteration = None
    if evaluated:
        best_iteration = booster.best_iteration
        if booster_params.keep_best_iteration:
            booster = booster[: best_iteration + 1]
    history = {
        f"{name}_{metric}": [float(v) for v in values]
        for name, metrics in evals_result.items()
        for metric, values in metrics.items()
    }
    return FitResult(booster, best_iteration=best_iteration, history=history)


@dataclass
class TripDurationModel:
    """Preprocessor and estimator: predicts trip duration in minutes."""

    config: TrainingConfig
    preprocessor: Preprocessor
    estimator: LinearRegression | xgb.Booster

    def predict_features(self, features: Features) -> np.ndarray:
        if isinstance(self.estimator, xgb.Booster):
            predictions = np.asarray(self.estimator.predict(dmatrix(features)), dtype=np.float64)
        else:
            predictions = np.asarray(self.estimator.predict(features), dtype=np.float64)
        if self.config.prediction_range is not None:
            np.clip(predictions, *self.config.prediction_range, out=predictions)
        return predictions

    def predict(self, trips: pd.DataFrame) -> np.ndarray:
        """Durations for prepared trips (pickup_datetime, zones, trip_distance)."""
        return self.predict_features(encode(self.preprocessor, trips, self.config))

    def predict_raw(self, raw: pd.DataFrame) -> np.ndarray:
        """Durations for raw TLC rows, green or yellow, as published.

        A row whose zones or distance are missing gets NaN: there is nothing to predict from.
        """
        trips = normalize_raw_trips(raw)
        predictions = self.predict(trips)
        unknown = trips[["PULocationID", "DOLocationID", "trip_distance"]].isna().any(axis=1)
        predictions[unknown.to_numpy()] = np.nan
        return predictions

    @property
    def intercept(self) -> float | None:
        if isinstance(self.estimator, LinearRegression):
            return float(self.estimator.intercept_)
        return None
