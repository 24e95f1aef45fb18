"""The backtest flow on Dask: same RMSE as train, nothing registered, failures kept per pair."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from uuid import UUID

import pytest
from cli_output import progress_match
from data_server import SERVED_REQUESTS
from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from taxi_duration import cli
from taxi_duration.errors import BacktestFailedError
from taxi_duration.flows.backtest import backtest, backtest_pairs, task_runner
from taxi_duration.flows.train import train
from taxi_duration.specs import BacktestSpec, TrainSpec

pytestmark = pytest.mark.slow


def test_backtest_matches_train_and_registers_nothing(
    prefect_api: None, data_url: str, workspace: Path, registry: MlflowClient
) -> None:
    summary = backtest(
        BacktestSpec.parse(
            start="2023-01", end="2023-03", model="linear", features="pu_do", workers=2
        )
    )

    assert [(r.train, r.val) for r in summary.results] == [
        ("2023-01", "2023-02"),
        ("2023-02", "2023-03"),
    ]
    assert all(r.ok and r.rows and r.baseline_rmse for r in summary.results)
    assert summary.executor == "local dask cluster, 2 worker processes"

    client = registry
    assert client.search_model_versions() == []  # nothing registered, no champion
    parent = client.get_run(summary.run_id)
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{summary.run_id}'",
    )
    assert sorted(run.info.run_name for run in children) == [
        "2023-01-2023-02",
        "2023-02-2023-03",
    ]
    assert [a.path for a in client.list_artifacts(summary.run_id)] == ["backtest_rmse.png"]
    chart = Path(client.download_artifacts(summary.run_id, "backtest_rmse.png", str(workspace)))
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with get_client(sync_client=True) as prefect:
        artifact = prefect.read_latest_artifacts()
    assert "backtest-results" in {a.key for a in artifact}

    for result in summary.results:
        trained = train(
            TrainSpec.parse(
                year=int(result.train[:4]),
                month=int(result.train[5:]),
                model="linear",
                features="pu_do",
            )
        )
        assert result.rmse == pytest.approx(trained.rmse, rel=1e-9)  # BLAS threads differ
        assert result.rows == trained.rows_kept


def test_a_month_not_published_fails_its_pair_and_keeps_the_others(
    prefect_api: None,
    data_url: str,
    workspace: Path,
    capsys: pytest.CaptureFixture[str],
    registry: MlflowClient,
) -> None:
    code = cli.main(
        ["backtest", "--from", "2023-02", "--to", "2023-04", "--model", "linear", "--json"]
    )
    out, err = capsys.readouterr()
    assert code == 1
    # Progress as the pairs end on the workers, and the MLflow logging's start and end.
    progress = [line for line in err.splitlines() if progress_match(line)]
    assert progress[0] == "pairs 2 on local dask cluster, 2 worker processes ...", err
    assert re.fullmatch(r"pair 2023-02 -> 2023-03 \d+\.\d s", progress[1]), err
    assert re.fullmatch(r"pair 2023-03 -> 2023-04 failed after \d+\.\d s", progress[2]), err
    assert progress[4].startswith("track in MLflow "), err
    result = json.loads(out.strip().splitlines()[-1])
    ok, failed = result["results"]
    assert (ok["train"], ok["val"], ok["error"]) == ("2023-02", "2023-03", None)
    assert min(ok["rmse"], ok["baseline_rmse"], ok["rows"]) > 0
    assert (failed["train"], failed["val"], failed["rmse"]) == ("2023-03", "2023-04", None)
    assert "green 2023-04 is not published" in failed["error"]
    assert result["failed"] == 1
    assert registry.search_model_versions() == []


def test_the_flow_raises_with_every_pair_result(
    prefect_api: None, data_url: str, workspace: Path
) -> None:
    with pytest.raises(BacktestFailedError, match="1 of 1 pairs failed") as raised:
        backtest(BacktestSpec.parse(start="2023-03", end="2023-04", model="linear", workers=1))
    (result,) = raised.value.summary.results
    assert result.error is not None
    assert "green 2023-04 is not published" in result.error


def test_default_xgboost_on_an_existing_dask_cluster_matches_train(
    prefect_api: None,
    data_url: str,
    workspace: Path,
    dask_cluster: str,
) -> None:
    summary = backtest(
        BacktestSpec.parse(start="2023-01", end="2023-02", dask_address=dask_cluster)
    )
    assert summary.executor == f"dask cluster at {dask_cluster}"
    (result,) = summary.results
    trained = train(TrainSpec.parse(year=2023, month=1))  # the default model
    assert result.rmse == pytest.approx(trained.rmse, rel=1e-9)
    assert result.rows == trained.rows_kept


def _task_states(flow_run_id: UUID, *names: str) -> dict[str, str]:
    """The final states of the run's task runs by name, once ``names`` are among them:
    Prefect records them from events, which a loaded machine can delay past the run."""
    deadline = time.monotonic() + 60
    while True:
        with get_client(sync_client=True) as client:
            task_runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        states = {
            run.name: run.state.name
            for run in task_runs
            if run.state is not None and run.state.is_final()
        }
        if set(names) <= set(states) or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def test_a_second_backtest_on_a_dask_cluster_reuses_the_prepared_months_without_errors(
    prefect_api: None,
    data_url: str,
    workspace: Path,
    dask_cluster: str,
    dask_logs: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The prepared months cached by the Dask workers are read back by the second backtest."""
    spec = BacktestSpec.parse(
        start="2023-01", end="2023-02", model="linear", features="pu_do", dask_address=dask_cluster
    )
    runner = task_runner(address=dask_cluster)
    states, downloads, entries = [], [], []
    for _ in range(2):
        state = backtest_pairs.with_options(task_runner=runner)(spec, return_state=True)
        assert state.is_completed()
        assert state.state_details.flow_run_id is not None
        months = ("green-2023-01", "green-2023-02")
        prepared = [f"prepare-{month}" for month in months]
        states.append(_task_states(state.state_details.flow_run_id, *prepared))
        downloads.append([r for r in SERVED_REQUESTS[data_url] if r.startswith("GET")])
        entries.append(
            {p.name: p.stat().st_ino for p in (workspace / "data" / "prepared").glob("*.parquet")}
        )

    first, second = states
    assert {first[f"prepare-{month}"] for month in months} == {"Completed"}
    assert {second[f"prepare-{month}"] for month in months} == {"Completed"}
    assert len(entries[0]) == 2
    assert entries[1] == entries[0]  # the second run read them, wrote none
    assert downloads[1] == downloads[0]  # the second run downloaded nothing
    worker_log = (dask_logs / "worker.log").read_text(errors="replace")
    assert " ERROR " not in worker_log, worker_log[-3000:]
    # Not Prefect's own background services (sending logs and events to the API), which can
    # fail an item on a loaded machine without touching the run.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in errors if not r.name.startswith("prefect._internal")], errors
