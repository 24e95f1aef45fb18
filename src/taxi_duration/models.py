"""Train: the model kinds (XGBoost, linear regression) as configured in ``choices``.

A ``TripDurationModel`` holds the fitted preprocessor and estimator together, so that
whatever loads it predicts from trips alone.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xgboost as xgb
from sklearn.linear_model import LinearRegression

from taxi_duration.choices import DEFAULT_XGBOOST as DEFAULT_XGBOOST
from taxi_duration.choices import MODEL_KINDS as MODEL_KINDS
from taxi_duration.choices import MONOTONE_IN_DISTANCE as MONOTONE_IN_DISTANCE
from taxi_duration.choices import PRESETS as PRESETS
from taxi_duration.choices import REFERENCE_XGBOOST as REFERENCE_XGBOOST
from taxi_duration.choices import TrainingConfig as TrainingConfig
from taxi_duration.choices import XGBoostParams as XGBoostParams
from taxi_duration.choices import training_config as training_config
from taxi_duration.cpus import available_cpus
from taxi_duration.errors import InvalidInputError
from taxi_duration.features.preprocessor import Preprocessor
from taxi_duration.features.zone_statistics import training_statistics
from taxi_duration.prepare import normalize_raw_trips

# A one-hot matrix or a frame with categoricals, by the model's encoding.
Features: TypeAlias = sp.csr_matrix | pd.DataFrame


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
    # The month's statistics and its rows' out-of-fold ones come from one fit.
    fitted = training_statistics(train) if config.feature_set.zone_statistics else None
    preprocessor = Preprocessor.fit(train, config.feature_set, fitted.whole if fitted else None)
    return FeatureData(
        preprocessor=preprocessor,
        x_train=encode_training(preprocessor, train, config, fitted.rows if fitted else None),
        y_train=train["duration"].to_numpy(),
        x_val=None if val is None else encode(preprocessor, val, config),
        y_val=None if val is None else val["duration"].to_numpy(),
    )


def encode_training(
    preprocessor: Preprocessor,
    frame: pd.DataFrame,
    config: TrainingConfig,
    statistics: dict[str, np.ndarray] | None = None,
) -> Features:
    """``encode`` for the training rows the preprocessor was fitted on.

    Zone statistics come out of fold, so that no trip sees its own duration (``statistics``:
    computed already, see ``training_statistics``); without statistics in the feature set,
    this is ``encode``.
    """
    if config.uses_native_categorical:
        return preprocessor.transform_frame(frame, training=True, statistics=statistics)
    matrix: Features = preprocessor.transform_sparse(frame, training=True, statistics=statistics)
    return matrix


def n_features(features: Features) -> int:
    return int(features.shape[1])


def dmatrix(features: Features, label: np.ndarray | None = None) -> xgb.DMatrix:
    """XGBoost's input; categoricals are taken natively."""
    return xgb.DMatrix(features, label=label, enable_categorical=isinstance(features, pd.DataFrame))


@dataclass
class FitResult:
    """A fitted estimator and its learning curve: XGBoost's RMSE per boosting round on the
    validation month and the holdout (``boosting_validation_rmse``, ``boosting_holdout_rmse``)."""

    estimator: LinearRegression | xgb.Booster
    best_iteration: int | None = None
    history: dict[str, list[float]] = field(default_factory=dict)


def fit_estimator(
    config: TrainingConfig,
    x_train: Features,
    y_train: np.ndarray,
    x_val: Features | None = None,
    y_val: np.ndarray | None = None,
    nthread: int | None = None,
) -> FitResult:
    """Fit the configured model (XGBoost on ``nthread`` threads at most, default all; a
    small month on fewer, see ``boosting_threads``).

    XGBoost stops early on the validation month when given, or, if its parameters hold out
    part of the training rows, on those (the validation month's RMSE is then only recorded).
    """
    if config.model == "linear":
        from taxi_duration.linear import fit_linear_regression  # scikit-learn's fit, fast

        return FitResult(fit_linear_regression(x_train, y_train))
    booster_params = config.booster_params()
    given = nthread if nthread is not None else booster_params.params.get("nthread")
    nthread = boosting_threads(len(y_train), None if given is None else int(given))
    release_freed_memory()
    dval = dmatrix(x_val, y_val) if x_val is not None and y_val is not None else None
    if booster_params.holdout_fraction is None:
        return train_booster(booster_params, dmatrix(x_train, y_train), dval, nthread=nthread)
    # The holdout is split off the features, not off a DMatrix of every row (slicing copies
    # it), and the rows boosted on are given as hist's bins only (XGBoost's QuantileDMatrix),
    # not as a DMatrix: ~2.4 GB for 20 million trips. XGBoost reads the fit rows a chunk at a
    # time, not from a copy of them all (0.8 GB less at the peak). The same trees, to the
    # last bit: the sketch does not depend on the batches. The holdout stays a DMatrix: a
    # QuantileDMatrix of it on the fit's cuts (``ref``) took 0.1 GB more for fhvhv, whose
    # three empty request-time columns make XGBoost's bins sparse.
    fit_rows, held_rows = holdout_split(
        len(y_train), booster_params.holdout_fraction, int(booster_params.params.get("seed", 0))
    )
    dheld = dmatrix(_rows(x_train, held_rows), y_train[held_rows])
    dtrain = xgb.QuantileDMatrix(
        RowChunks(x_train, y_train, fit_rows, FIT_CHUNK_ROWS),
        enable_categorical=isinstance(x_train, pd.DataFrame),
        # The booster's bins (``max_bin``, e.g. tuned): XGBoost refuses a matrix of others.
        max_bin=int(booster_params.params.get("max_bin", 256)),
    )
    return train_booster(booster_params, dtrain, dval, nthread=nthread, holdout=dheld)


# Rows of the fit per XGBoost thread. A green month (~70,000 trips) boosts the same trees
# 1.3-6x faster on one thread than on two on the shared 2-core machine (issue 27: 3.8 vs
# 7.2 s lightly loaded, 7.3 vs 40.9 s loaded): each round's work is too small to share,
# and a thread descheduled by other load stalls the other at every node. Where the one-thread
# advantage ends between 70,000 and 20 million rows is not measured.
ROWS_PER_THREAD = 500_000


def boosting_threads(rows: int, threads: int | None = None) -> int:
    """XGBoost's threads for a fit on ``rows`` rows: ``threads`` (default: the available
    CPUs) but no more than one per ROWS_PER_THREAD rows, at least 1."""
    allowed = threads if threads is not None else available_cpus()
    return max(1, min(allowed, -(-rows // ROWS_PER_THREAD)))


# Rows of the fit copied at a time into XGBoost's matrix: ~60 MB of default features.
FIT_CHUNK_ROWS = 1_000_000


class RowChunks(xgb.DataIter):
    """Some rows of features and labels, in order, ``chunk_rows`` at a time: a
    QuantileDMatrix built from it copies one chunk at a time, not all the rows."""

    def __init__(
        self, features: Features, labels: np.ndarray, rows: np.ndarray, chunk_rows: int
    ) -> None:
        self.features, self.labels, self.rows = features, labels, rows
        self.chunk_rows = chunk_rows
        self.start = 0
        super().__init__(release_data=True)

    def next(self, input_data: Callable[..., None]) -> bool:
        if self.start >= len(self.rows):
            return False
        chunk = self.rows[self.start : self.start + self.chunk_rows]
        input_data(data=_rows(self.features, chunk), label=self.labels[chunk])
        self.start += self.chunk_rows
        return True

    def reset(self) -> None:
        self.start = 0


def release_freed_memory() -> None:
    """Give the C heap's free pages back to the OS (glibc's ``malloc_trim``; elsewhere
    nothing). The features step leaves ~0.7 GB of them for 20 million trips, which glibc
    keeps and the matrices would not reuse: the fit's peak RSS would stand on top of them."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    libc.malloc_trim(0)


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
    # XGBoost's own evaluation per round (float32, unclipped predictions): named apart from
    # the run's final ``rmse`` of the clipped predictions, which promotion compares.
    history = {
        f"boosting_{name}_{metric}": [float(v) for v in values]
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
