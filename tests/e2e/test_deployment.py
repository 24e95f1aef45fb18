"""The deployments as a team runs them: the real servers, a worker, ``prefect deploy``.

On the session's stack (conftest.py: ``taxi-duration stack up`` on free loopback ports, all its
state in a temporary folder), ``prefect deploy --all`` deploys from the repository's
prefect.yaml; runs are triggered with ``prefect deployment run`` and train on generated months
served over loopback HTTP. Each run is found in MLflow by the Prefect flow run it tags.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow.artifacts
import pytest
from data_server import SERVED_REQUESTS
from mlflow.tracking import MlflowClient
from ports import free_port
from team_stack import BIN, ISOLATED, Stack, run

from taxi_duration.tracking.runs import REUSED_VERSION_TAG

pytestmark = pytest.mark.slow

MODEL_NAME = "nyc-taxi-duration-green"


def trigger(stack: Stack, *args: str) -> str:
    """``prefect deployment run 'train/monthly' ARGS``; the flow run's id."""
    return stack.trigger("train/monthly", *args)


def summary_artifact(stack: Stack, flow_run_id: str) -> str:
    artifacts = stack.call(
        "POST",
        "/artifacts/filter",
        {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}, "key": {"any_": ["train-summary"]}}},
    )
    assert len(artifacts) == 1, artifacts
    assert artifacts[0]["type"] == "markdown"
    return str(artifacts[0]["data"])


def registered_version(stack: Stack, flow_run_id: str) -> tuple[Any, Any]:
    """The MLflow run the Prefect flow run trained, and the version it registered."""
    client = MlflowClient(tracking_uri=stack.mlflow, registry_uri=stack.mlflow)
    experiment = client.get_experiment_by_name("nyc-taxi-duration")
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`prefect.flow_run_id` = '{flow_run_id}'"
    )
    assert len(runs) == 1, [r.data.params for r in runs]
    # Its own version, or the identical one an earlier run on the stack registered (reused).
    reused = runs[0].data.tags.get(REUSED_VERSION_TAG)
    if reused is not None:
        return runs[0], client.get_model_version(MODEL_NAME, reused)
    versions = client.search_model_versions(f"run_id = '{runs[0].info.run_id}'")
    assert len(versions) == 1
    assert versions[0].name == MODEL_NAME
    return runs[0], versions[0]


def test_deploy_creates_the_scheduled_and_manual_deployments(
    team_stack: Stack, team_deployed: subprocess.CompletedProcess[str]
) -> None:
    monthly = team_stack.call("GET", "/deployments/name/train/monthly")
    assert monthly["work_pool_name"] == "taxi-duration"
    [schedule] = monthly["schedules"]
    assert schedule["active"] is True
    assert schedule["schedule"]["cron"] == "0 9 3 * *"
    assert schedule["schedule"]["timezone"] == "UTC"
    # Nothing of the deploying machine: the worker imports the installed package.
    assert monthly["entrypoint"] == "taxi_duration.flows.train.train"
    assert monthly["pull_steps"] == []
    assert monthly["path"] is None

    # The champion judged the day before each training; a degraded month retrains.
    monitor = team_stack.call("GET", "/deployments/name/monitor/monthly")
    assert monitor["entrypoint"] == "taxi_duration.flows.monitor.monitor"
    [monitor_schedule] = monitor["schedules"]
    assert monitor_schedule["schedule"]["cron"] == "0 9 2 * *"
    automations = team_stack.call("POST", "/automations/filter", {})
    [retrain] = [a for a in automations if a["name"].startswith("train/monthly: retrain")]
    assert retrain["trigger"]["expect"] == ["taxi-duration.model.degraded"]
    [action] = retrain["actions"]
    assert action["type"] == "run-deployment"
    assert action["deployment_id"] == monthly["id"]

    pool = team_stack.call("GET", "/work_pools/taxi-duration")
    assert pool["type"] == "process"

    for flow_name, entrypoint in [
        ("tune", "taxi_duration.flows.tune.tune"),
        ("predict", "taxi_duration.flows.predict.predict"),
        ("backtest", "taxi_duration.flows.backtest.backtest"),
    ]:
        manual = team_stack.call("GET", f"/deployments/name/{flow_name}/manual")
        assert manual["schedules"] == []
        assert manual["entrypoint"] == entrypoint
        assert manual["work_pool_name"] == "taxi-duration"


def test_a_run_with_explicit_months_trains_registers_and_publishes_a_summary(
    team_stack: Stack, team_deployed: subprocess.CompletedProcess[str], tmp_path: Path
) -> None:
    flow_run_id = trigger(
        team_stack, "--param", 'spec={"year": 2023, "month": 1, "model": "linear"}'
    )
    flow_run = team_stack.wait_completed(flow_run_id)
    assert flow_run["work_pool_name"] == "taxi-duration"

    run, version = registered_version(team_stack, flow_run_id)
    assert run.data.params["train_month"] == "2023-01"
    assert run.data.params["val_month"] == "2023-02"
    assert run.data.params["model"] == "linear"
    assert run.data.metrics["rmse"] > 0
    # The model went through the server into the stack's artifact store, and comes back.
    assert any((team_stack.directory / "mlflow" / "artifacts").rglob("MLmodel"))
    client = MlflowClient(tracking_uri=team_stack.mlflow, registry_uri=team_stack.mlflow)
    downloaded = mlflow.artifacts.download_artifacts(
        artifact_uri=client.get_model_version_download_uri(MODEL_NAME, version.version),
        dst_path=str(tmp_path),
        tracking_uri=team_stack.mlflow,
    )
    assert (Path(downloaded) / "MLmodel").is_file()

    summary = summary_artifact(team_stack, flow_run_id)
    assert "2023-01" in summary
    assert "2023-02" in summary
    assert run.info.run_id in summary
    assert f"version {version.version}" in summary


def test_a_scheduled_run_picks_the_newest_published_months(
    team_stack: Stack, team_deployed: subprocess.CompletedProcess[str]
) -> None:
    # As the cron schedule would on 3 May 2023: April is not published (generated months
    # are 2023-01..03), so it trains on February and validates on March.
    flow_run_id = trigger(
        team_stack, "--start-at", "2023-05-03 09:00:00 UTC", "--param", 'spec={"model": "linear"}'
    )
    team_stack.wait_completed(flow_run_id)

    run, _ = registered_version(team_stack, flow_run_id)
    assert run.data.params["train_month"] == "2023-02"
    assert run.data.params["val_month"] == "2023-03"
    team_stack.wait_for_log(flow_run_id, "fell back: validating on 2023-04 not published")
    assert "2023-02" in summary_artifact(team_stack, flow_run_id)


def test_a_run_with_a_bad_parameter_fails_at_once_with_one_line_and_downloads_nothing(
    team_stack: Stack, team_deployed: subprocess.CompletedProcess[str], synthetic_data_url: str
) -> None:
    requests = SERVED_REQUESTS[synthetic_data_url]
    before = len(requests)
    flow_run_id = trigger(
        team_stack,
        "--params",
        json.dumps({"spec": {"year": 2023, "month": 1, "min_improvement": -1}}),
    )
    flow_run = team_stack.wait_final(flow_run_id)
    state = flow_run["state"]["type"]

    assert state == "FAILED", team_stack.logs(flow_run_id)
    message = flow_run["state"]["message"]
    assert "min_improvement -1 is out of range: 0 or more (minutes of RMSE)" in message
    assert "\n" not in message.strip()
    assert requests[before:] == []  # rejected before any download or probe
    task_runs = team_stack.call(
        "POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}}
    )
    assert task_runs == []


def _stack_env(directory: Path, prefect_port: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ISOLATED}
    env.update(
        TAXI_DURATION_STACK_DIR=str(directory),
        TAXI_DURATION_PREFECT_PORT=str(prefect_port),
        TAXI_DURATION_MLFLOW_PORT=str(free_port()),
    )
    return env


def test_stack_up_refuses_a_port_in_use_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = _stack_env(tmp_path / "stack", port)
        result = run(env, sys.executable, "-m", "taxi_duration.cli", "stack", "up", cwd=tmp_path)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr
    assert "TAXI_DURATION_PREFECT_PORT" in result.stderr
    assert list((tmp_path / "stack" / "run").glob("*.json")) == []


def test_stack_down_and_status_without_a_stack(tmp_path: Path) -> None:
    env = _stack_env(tmp_path / "stack", free_port())
    stopped = run(env, sys.executable, "-m", "taxi_duration.cli", "stack", "down", cwd=tmp_path)
    assert stopped.returncode == 0
    assert "nothing was running" in stopped.stdout
    status = run(env, str(BIN / "taxi-duration"), "stack", "status", cwd=tmp_path)
    assert status.returncode == 1
    assert "prefect-server  stopped" in status.stdout
