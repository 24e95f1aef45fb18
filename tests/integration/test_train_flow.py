"""The train flow end to end on the embedded defaults: registry, metrics, artifact, cache."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import mlflow
import pyarrow.parquet as pq
import pytest
from data_server import SERVED_REQUESTS
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
)

from taxi_duration import cache
from taxi_duration.errors import TrackingError
from taxi_duration.flows.train import STEPS, train
from taxi_duration.settings import Settings
from taxi_duration.specs import TrainSpec
from taxi_duration.tracking.runs import SKIP_CHECKS_TAG
from taxi_duration.tracking.store import experiment_id

pytestmark = pytest.mark.slow


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
    version = client.get_model_version("nyc-taxi-duration-green", summary.model_version)
    assert version.run_id == summary.run_id
    run = client.get_run(summary.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["rmse"] == pytest.approx(summary.rmse)
    assert run.data.metrics["rows_kept"] == summary.rows_kept
    assert run.data.params["train_month"] == "2023-01"
    assert run.data.params["val_month"] == "2023-02"
    assert summary.rows_kept < summary.rows_loaded == 2000
    assert set(summary.timings) == set(STEPS)
    # Both months passed the data checks; their figures are the run's metrics.
    assert run.data.tags[SKIP_CHECKS_TAG] == "false"
    assert run.data.metrics["check_train_kept_rows"] == summary.rows_kept
    assert run.data.metrics["check_val_kept_rows"] == summary.val_rows
    assert run.data.metrics["check_val_kept_share"] == summary.val_rows / 2000

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


def _prepared_entries(workspace: Path) -> dict[str, int]:
    """The prepared-months cache: each entry's file name and inode (a rewrite changes it)."""
    return {p.name: p.stat().st_ino for p in (workspace / "data" / "prepared").glob("*.parquet")}


def test_rerun_of_an_unchanged_month_reuses_download_and_prepared_months(
    prefect_api: None, data_url: str, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(year=2023, month=2, model="linear", features="separate")
    downloads = [r for r in SERVED_REQUESTS[data_url] if r.startswith("GET")]
    entries = _prepared_entries(workspace)
    assert len(entries) == 2

    def not_again(path: Path, color: str) -> None:
        raise AssertionError(f"{path.name} prepared again")

    monkeypatch.setattr(cache, "prepare_trips", not_again)
    _run(year=2023, month=2, model="linear", features="separate")

    # The first run's download was kept: nothing fetched again.
    assert [r for r in SERVED_REQUESTS[data_url] if r.startswith("GET")] == downloads
    assert _prepared_entries(workspace) == entries  # read, not rewritten
    # No task-run states here: Prefect records them from events, which a loaded machine can
    # delay past the flow's return; what was not done again is checked above, from its effects.


def test_a_changed_file_is_prepared_again(
    prefect_api: None, data_url: str, workspace: Path
) -> None:
    _run(year=2023, month=1, model="linear", features="separate")
    before = _prepared_entries(workspace)
    month = workspace / "data" / "green_tripdata_2023-02.parquet"
    table = pq.read_table(month)
    pq.write_table(table.slice(0, table.num_rows // 2), month)  # new bytes, same name
    _run(year=2023, month=1, model="linear", features="separate")
    after = _prepared_entries(workspace)
    assert len(after) == 3  # January's entry reused, February's new one beside the old
    assert {name: after[name] for name in before} == before


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
    assert client.search_model_versions("name='nyc-taxi-duration-green'") == []
    runs = client.search_runs([client.get_experiment_by_name("nyc-taxi-duration").experiment_id])
    assert [run.info.status for run in runs] == ["FAILED"]


def test_without_registering_the_run_is_logged_and_the_registry_untouched(
    prefect_api: None, data_url: str, registry: MlflowClient
) -> None:
    first, _ = _run(year=2023, month=1, model="linear", features="pu_do")
    unregistered, _ = _run(year=2023, month=1, register_version=False)

    assert unregistered.model_version is None
    assert unregistered.model_name is None
    assert not unregistered.promoted
    assert "not registered" in unregistered.promotion_reason
    assert "promote" not in unregistered.timings
    versions = registry.search_model_versions("name='nyc-taxi-duration-green'")
    assert [str(version.version) for version in versions] == [first.model_version]
    champion = registry.get_model_version_by_alias("nyc-taxi-duration-green", "champion")
    assert str(champion.version) == first.model_version
    with pytest.raises(MlflowException):
        registry.get_model_version_by_alias("nyc-taxi-duration-green", "challenger")
    run = registry.get_run(unregistered.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["rmse"] == pytest.approx(unregistered.rmse)
    # The model is logged with the run, loadable from it.
    assert unregistered.model_uri.startswith(("runs:/", "models:/m-"))
    loaded = mlflow.pyfunc.load_model(unregistered.model_uri)
    assert loaded.metadata.run_id == unregistered.run_id


def test_the_run_records_its_months_code_and_flow_run_and_the_version_describes_itself(
    prefect_api: None, data_url: str, registry: MlflowClient, workspace: Path
) -> None:
    summary, flow_run_id = _run(year=2023, month=1, model="linear", features="pu_do")

    run = registry.get_run(summary.run_id)
    inputs = {
        next(tag.value for tag in data.tags if tag.key == "mlflow.data.context"): data
        for data in run.inputs.dataset_inputs
    }
    assert set(inputs) == {"training", "validation"}
    for context, month, rows in (
        ("training", "2023-01", summary.rows_loaded),
        ("validation", "2023-02", summary.val_rows_loaded),
    ):
        data = inputs[context]
        path = workspace / "data" / f"green_tripdata_{month}.parquet"
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        assert data.dataset.name == f"green_tripdata_{month}"
        assert json.loads(data.dataset.source)["url"] == f"{data_url}/{path.name}"
        tags = {tag.key: tag.value for tag in data.tags}
        assert tags["sha256"] == sha256
        assert data.dataset.digest == sha256[:32]
        assert tags["rows"] == str(rows)

    assert run.data.tags["taxi_duration_version"]
    assert f"validation RMSE {summary.rmse:.4f}" in run.data.tags["mlflow.note.content"]
    assert run.data.tags["prefect.flow_run_id"] == str(flow_run_id)
    assert str(flow_run_id) in run.data.tags.get("prefect.flow_run_url", str(flow_run_id))
    version = registry.get_model_version("nyc-taxi-duration-green", summary.model_version)
    assert "training green_tripdata_2023-01" in version.description
    assert f"validation RMSE {summary.rmse:.4f}" in version.description
    assert "champion: first version" in version.description

    artifacts = {item.path for item in registry.list_artifacts(summary.run_id, "charts")}
    assert {"charts/residuals_by_hour.png", "charts/predicted_vs_actual.png"} <= artifacts
    summary_md = registry.download_artifacts(summary.run_id, "summary.md", str(workspace))
    assert f"{summary.rmse:.4f}" in Path(summary_md).read_text()
    experiment = registry.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_an_identical_model_is_not_registered_again_and_touches_no_alias(
    prefect_api: None, data_url: str, registry: MlflowClient
) -> None:
    name = "nyc-taxi-duration-green"
    first, _ = _run(year=2023, month=1, model="linear", features="pu_do")
    other, _ = _run(year=2023, month=1, model="linear", features="separate")
    aliases = registry.get_registered_model(name).aliases
    description = registry.get_model_version(name, first.model_version).description

    again, _ = _run(year=2023, month=1, model="linear", features="pu_do")

    # Same months, parameters and code: the run points to version 1 and registers nothing.
    assert again.reused
    assert (again.model_name, again.model_version) == (name, first.model_version)
    assert again.model_uri == f"models:/{name}/{first.model_version}"
    assert not again.promoted
    assert f"identical to version {first.model_version}" in again.promotion_reason
    assert "promote" not in again.timings
    versions = registry.search_model_versions(f"name='{name}'")
    assert sorted(str(v.version) for v in versions) == sorted(
        [first.model_version, other.model_version]
    )
    assert registry.get_registered_model(name).aliases == aliases
    assert registry.get_model_version(name, first.model_version).description == description
    run = registry.get_run(again.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["taxi_duration.reused_version"] == first.model_version
    assert (
        run.data.tags["taxi_duration.fingerprint"]
        == (registry.get_model_version(name, first.model_version).tags["taxi_duration.fingerprint"])
    )
    assert run.data.metrics["rmse"] == pytest.approx(first.rmse)
    assert "reused" in again.markdown()


def test_the_final_rmse_and_the_boosting_curve_have_their_own_names(
    prefect_api: None, data_url: str, registry: MlflowClient
) -> None:
    summary, _ = _run(year=2023, month=1)  # the default XGBoost model

    run = registry.get_run(summary.run_id)
    # `rmse`: the clipped predictions on the validation month, one value (what promotion uses).
    assert run.data.metrics["rmse"] == pytest.approx(summary.rmse)
    assert len(registry.get_metric_history(summary.run_id, "rmse")) == 1
    # XGBoost's own per-round evaluation, a curve under names of its own.
    curve = registry.get_metric_history(summary.run_id, "boosting_validation_rmse")
    assert len(curve) > 1
    assert [point.step for point in curve] == list(range(len(curve)))
    assert registry.get_metric_history(summary.run_id, "boosting_holdout_rmse")
    assert "validation_rmse" not in run.data.metrics


def test_an_experiment_made_without_a_kind_gets_the_model_training_view(
    workspace: Path, registry: MlflowClient
) -> None:
    settings = Settings()
    old = registry.create_experiment(settings.experiment_name)  # as MLflow 2 made it: no kind
    assert "mlflow.experimentKind" not in registry.get_experiment(old).tags
    assert experiment_id(registry, settings) == old
    assert registry.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"
    # A kind chosen in the UI is the user's: kept.
    registry.set_experiment_tag(old, "mlflow.experimentKind", "genai_development")
    experiment_id(registry, settings)
    assert registry.get_experiment(old).tags["mlflow.experimentKind"] == "genai_development"
