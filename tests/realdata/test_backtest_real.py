"""A backtest on real months, served from 127.0.0.1, on a local cluster of 2 workers."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from taxi_duration.flows.backtest import backtest
from taxi_duration.flows.train import train
from taxi_duration.specs import BacktestSpec, TrainSpec

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_backtest_on_real_months_matches_train(
    prefect_api: None,
    workspace: Path,
    real_data_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TAXI_DURATION_DATA_URL", real_data_url)
    summary = backtest(
        BacktestSpec.parse(
            start="2021-01", end="2021-02", model="linear", features="pu_do", workers=2
        )
    )
    (result,) = summary.results
    assert result.error is None
    uri = f"sqlite:///{workspace / 'mlflow' / 'mlflow.db'}"
    assert MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions() == []

    trained = train(TrainSpec.parse(year=2021, month=1, model="linear", features="pu_do"))
    assert result.rows == trained.rows_kept
    # Dask workers run BLAS single-threaded (OMP_NUM_THREADS=1): equal to ~1e-10, not bit for bit.
    assert result.rmse == pytest.approx(trained.rmse, rel=1e-9)
    assert result.baseline_rmse is not None
    assert result.baseline_rmse < result.rmse  # the reference XGBoost beats linear regression
