"""The data checks in the flows: a month that fails them stops train, tune and backtest
before anything is trained or registered, unless the run skips them (``skip_checks``)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
from data_server import SERVED_REQUESTS
from mlflow.tracking import MlflowClient

from taxi_duration.errors import DataCheckError, DataError, InvalidInputError
from taxi_duration.flows.backtest import backtest_pairs
from taxi_duration.flows.train import train
from taxi_duration.flows.tune import tune
from taxi_duration.specs import BacktestSpec, TrainSpec, TuneSpec
from taxi_duration.tracking.runs import SKIP_CHECKS_TAG

pytestmark = pytest.mark.slow

# green 2023-02 of ``bad_months``: 90% of its distances are 0 (0.899 of the kept trips).
ZERO_DISTANCE_FEB = re.compile(
    r"green 2023-02: share of trips with zero distance 0\.(8\d*|9) is over the allowed 0\.15"
)


@pytest.fixture
def bad_data_url(
    workspace: Path,
    http_server: functools.partial[str],
    bad_months: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    url = http_server(bad_months)
    monkeypatch.setenv("TAXI_DURATION_DATA_URL", url)
    return url


@pytest.fixture
def store(workspace: Path, bad_data_url: str) -> MlflowClient:
    uri = f"sqlite:///{workspace / 'mlflow' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _nothing_tracked(workspace: Path, store: MlflowClient) -> bool:
    """No MLflow run and no model version: nothing was trained, logged or registered."""
    if not (workspace / "mlflow" / "mlflow.db").exists():
        return True
    experiments = [e.experiment_id for e in store.search_experiments()]
    return store.search_runs(experiments) == [] and store.search_model_versions() == []


def test_a_failing_validation_month_stops_train_before_training_and_the_run_fails(
    prefect_api: None, workspace: Path, store: MlflowClient
) -> None:
    state = train(TrainSpec.parse(year=2023, month=1, model="linear"), return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, DataCheckError)
    assert ZERO_DISTANCE_FEB.fullmatch(str(error)), error
    assert _nothing_tracked(workspace, store)


def test_a_failing_training_month_stops_tune_before_its_search(
    prefect_api: None, workspace: Path, store: MlflowClient
) -> None:
    with pytest.raises(DataCheckError) as raised:
        tune(TuneSpec.parse(year=2023, month=2, trials=1))
    assert ZERO_DISTANCE_FEB.fullmatch(str(raised.value)), raised.value
    assert _nothing_tracked(workspace, store)  # no parent run, no trial


def test_a_month_without_a_column_stops_train_naming_the_month_and_column(
    prefect_api: None, workspace: Path, store: MlflowClient
) -> None:
    with pytest.raises(DataError) as raised:
        train(TrainSpec.parse(year=2023, month=3, model="linear"))
    assert str(raised.value) == (
        "green_tripdata_2023-04.parquet: required column 'PULocationID' is missing (green data)"
    )
    assert _nothing_tracked(workspace, store)


def test_skip_checks_trains_on_the_failing_month_and_the_run_says_so(
    prefect_api: None, workspace: Path, store: MlflowClient
) -> None:
    summary = train(TrainSpec.parse(year=2023, month=1, model="linear", skip_checks=True))
    assert summary.model_version == "1"
    run = store.get_run(summary.run_id)
    assert run.data.tags[SKIP_CHECKS_TAG] == "true"
    metrics = run.data.metrics
    assert metrics["check_val_zero_distance_share"] == pytest.approx(0.899, abs=0.001)
    assert metrics["check_val_kept_rows"] == summary.val_rows
    assert metrics["check_train_kept_rows"] == summary.rows_kept
    assert metrics["check_train_published_rows"] == summary.rows_loaded == 2_000
    assert metrics["check_train_zero_distance_share"] < 0.15


def test_a_failing_month_fails_each_backtest_pair_it_is_in_with_the_checks_line(
    prefect_api: None, workspace: Path, store: MlflowClient
) -> None:
    # backtest_pairs on its default runner (threads): the Dask cluster adds nothing here.
    spec = BacktestSpec.parse(start="2023-01", end="2023-03", model="linear")
    state = backtest_pairs(spec, return_state=True)
    assert state.is_failed()
    summary = state.result(raise_on_failure=False).summary
    assert [(r.train, r.val) for r in summary.results] == [
        ("2023-01", "2023-02"),
        ("2023-02", "2023-03"),
    ]
    for result in summary.results:
        assert result.rmse is None
        assert ZERO_DISTANCE_FEB.fullmatch(result.error or ""), result.error
    parent = store.get_run(summary.run_id)
    assert parent.data.tags[SKIP_CHECKS_TAG] == "false"
    assert store.search_model_versions() == []


def test_a_threshold_out_of_range_is_one_line_before_any_download(
    prefect_api: None, workspace: Path, bad_data_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAXI_DURATION_CHECK_MAX_ZERO_DISTANCE_SHARE", "1.5")
    with pytest.raises(InvalidInputError) as raised:
        train(TrainSpec.parse(year=2023, month=1, model="linear"))
    assert str(raised.value) == "max_zero_distance_share 1.5 is not a share between 0 and 1"
    assert SERVED_REQUESTS[bad_data_url] == []
