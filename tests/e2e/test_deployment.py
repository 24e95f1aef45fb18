"""The deployments as a team runs them: the real servers, a worker, ``prefect deploy``.

``taxi-duration stack up`` starts a Prefect server, an MLflow server and a process worker on
free loopback ports, with all their state in a temporary folder; ``prefect deploy --all``
deploys from the repository's prefect.yaml; runs are triggered with ``prefect deployment
run`` and train on generated months served over loopback HTTP. The stack is stopped at the
end, and any process group it left is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow.artifacts
import pytest
from data_server import SERVED_REQUESTS
from mlflow.tracking import MlflowClient
from ports import free_port

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RUN_TIMEOUT_SECONDS = 600
MODEL_NAME = "nyc-taxi-duration-green"
# What a test must not inherit from the developer's shell.
_ISOLATED = (
    "MLFLOW_TRACKING_URI",
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_PROFILE",
    "TAXI_DURATION_DATA_URL",
    "TAXI_DURATION_DATA_DIR",
    "TAXI_DURATION_OUTPUT_DIR",
    "TAXI_DURATION_MLFLOW_DIR",
    "TAXI_DURATION_MODEL_NAME",
    "TAXI_DURATION_EXPERIMENT_NAME",
)


@dataclass
class Stack:
    directory: Path
    env: dict[str, str]
    api: str  # the Prefect API, http://127.0.0.1:<port>/api
    mlflow: str  # the MLflow server, http://127.0.0.1:<port>

    def worker_log(self) -> str:
        path = self.directory / "logs" / "worker.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else "(no worker log)"


def run(
    stack_env: dict[str, str], *args: str, cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, env=stack_env, capture_output=True, text=True, timeout=timeout
    )


def _pid_groups(directory: Path) -> list[int]:
    groups = []
    for path in (directory / "run").glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            groups.append(int(json.loads(path.read_text())["pid"]))
    return groups


def _kill_groups(groups: list[int]) -> None:
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, synthetic_data_url: str) -> Iterator[Stack]:
    """The three services on free loopback ports, stopped (process groups killed) at the end."""
    root = tmp_path_factory.mktemp("deployment")
    directory = root / "stack"
    prefect_port, mlflow_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if key not in _ISOLATED}
    env.update(
        TAXI_DURATION_STACK_DIR=str(directory),
        TAXI_DURATION_PREFECT_PORT=str(prefect_port),
        TAXI_DURATION_MLFLOW_PORT=str(mlflow_port),
        TAXI_DURATION_STACK_TIMEOUT="300",
        TAXI_DURATION_DATA_URL=synthetic_data_url,
        TAXI_DURATION_DATA_DIR=str(root / "data"),
        PREFECT_HOME=str(root / "prefect-client"),  # the CLI's; the stack has its own
        XDG_STATE_HOME=str(root / "state"),  # where stack up records its folder
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_CLI_PROMPT="false",
    )
    stack = Stack(
        directory=directory,
        env=env,
        api=f"http://127.0.0.1:{prefect_port}/api",
        mlflow=f"http://127.0.0.1:{mlflow_port}",
    )
    groups: list[int] = []
    try:
        started = run(
            env, sys.executable, "-m", "taxi_duration.cli", "stack", "up", cwd=root, timeout=480
        )
        groups = _pid_groups(directory)
        assert started.returncode == 0, started.stdout + started.stderr
        assert stack.api in started.stdout
        assert stack.mlflow in started.stdout
        env.update(PREFECT_API_URL=stack.api, MLFLOW_TRACKING_URI=stack.mlflow)
        yield stack
    finally:
        groups = groups or _pid_groups(directory)
        stopped = run(env, sys.executable, "-m", "taxi_duration.cli", "stack", "down", cwd=root)
        _kill_groups(groups)  # whatever `down` could not stop
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


@pytest.fixture(scope="module")
def deployed(stack: Stack) -> subprocess.CompletedProcess[str]:
    """``prefect deploy --all`` from the repository root, leaving the repository as it was."""
    prefect_yaml = REPO_ROOT / "prefect.yaml"
    before = prefect_yaml.read_bytes()
    had_dot_prefect = (REPO_ROOT / ".prefect").exists()
    result = run(stack.env, str(BIN / "prefect"), "--no-prompt", "deploy", "--all", cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert prefect_yaml.read_bytes() == before, "prefect deploy changed prefect.yaml"
    assert (REPO_ROOT / ".prefect").exists() == had_dot_prefect, "prefect deploy wrote .prefect/"
    return result


def api(stack: Stack, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    response = httpx.request(method, f"{stack.api}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def trigger(stack: Stack, *args: str) -> str:
    """``prefect deployment run 'train/monthly' ARGS``; the flow run's id."""
    result = run(
        stack.env, str(BIN / "prefect"), "deployment", "run", "train/monthly", *args, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"UUID: ([0-9a-f-]{36})", result.stdout)
    assert match, result.stdout
    return match.group(1)


def logs(stack: Stack, flow_run_id: str) -> str:
    records = api(
        stack,
        "POST",
        "/logs/filter",
        {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200},
    )
    return "\n".join(f"{record['level']:>2} {record['message']}" for record in records)


def wait_for_end(stack: Stack, flow_run_id: str) -> tuple[str, dict[str, Any]]:
    """Poll the flow run until it is final; its state type (or why not) and the run."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while True:
        flow_run = api(stack, "GET", f"/flow_runs/{flow_run_id}")
        state = flow_run["state"]["type"]
        if state in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return state, dict(flow_run)
        if time.monotonic() > deadline:
            return f"still {state} after {RUN_TIMEOUT_SECONDS}s", dict(flow_run)
        time.sleep(2)


def wait_for_completion(stack: Stack, flow_run_id: str) -> dict[str, Any]:
    """Wait for the flow run's end; fail with its logs and the worker's unless Completed."""
    state, flow_run = wait_for_end(stack, flow_run_id)
    assert state == "COMPLETED", (
        f"flow run {flow_run_id}: {state}\n--- flow run logs\n{logs(stack, flow_run_id)}"
        f"\n--- worker log\n{stack.worker_log()}"
    )
    return flow_run


def summary_artifact(stack: Stack, flow_run_id: str) -> str:
    artifacts = api(
        stack,
        "POST",
        "/artifacts/filter",
        {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}, "key": {"any_": ["train-summary"]}}},
    )
    assert len(artifacts) == 1, artifacts
    assert artifacts[0]["type"] == "markdown"
    return str(artifacts[0]["data"])


def registered_version(stack: Stack, train_month: str) -> tuple[Any, Any]:
    """The MLflow run that trained on ``train_month`` and the version it registered."""
    client = MlflowClient(tracking_uri=stack.mlflow, registry_uri=stack.mlflow)
    experiment = client.get_experiment_by_name("nyc-taxi-duration")
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"params.train_month = '{train_month}'"
    )
    assert len(runs) == 1, [r.data.params for r in runs]
    versions = client.search_model_versions(f"run_id = '{runs[0].info.run_id}'")
    assert len(versions) == 1
    assert versions[0].name == MODEL_NAME
    return runs[0], versions[0]


def test_deploy_creates_the_scheduled_and_manual_deployments(
    stack: Stack, deployed: subprocess.CompletedProcess[str]
) -> None:
    monthly = api(stack, "GET", "/deployments/name/train/monthly")
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
    monitor = api(stack, "GET", "/deployments/name/monitor/monthly")
    assert monitor["entrypoint"] == "taxi_duration.flows.monitor.monitor"
    [monitor_schedule] = monitor["schedules"]
    assert monitor_schedule["schedule"]["cron"] == "0 9 2 * *"
    automations = api(stack, "POST", "/automations/filter", {})
    [retrain] = [a for a in automations if a["name"].startswith("train/monthly: retrain")]
    assert retrain["trigger"]["expect"] == ["taxi-duration.model.degraded"]
    [action] = retrain["actions"]
    assert action["type"] == "run-deployment"
    assert action["deployment_id"] == monthly["id"]

    pool = api(stack, "GET", "/work_pools/taxi-duration")
    assert pool["type"] == "process"

    for flow_name, entrypoint in [
        ("tune", "taxi_duration.flows.tune.tune"),
        ("predict", "taxi_duration.flows.predict.predict"),
        ("backtest", "taxi_duration.flows.backtest.backtest"),
    ]:
        manual = api(stack, "GET", f"/deployments/name/{flow_name}/manual")
        assert manual["schedules"] == []
        assert manual["entrypoint"] == entrypoint
        assert manual["work_pool_name"] == "taxi-duration"


def test_a_run_with_explicit_months_trains_registers_and_publishes_a_summary(
    stack: Stack, deployed: subprocess.CompletedProcess[str], tmp_path: Path
) -> None:
    flow_run_id = trigger(stack, "--param", 'spec={"year": 2023, "month": 1, "model": "linear"}')
    flow_run = wait_for_completion(stack, flow_run_id)
    assert flow_run["work_pool_name"] == "taxi-duration"

    run, version = registered_version(stack, "2023-01")
    assert run.data.params["val_month"] == "2023-02"
    assert run.data.params["model"] == "linear"
    assert run.data.metrics["rmse"] > 0
    # The model went through the server into the stack's artifact store, and comes back.
    assert any((stack.directory / "mlflow" / "artifacts").rglob("MLmodel"))
    client = MlflowClient(tracking_uri=stack.mlflow, registry_uri=stack.mlflow)
    downloaded = mlflow.artifacts.download_artifacts(
        artifact_uri=client.get_model_version_download_uri(MODEL_NAME, version.version),
        dst_path=str(tmp_path),
        tracking_uri=stack.mlflow,
    )
    assert (Path(downloaded) / "MLmodel").is_file()

    summary = summary_artifact(stack, flow_run_id)
    assert "2023-01" in summary
    assert "2023-02" in summary
    assert run.info.run_id in summary
    assert f"version {version.version}" in summary


def test_a_scheduled_run_picks_the_newest_published_months(
    stack: Stack, deployed: subprocess.CompletedProcess[str]
) -> None:
    # As the cron schedule would on 3 May 2023: April is not published (generated months
    # are 2023-01..03), so it trains on February and validates on March.
    flow_run_id = trigger(
        stack, "--start-at", "2023-05-03 09:00:00 UTC", "--param", 'spec={"model": "linear"}'
    )
    wait_for_completion(stack, flow_run_id)

    run, _ = registered_version(stack, "2023-02")
    assert run.data.params["val_month"] == "2023-03"
    assert "fell back: validating on 2023-04 not published" in logs(stack, flow_run_id)
    assert "2023-02" in summary_artifact(stack, flow_run_id)


def test_a_run_with_a_bad_parameter_fails_at_once_with_one_line_and_downloads_nothing(
    stack: Stack, deployed: subprocess.CompletedProcess[str], synthetic_data_url: str
) -> None:
    requests = SERVED_REQUESTS[synthetic_data_url]
    before = len(requests)
    flow_run_id = trigger(
        stack, "--params", json.dumps({"spec": {"year": 2023, "month": 1, "min_improvement": -1}})
    )
    state, flow_run = wait_for_end(stack, flow_run_id)

    assert state == "FAILED", logs(stack, flow_run_id)
    message = flow_run["state"]["message"]
    assert "min_improvement -1 is out of range: 0 or more (minutes of RMSE)" in message
    assert "\n" not in message.strip()
    assert requests[before:] == []  # rejected before any download or probe
    task_runs = api(
        stack, "POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}}
    )
    assert task_runs == []


def _stack_env(directory: Path, prefect_port: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _ISOLATED}
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
