"""The course's figures on the real TLC months, and the default model against them.

The files in ../shared/data/tlc are served from 127.0.0.1 and fetched by ``ingest``. Each
course run is trained once and shared by the module's tests: the reference preset on 2023-01
(the train flow) gives the course's figure and the bar the default must clear there; the
linear model on 2021-01 the course's figure and what a backtest of it must match; that
backtest's baseline, the reference preset on 2021-01, the bar the default must clear there.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from taxi_duration import models
from taxi_duration.backtest import PairResult
from taxi_duration.evaluate import rmse
from taxi_duration.features.preprocessor import Preprocessor
from taxi_duration.flows.backtest import backtest
from taxi_duration.flows.train import train
from taxi_duration.prepare import PreparedTrips, prepare_trips
from taxi_duration.specs import BacktestSpec, TrainSpec
from taxi_duration.summary import TrainSummary

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

# The default's margin below the reference's RMSE on each pair (docs/model.md).
DEFAULT_AT_MOST = 0.83


@dataclass(frozen=True)
class BacktestRecord:
    result: PairResult
    versions_before: list[tuple[str, str]]  # (name, version) in the registry
    versions_after: list[tuple[str, str]]


@pytest.fixture(scope="module")
def real_months(module_workspace: Path, real_data_url: str) -> Iterator[Path]:
    """The module's workspace, downloading from the real months."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("TAXI_DURATION_DATA_URL", real_data_url)
        yield module_workspace


@pytest.fixture(scope="module")
def reference_2023(prefect_api: None, real_months: Path) -> TrainSummary:
    return train(TrainSpec.parse(year=2023, month=1, preset="reference"))


@pytest.fixture(scope="module")
def linear_2021(prefect_api: None, real_months: Path) -> TrainSummary:
    return train(TrainSpec.parse(year=2021, month=1, model="linear", features="pu_do"))


@pytest.fixture(scope="module")
def backtest_2021(prefect_api: None, real_months: Path) -> BacktestRecord:
    """The linear pair 2021-01 -> 02 on a local cluster of 2 workers, and the registry's
    versions before and after it."""
    uri = f"sqlite:///{real_months / 'mlflow' / 'mlflow.db'}"
    registry = MlflowClient(tracking_uri=uri, registry_uri=uri)
    before = _versions(registry)
    summary = backtest(
        BacktestSpec.parse(
            start="2021-01", end="2021-02", model="linear", features="pu_do", workers=2
        )
    )
    (result,) = summary.results
    return BacktestRecord(result, before, _versions(registry))


def _versions(registry: MlflowClient) -> list[tuple[str, str]]:
    return sorted((v.name, str(v.version)) for v in registry.search_model_versions())


def test_reference_preset_reproduces_the_course_rmse(reference_2023: TrainSummary) -> None:
    assert reference_2023.rows_loaded == 68_211
    assert reference_2023.rows_kept == 65_946
    assert reference_2023.val_rows == 62_574
    assert reference_2023.rmse == pytest.approx(5.19, rel=0.01)


def test_linear_on_pu_do_reproduces_the_course_rmse(linear_2021: TrainSummary) -> None:
    assert linear_2021.rows_kept == 73_908
    assert linear_2021.val_rows == 61_921
    assert linear_2021.rmse == pytest.approx(7.7587, abs=0.0005)


def _validation_rmse(
    config: models.TrainingConfig, train: PreparedTrips, val: PreparedTrips
) -> float:
    """RMSE on ``val`` through the train flow's own steps (features_task, fit, evaluate).

    The default is scored honestly: its statistics come out of fold on the training month and
    it stops early on a slice of the training month, never on the month it is scored on.
    Speed is measured in benchmarks/default_vs_reference.py, not here.
    """
    preprocessor = Preprocessor.fit(train.frame, config.feature_set)
    x_train = models.encode_training(preprocessor, train.frame, config)
    x_val = models.encode(preprocessor, val.frame, config)
    y_val = val.frame["duration"].to_numpy()
    fit = models.fit_estimator(config, x_train, train.frame["duration"].to_numpy(), x_val, y_val)
    model = models.TripDurationModel(config, preprocessor, fit.estimator)
    return rmse(y_val, model.predict_features(x_val))


def _prepared(real_data_dir: Path, month: str) -> PreparedTrips:
    return prepare_trips(real_data_dir / f"green_tripdata_{month}.parquet", "green")


def test_the_default_beats_the_reference_by_17_percent_on_2021(
    real_data_dir: Path, backtest_2021: BacktestRecord
) -> None:
    train, val = _prepared(real_data_dir, "2021-01"), _prepared(real_data_dir, "2021-02")
    default = _validation_rmse(models.training_config(), train, val)
    reference = backtest_2021.result.baseline_rmse  # the reference preset, the same steps
    assert reference is not None
    assert default <= DEFAULT_AT_MOST * reference, f"default {default:.4f} vs {reference:.4f}"


def test_the_default_beats_the_reference_by_17_percent_on_2023(
    real_data_dir: Path, reference_2023: TrainSummary
) -> None:
    train, val = _prepared(real_data_dir, "2023-01"), _prepared(real_data_dir, "2023-02")
    default = _validation_rmse(models.training_config(), train, val)
    reference = reference_2023.rmse  # the same steps, through the train flow
    assert reference is not None
    assert default <= DEFAULT_AT_MOST * reference, f"default {default:.4f} vs {reference:.4f}"


def test_a_backtest_on_a_local_cluster_matches_train_and_registers_nothing(
    backtest_2021: BacktestRecord, linear_2021: TrainSummary
) -> None:
    result = backtest_2021.result
    assert result.error is None
    assert result.rows == linear_2021.rows_kept
    # Dask workers run BLAS single-threaded (OMP_NUM_THREADS=1): equal to ~1e-10, not bit for bit.
    assert result.rmse == pytest.approx(linear_2021.rmse, rel=1e-9)
    assert result.baseline_rmse is not None
    assert result.baseline_rmse < result.rmse  # the reference XGBoost beats linear regression
    assert backtest_2021.versions_after == backtest_2021.versions_before
