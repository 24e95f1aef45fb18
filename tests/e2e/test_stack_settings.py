"""The stack's settings reach every flow run, whoever starts the worker, and its UI.

``stack up`` writes the data URL, the data folder, the MLflow server and MLflow's bounded
retries into the work pool's base job template, so a worker restarted by hand from a clean
environment (none of the stack's variables) still runs flows on them. The Prefect UI is
told the API of its own server, on the stack's port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient
from team_stack import BIN, Stack, spec

from taxi_duration.stack.config import DEFAULT_PREFECT_PORT

pytestmark = pytest.mark.slow


def _stop_group(pgid: int, seconds: float = 30) -> None:
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(pgid, signal.SIGKILL)


def test_a_worker_restarted_from_a_clean_environment_runs_on_the_stacks_settings(
    team_stack: Stack, team_deployed: subprocess.CompletedProcess[str], tmp_path: Path
) -> None:
    pid_file = team_stack.directory / "run" / "worker.json"
    _stop_group(int(json.loads(pid_file.read_text())["pid"]))

    # Only where the Prefect server is: no TAXI_DURATION_*, no MLFLOW_*.
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PREFECT_API_URL": team_stack.api,
        "PREFECT_HOME": str(tmp_path / "prefect"),
    }
    command = [
        str(BIN / "prefect"),
        *("worker", "start", "--pool", "taxi-duration", "--type", "process"),
        *("--install-policy", "never"),
    ]
    with (team_stack.directory / "logs" / "worker.log").open("ab") as log:
        worker = subprocess.Popen(
            command,
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    # Recorded as the stack's worker: `stack down` stops it at the end.
    pid_file.write_text(json.dumps({"pid": worker.pid, "program": "prefect", "command": command}))

    # Yellow: no earlier test downloaded it, so it comes from the stack's data server.
    flow_run_id = team_stack.trigger(
        "train/monthly", *spec(color="yellow", year=2023, month=1, model="linear")
    )
    team_stack.wait_completed(flow_run_id)
    team_stack.wait_for_log(
        flow_run_id, str(team_stack.directory / "data" / "yellow_tripdata_2023-01.parquet")
    )
    client = MlflowClient(tracking_uri=team_stack.mlflow)
    experiment = client.get_experiment_by_name("nyc-taxi-duration")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], "params.color = 'yellow'")
    assert len(runs) == 1, "the run did not log to the stack's MLflow server"


def test_the_prefect_ui_connects_to_its_own_server_on_the_stacks_port(team_stack: Stack) -> None:
    # Tests' ports are below the ephemeral range, never Prefect's default: a UI that fell back
    # to it would fail here.
    assert team_stack.prefect_port != DEFAULT_PREFECT_PORT
    # What the UI's page asks first (Prefect 3.9's server.py, create_ui_app), for both UIs.
    response = httpx.get(f"{team_stack.ui}/ui-settings", timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["api_url"] == team_stack.api
    # And that API answers the browser's way: from the page's origin, no credentials.
    assert httpx.get(f"{response.json()['api_url']}/health", timeout=30).status_code == 200
