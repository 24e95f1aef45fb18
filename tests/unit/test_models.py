"""Models: configurations and presets, fitting, prediction on new months and raw rows."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import xgboost as xgb
from sklearn.linear_model import LinearRegression
from tlc_samples import make_trips

from taxi_duration import models
from taxi_duration.cpus import available_cpus
from taxi_duration.errors import InvalidInputError
from taxi_duration.evaluate import rmse
from taxi_duration.features.preprocessor import Preprocessor
from taxi_duration.models import (
    DEFAULT_XGBOOST,
    MONOTONE_IN_DISTANCE,
    REFERENCE_XGBOOST,
    FitResult,
    TrainingConfig,
    TripDurationModel,
    boosting_threads,
    dmatrix,
    encode,
    encode_training,
    fit_estimator,
    n_features,
    train_booster,
    training_config,
)
from taxi_duration.months import Month

COURSE_PARAMS = {
    "learning_rate": 0.09585355369315604,
    "max_depth": 30,
    "min_child_weight": 1.060597050922164,
    "objective": "reg:squarederror",
    "reg_alpha": 0.018060244040060163,
    "reg_lambda": 0.011658731377413597,
    "seed": 42,
}


# --- configuration ----------------------------------------------------------------------


def test_training_config_defaults() -> None:
    config = training_config()
    assert config.model == "xgboost"
    assert config.features == "default"
    assert config.xgboost is not None
    # The default feature set's model is monotone in distance; others are not constrained.
    assert config.xgboost.params == {**DEFAULT_XGBOOST.params, **MONOTONE_IN_DISTANCE}
    assert training_config("xgboost", "pu_do").xgboost == DEFAULT_XGBOOST
    assert config.preset is None
    assert config.uses_native_categorical
    assert config.xgboost.keep_best_iteration


def test_training_config_linear_has_no_booster_params() -> None:
    config = training_config(model="linear", features="pu_do")
    assert (config.model, config.features, config.xgboost) == ("linear", "pu_do", None)
    assert not config.uses_native_categorical
    assert config.params() == {"model": "linear", "features": "pu_do"}


@pytest.mark.parametrize(
    ("model", "features", "native"),
    [
        ("xgboost", "default", True),
        ("xgboost", "pu_do", False),
        ("xgboost", "separate", False),
        ("linear", "default", False),
    ],
)
def test_uses_native_categorical(model: str, features: str, native: bool) -> None:
    assert training_config(model, features).uses_native_categorical is native


@pytest.mark.parametrize(
    ("model", "features"), [(None, None), ("xgboost", None), (None, "pu_do"), ("xgboost", "pu_do")]
)
def test_reference_preset_is_the_course_model(model: str | None, features: str | None) -> None:
    config = training_config(model, features, preset="reference")
    assert (config.model, config.features, config.preset) == ("xgboost", "pu_do", "reference")
    assert config.xgboost is REFERENCE_XGBOOST
    assert config.xgboost.params == COURSE_PARAMS
    assert config.xgboost.num_boost_round == 100
    assert config.xgboost.early_stopping_rounds == 20
    assert not config.xgboost.keep_best_iteration  # the course keeps every tree
    assert not config.uses_native_categorical
    flat = config.params()
    assert flat["preset"] == "reference"
    assert flat["num_boost_round"] == 100
    assert flat["early_stopping_rounds"] == 20
    assert flat["learning_rate"] == COURSE_PARAMS["learning_rate"]


@pytest.mark.parametrize(
    ("model", "features", "named"),
    [
        ("linear", None, ("--model linear", "--preset reference", "xgboost")),
        (None, "separate", ("--features separate", "--preset reference", "pu_do")),
        (None, "default", ("--features default", "--preset reference", "pu_do")),
    ],
)
def test_preset_conflicts(model: str | None, features: str | None, named: tuple[str, ...]) -> None:
    with pytest.raises(InvalidInputError) as caught:
        training_config(model, features, preset="reference")
    for text in named:
        assert text in str(caught.value)


def test_params_of_default_config() -> None:
    flat = training_config().params()
    assert flat["model"] == "xgboost"
    assert flat["features"] == "default"
    assert "preset" not in flat
    assert flat["num_boost_round"] == DEFAULT_XGBOOST.num_boost_round
    assert flat["seed"] == 42


# --- fitting ----------------------------------------------------------------------------


def _fast(config: TrainingConfig, rounds: int = 20) -> TrainingConfig:
    """Fewer rounds, one thread: OpenMP threads contend badly on a busy 2-core runner."""
    assert config.xgboost is not None
    params = {**config.xgboost.params, "nthread": 1}
    return dataclasses.replace(
        config,
        xgboost=dataclasses.replace(
            config.xgboost,
            params=params,
            num_boost_round=rounds,
            rounds_without_validation=rounds,
        ),
    )


def _mean_rmse(y_train: np.ndarray, y_val: np.ndarray) -> float:
    return rmse(y_val, np.full(len(y_val), y_train.mean()))


def _train(
    config: TrainingConfig, train: pd.DataFrame, val: pd.DataFrame | None = None
) -> tuple[TripDurationModel, FitResult]:
    preprocessor = Preprocessor.fit(train, config.feature_set)
    x_val = encode(preprocessor, val, config) if val is not None else None
    y_val = val["duration"].to_numpy() if val is not None else None
    result = fit_estimator(
        config,
        encode_training(preprocessor, train, config),
        train["duration"].to_numpy(),
        x_val,
        y_val,
    )
    return TripDurationModel(config, preprocessor, result.estimator), result


@pytest.fixture(scope="module")
def linear_pu_do(green_train: pd.DataFrame) -> TripDurationModel:
    return _train(training_config("linear", "pu_do"), green_train)[0]


@pytest.fixture(scope="module")
def xgboost_default(green_train: pd.DataFrame, green_val: pd.DataFrame) -> TripDurationModel:
    return _train(_fast(training_config()), green_train, green_val)[0]


def test_encode_by_model_kind(green_train: pd.DataFrame) -> None:
    native = training_config()
    onehot = training_config("xgboost", "pu_do")
    fitted = Preprocessor.fit(green_train, native.feature_set)
    frame = encode(fitted, green_train, native)
    matrix = encode(Preprocessor.fit(green_train, onehot.feature_set), green_train, onehot)
    assert isinstance(frame, pd.DataFrame)
    # The generated green months have no trip type: the model is given no column for it.
    assert fitted.absent == ("trip_type",)
    assert n_features(frame) == 2 + len(native.feature_set.numeric) - 1 == 14
    assert sp.issparse(matrix)
    assert n_features(matrix) == matrix.shape[1] > 100


@pytest.mark.parametrize("features", ["pu_do", "separate", "default"])
def test_linear_beats_the_mean(
    features: str, green_train: pd.DataFrame, green_val: pd.DataFrame
) -> None:
    config = training_config("linear", features)
    model, result = _train(config, green_train)
    assert isinstance(result.estimator, LinearRegression)
    assert result.best_iteration is None
    assert result.history == {}
    predictions = model.predict(green_val)
    assert predictions.shape == (len(green_val),)
    assert np.isfinite(predictions).all()
    assert model.intercept is not None
    baseline = _mean_rmse(green_train["duration"].to_numpy(), green_val["duration"].to_numpy())
    error = rmse(green_val["duration"].to_numpy(), predictions)
    if features == "separate":  # zones alone explain a little of the duration
        assert error < baseline
    else:  # distance explains most of it
        assert error < 0.6 * baseline


def test_xgboost_default_stops_on_a_slice_of_the_training_month(
    green_train: pd.DataFrame, green_val: pd.DataFrame
) -> None:
    config = _fast(training_config(), rounds=60)
    model, result = _train(config, green_train, green_val)
    assert isinstance(result.estimator, xgb.Booster)
    assert result.best_iteration is not None
    holdout = result.history["boosting_holdout_rmse"]
    assert 0 < len(holdout) <= 60
    assert result.best_iteration == int(np.argmin(holdout))
    # The validation month is recorded, round by round, but is not what stopped training.
    assert len(result.history["boosting_validation_rmse"]) == len(holdout)
    # keep_best_iteration: only the trees up to the best round are kept.
    assert result.estimator.num_boosted_rounds() == result.best_iteration + 1
    assert model.intercept is None
    predictions = model.predict(green_val)
    assert np.isfinite(predictions).all()
    error = rmse(green_val["duration"].to_numpy(), predictions)
    assert error == pytest.approx(
        result.history["boosting_validation_rmse"][result.best_iteration], rel=1e-4
    )
    baseline = _mean_rmse(green_train["duration"].to_numpy(), green_val["duration"].to_numpy())
    assert error < 0.6 * baseline


def _holdout_fit_and_sliced_fit(
    config: TrainingConfig, frame: pd.DataFrame
) -> tuple[Any, FitResult, FitResult]:
    """The features of ``frame``, fit_estimator's holdout fit on them, and the booster
    trained on a DMatrix of every row sliced the same way (what the holdout fit must equal)."""
    preprocessor = Preprocessor.fit(frame, config.feature_set)
    features = encode_training(preprocessor, frame, config)
    labels = frame["duration"].to_numpy()
    split = fit_estimator(config, features, labels)
    assert config.xgboost is not None
    sliced = train_booster(config.xgboost, dmatrix(features, labels))
    return features, split, sliced


@pytest.mark.parametrize("chunk_rows", [None, 397])
def test_the_holdout_split_off_the_features_trains_the_booster_of_a_sliced_dmatrix(
    green_train: pd.DataFrame, chunk_rows: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fit_estimator splits the features before building any DMatrix and boosts on a
    QuantileDMatrix read a chunk of rows at a time (memory); the model must be the one
    slicing a DMatrix of every row gives, to the last bit, in one chunk or many."""
    if chunk_rows is not None:
        assert chunk_rows < 0.5 * len(green_train)  # several chunks
        monkeypatch.setattr(models, "FIT_CHUNK_ROWS", chunk_rows)
    features, split, sliced = _holdout_fit_and_sliced_fit(
        _fast(training_config(), rounds=15), green_train
    )
    assert split.history == sliced.history
    assert isinstance(split.estimator, xgb.Booster)
    assert isinstance(sliced.estimator, xgb.Booster)
    every_row = dmatrix(features)
    np.testing.assert_array_equal(
        split.estimator.predict(every_row), sliced.estimator.predict(every_row)
    )


def test_the_holdout_fit_takes_the_boosters_own_number_of_bins(green_train: pd.DataFrame) -> None:
    """A ``max_bin`` among the booster's parameters bins the QuantileDMatrix the holdout fit
    boosts on (XGBoost refused a matrix of its default 256 bins): the same trees as slicing a
    DMatrix of every row, binned by the booster."""
    config = _fast(training_config(), rounds=10).with_xgboost_params({"max_bin": 32})
    features, split, sliced = _holdout_fit_and_sliced_fit(config, green_train)
    assert split.history == sliced.history
    labels = green_train["duration"].to_numpy()
    default_bins = fit_estimator(_fast(training_config(), rounds=10), features, labels)
    assert split.history != default_bins.history  # the bins were taken, not ignored


@pytest.mark.parametrize(
    ("rows", "threads", "expected"),
    [(70_000, 2, 1), (70_000, None, 1), (20_000_000, 2, 2), (20_000_000, 1, 1), (600_000, 8, 2)],
)
def test_a_small_month_boosts_on_one_thread(rows: int, threads: int | None, expected: int) -> None:
    assert boosting_threads(rows, threads) == min(expected, threads or available_cpus())


def test_fit_estimator_gives_xgboost_the_threads_of_its_rows(
    green_train: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    train = xgb.train

    def recording_train(params: dict[str, Any], *args: Any, **kwargs: Any) -> xgb.Booster:
        seen.append(params["nthread"])
        return train(params, *args, **kwargs)

    monkeypatch.setattr(xgb, "train", recording_train)
    monkeypatch.setattr(models, "ROWS_PER_THREAD", (len(green_train) + 1) // 2)
    config = _fast(training_config(), rounds=3)
    assert config.xgboost is not None
    config = dataclasses.replace(
        config,
        xgboost=dataclasses.replace(
            config.xgboost,
            params={k: v for k, v in config.xgboost.params.items() if k != "nthread"},
        ),
    )
    preprocessor = Preprocessor.fit(green_train, config.feature_set)
    features = encode_training(preprocessor, green_train, config)
    labels = green_train["duration"].to_numpy()
    fit_estimator(config, features, labels, nthread=8)  # two threads' worth of rows
    fit_estimator(
        config, features[: len(green_train) // 4], labels[: len(green_train) // 4], nthread=8
    )
    fit_estimator(config, features, labels, nthread=1)
    assert seen == [2, 1, 1]


def test_xgboost_default_does_not_depend_on_the_validation_month(
    green_train: pd.DataFrame, green_val: pd.DataFrame, month_with_unseen_zones: pd.DataFrame
) -> None:
    """Honest early stopping: the month a model is scored on cannot change the model."""
    config = _fast(training_config(), rounds=60)
    without, _ = _train(config, green_train)
    with_val, _ = _train(config, green_train, green_val)
    with_other, _ = _train(config, green_train, month_with_unseen_zones)
    expected = without.predict(green_val)
    np.testing.assert_array_equal(with_val.predict(green_val), expected)
    np.testing.assert_array_equal(with_other.predict(green_val), expected)


def test_xgboost_stops_on_validation_without_a_holdout(
    green_train: pd.DataFrame, green_val: pd.DataFrame
) -> None:
    config = _fast(training_config(), rounds=60)
    assert config.xgboost is not None
    config = dataclasses.replace(
        config, xgboost=dataclasses.replace(config.xgboost, holdout_fraction=None)
    )
    _, result = _train(config, green_train, green_val)
    curve = result.history["boosting_validation_rmse"]
    assert "boosting_holdout_rmse" not in result.history
    assert result.best_iteration == int(np.argmin(curve))


def test_reference_preset_keeps_all_trees(
    green_train: pd.DataFrame, green_val: pd.DataFrame
) -> None:
    config = _fast(training_config(preset="reference"), rounds=15)
    _, result = _train(config, green_train, green_val)
    assert isinstance(result.estimator, xgb.Booster)
    assert result.estimator.num_boosted_rounds() == len(result.history["boosting_validation_rmse"])


def test_xgboost_without_validation_nor_holdout(green_train: pd.DataFrame) -> None:
    config = _fast(training_config(), rounds=5)
    assert config.xgboost is not None
    config = dataclasses.replace(
        config, xgboost=dataclasses.replace(config.xgboost, holdout_fraction=None)
    )
    _, result = _train(config, green_train)
    assert result.best_iteration is None
    assert result.history == {}
    assert isinstance(result.estimator, xgb.Booster)
    assert result.estimator.num_boosted_rounds() == 5


def test_early_stopping_of_default_and_reference() -> None:
    default = training_config().xgboost
    assert default is not None
    assert default.num_boost_round > default.early_stopping_rounds
    assert default.holdout_fraction == 0.05
    # The reference preset keeps the course's behaviour: it stops on the validation month.
    reference = training_config(preset="reference").xgboost
    assert reference == REFERENCE_XGBOOST
    assert reference.holdout_fraction is None


def test_predictions_clipped_to_the_trained_range_for_default_only() -> None:
    assert training_config().prediction_range == (1.0, 60.0)
    assert training_config("linear", "default").prediction_range == (1.0, 60.0)
    # The course's figures come from its unclipped predictions.
    assert training_config(preset="reference").prediction_range is None
    assert training_config("linear", "pu_do").prediction_range is None


def test_xgboost_training_is_deterministic(green_train: pd.DataFrame) -> None:
    config = _fast(training_config(), rounds=5)
    first, _ = _train(config, green_train)
    second, _ = _train(config, green_train)
    np.testing.assert_array_equal(first.predict(green_train), second.predict(green_train))


# --- prediction -------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["linear_pu_do", "xgboost_default"])
def test_predicts_a_month_with_unseen_zones(
    which: str, request: pytest.FixtureRequest, month_with_unseen_zones: pd.DataFrame
) -> None:
    model: TripDurationModel = request.getfixturevalue(which)
    predictions = model.predict(month_with_unseen_zones)
    assert predictions.shape == (len(month_with_unseen_zones),)
    assert predictions.dtype == np.float64
    assert np.isfinite(predictions).all()


@pytest.mark.parametrize("which", ["linear_pu_do", "xgboost_default"])
@pytest.mark.parametrize("color", ["green", "yellow"])
def test_predict_raw_rows(which: str, color: str, request: pytest.FixtureRequest) -> None:
    model: TripDurationModel = request.getfixturevalue(which)
    raw = make_trips(color, Month(2023, 2), rows=50, seed=3)
    predictions = model.predict_raw(raw)
    assert predictions.shape == (50,)
    assert np.isfinite(predictions).all()
    # Without the dropoff (unknown when serving), the same predictions.
    prefix = "lpep" if color == "green" else "tpep"
    served = raw.drop(columns=[f"{prefix}_dropoff_datetime"]).head(5)
    np.testing.assert_array_equal(model.predict_raw(served), predictions[:5])


@pytest.mark.parametrize("which", ["linear_pu_do", "xgboost_default"])
def test_predict_raw_equals_predict_on_prepared(
    which: str, request: pytest.FixtureRequest, green_val: pd.DataFrame
) -> None:
    model: TripDurationModel = request.getfixturevalue(which)
    head = green_val.head(20)
    raw = pd.DataFrame(
        {
            "lpep_pickup_datetime": head["pickup_datetime"],
            "PULocationID": head["PULocationID"].astype("int64"),
            "DOLocationID": head["DOLocationID"].astype("int64"),
            "trip_distance": head["trip_distance"],
            # Request-time fields as published: integers, and floats where nulls are allowed.
            "VendorID": head["VendorID"].astype("int64"),
            "trip_type": head["trip_type"].astype("float64"),
            "passenger_count": head["passenger_count"].astype("float64"),
        }
    )
    np.testing.assert_allclose(model.predict_raw(raw), model.predict(head), rtol=1e-6)


@pytest.mark.parametrize("which", ["linear_pu_do", "xgboost_default"])
def test_pickle_round_trip(
    which: str, request: pytest.FixtureRequest, green_val: pd.DataFrame
) -> None:
    model: TripDurationModel = request.getfixturevalue(which)
    restored = pickle.loads(pickle.dumps(model))
    assert restored.config == model.config
    assert restored.preprocessor.feature_names == model.preprocessor.feature_names
    np.testing.assert_array_equal(restored.predict(green_val), model.predict(green_val))


def _trip(pu: int, do: int, distance: float, pickup: str = "2023-02-06 12:00") -> dict[str, object]:
    return {
        "lpep_pickup_datetime": pd.Timestamp(pickup),
        "PULocationID": pu,
        "DOLocationID": do,
        "trip_distance": distance,
    }


def test_longer_distance_predicts_longer_duration(linear_pu_do: TripDurationModel) -> None:
    """Directional expectation: same zones, a longer trip takes longer."""
    for pu, do in [(12, 8), (39, 50), (5, 5)]:
        raw = pd.DataFrame([_trip(pu, do, d) for d in (0.5, 2.0, 5.0, 10.0)])
        predictions = linear_pu_do.predict_raw(raw)
        assert (np.diff(predictions) > 0).all(), (pu, do, predictions)


def test_linear_pu_do_ignores_pickup_time(linear_pu_do: TripDurationModel) -> None:
    """Invariance: pu_do features have no time, so the pickup time cannot matter."""
    raw = pd.DataFrame(
        [_trip(12, 8, 3.0, "2023-02-06 08:00"), _trip(12, 8, 3.0, "2023-02-11 23:30")]
    )
    predictions = linear_pu_do.predict_raw(raw)
    assert predictions[0] == predictions[1]
