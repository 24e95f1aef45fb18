"""The train flow end to end on the embedded defaults: registry, metrics, artifact, cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)

from taxi_duration.errors import TrackingError
from taxi_duration.flows.train import STEPS, train
from taxi_duration.specs import TrainSpec

pytestmark = pytest.mark.slow


def _task_states(flow_run_id: UUID) -> dict[str, list[str]]:
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    states: dict[str, list[str]] = {}
    for task_run in task_runs:
        assert task_run.state is not None
        states.setdefault(task_run.name.rsplit("-", 1)[0], []).append(task_run.state.name)
    return states


def _run(**parameters: Any) -> tuple[Any, UUID]:
    state = train(TrainSpec.parse(**parameters), return_state=True)
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    return state.result(), flow_run_id


def test_flow_registers_a_version_with_its_metrics_and_a_summary_artifact(
    prefect_api: None, data_url: str, workspace: Path, registry: MlflowClient
) -> None:
    summary, flow_run_id = _run(year=2023, month=1, model="linear", features="pu_do")

    client = registry
    version = client.get_model_version("nyc-taxi-duration", summary.model_version)
    assert version.run_id == summary.run_id
    run = client.get_run(summary.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["rmse"] == pytest.approx(summary.rmse)
    assert run.data.metrics["rows_kept"] == summary.rows_kept
    assert run.data.params["train_month"] == "2023-01"
    assert run.data.params["val_month"] == "2023-02"
    assert summary.rows_kept < summary.rows_loaded == 2000
    assert set(summary.timings) == set(STEPS)

    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    assert [artifact.key for artifact in artifacts] == ["train-summary"]
    markdown = str(artifacts[0].data)
    assert "2023-01" in markdown
    assert summary.run_id in markdown
    assert f"version {summary.model_version}" in markdown
    assert f"{summary.rmse:.4f}" in markdown


def test_rerun_of_an_unchanged_month_reuses_ingest_and_prepare(
    prefect_api: None, data_url: str, workspace: Path
) -> None:
    # The first run downloads: with no file to key on, its ingest is not cached; the
    # second run's is.
    _run(year=2023, month=2, model="linear", features="separate")
    _run(year=2023, month=2, model="linear", features="separate")
    _, flow_run_id = _run(year=2023, month=2, model="linear", features="separate")

    states = _task_states(flow_run_id)
    assert states["ingest"] == ["Cached", "Cached"]
    assert states["prepare"] == ["Cached", "Cached"]
    assert states["train"] == ["Completed"]


def test_a_changed_file_is_prepared_again(
    prefect_api: None, data_url: str, workspace: Path
) -> None:
    _run(year=2023, month=1, model="linear", features="separate")
    cached = workspace / "data" / "green_tripdata_2023-02.parquet"
    cached.touch()  # same bytes, new modification time: the key must change
    _, flow_run_id = _run(year=2023, month=1, model="linear", features="separate")
    assert "Completed" in _task_states(flow_run_id)["prepare"]


def test_a_run_that_fails_while_logging_registers_no_version(
    prefect_api: None,
    data_url: str,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    registry: MlflowClient,
) -> None:
    def broken_log_model(*args: Any, **kwargs: Any) -> None:
        raise OSError("artifact store is full")

    monkeypatch.setattr(mlflow.pyfunc, "log_model", broken_log_model)
    with pytest.raises(TrackingError, match="artifact store is full"):
        train(TrainSpec.parse(year=2023, month=1, model="linear", features="pu_do"))

    client = registry
    assert client.search_model_versions("name='nyc-taxi-duration'") == []
    runs = client.search_runs([client.get_experiment_by_name("nyc-taxi-duration").experiment_id])
    assert [run.info.status for run in runs] == ["FAILED"]
