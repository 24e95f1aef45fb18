"""An authenticated stack: both servers refuse anonymous requests, a deployment run completes.

The stack binds to loopback here (tests reach only 127.0.0.1) with authentication forced on by
``TAXI_DURATION_STACK_AUTH``, as it is turned on by itself off loopback (refusing to start
off loopback without credentials: tests/unit/test_stack_config.py). The credentials are the
clients' own variables: the test's ``prefect`` commands, the worker and its flow runs use them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ports import free_port
from team_stack import BIN, Stack, deploy, run, running_stack, spec, stack_command

pytestmark = pytest.mark.slow

PREFECT_AUTH_STRING = "team:a-prefect-secret"
MLFLOW_USER, MLFLOW_PASSWORD = "team", "an-mlflow-secret"


@pytest.fixture(scope="module")
def auth_stack(
    tmp_path_factory: pytest.TempPathFactory, synthetic_data_url: str
) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("access"),
        synthetic_data_url,
        TAXI_DURATION_STACK_AUTH="true",
        PREFECT_API_AUTH_STRING=PREFECT_AUTH_STRING,
        MLFLOW_TRACKING_USERNAME=MLFLOW_USER,
        MLFLOW_TRACKING_PASSWORD=MLFLOW_PASSWORD,
        TAXI_DURATION_SERVE_PORT=str(free_port()),  # set, not chosen by `up`
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def auth_deployed(auth_stack: Stack) -> subprocess.CompletedProcess[str]:
    return deploy(auth_stack)  # `prefect deploy` with the auth string from its environment


def _mlflow(stack: Stack, path: str, auth: tuple[str, str] | None) -> httpx.Response:
    return httpx.get(f"{stack.mlflow}/api/2.0/mlflow/{path}", auth=auth, timeout=30)


def test_both_servers_refuse_anonymous_and_wrong_credentials(auth_stack: Stack) -> None:
    pools = f"{auth_stack.api}/work_pools/filter"
    assert httpx.post(pools, json={}, timeout=30).status_code == 401
    assert httpx.post(pools, json={}, auth=("team", "wrong"), timeout=30).status_code == 401
    assert httpx.post(pools, json={}, headers=auth_stack.headers, timeout=30).status_code == 200

    experiments = "experiments/search?max_results=10"
    assert _mlflow(auth_stack, experiments, None).status_code == 401
    assert _mlflow(auth_stack, experiments, (MLFLOW_USER, "wrong-password")).status_code == 401
    assert _mlflow(auth_stack, experiments, (MLFLOW_USER, MLFLOW_PASSWORD)).status_code == 200

    # The health checks stay open (the stack's own and a load balancer's).
    assert httpx.get(f"{auth_stack.api}/health", timeout=30).status_code == 200
    assert httpx.get(f"{auth_stack.mlflow}/health", timeout=30).status_code == 200


def test_an_authenticated_deployment_run_completes(
    auth_stack: Stack, auth_deployed: subprocess.CompletedProcess[str]
) -> None:
    flow_run_id = auth_stack.trigger("train/monthly", *spec(year=2023, month=1, model="linear"))
    auth_stack.wait_completed(flow_run_id)
    # The flow run logged to MLflow with the worker's credentials: the version is there.
    registered = _mlflow(
        auth_stack,
        "registered-models/get?name=nyc-taxi-duration-green",
        (MLFLOW_USER, MLFLOW_PASSWORD),
    )
    assert registered.status_code == 200, registered.text
    assert registered.json()["registered_model"]["latest_versions"][0]["version"] == "1"


def test_the_cli_passes_the_credentials_and_without_them_is_refused_in_one_line(
    auth_stack: Stack, tmp_path: Path
) -> None:
    env = {**auth_stack.env, "TAXI_DURATION_DATA_DIR": str(tmp_path / "data")}
    cli = str(BIN / "taxi-duration")
    # A flow run in the CLI's own process: Prefect's API and MLflow, both with credentials.
    trained = run(
        env, cli, "train", *("--year", "2023", "--month", "1"), "--no-register", cwd=tmp_path
    )
    assert trained.returncode == 0, trained.stdout + trained.stderr

    anonymous = {
        name: value
        for name, value in env.items()
        if name not in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    }
    refused = run(anonymous, cli, "promote", "--version", "1", cwd=tmp_path)
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert f"MLflow tracking server {auth_stack.mlflow} refused the credentials (HTTP 401)" in (
        refused.stderr
    )


def test_stack_status_says_credentials_are_required(auth_stack: Stack) -> None:
    status = stack_command(auth_stack.env, "status", cwd=auth_stack.root, timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "credentials required" in status.stdout
    assert PREFECT_AUTH_STRING not in status.stdout
    assert MLFLOW_PASSWORD not in status.stdout


def test_the_prediction_service_asks_for_mlflows_user_and_password(auth_stack: Stack) -> None:
    served = auth_stack.serve("green")
    assert auth_stack.serve_ports["green"] == int(auth_stack.env["TAXI_DURATION_SERVE_PORT"])
    trips = {"dataframe_records": [{"pickup_datetime": "2023-03-01T08:15:00", "PULocationID": 74,
                                    "DOLocationID": 75, "trip_distance": 2.5}]}  # fmt: skip
    for auth in (None, (MLFLOW_USER, "wrong-password"), ("team", PREFECT_AUTH_STRING)):
        refused = httpx.post(f"{served}/invocations", json=trips, auth=auth, timeout=30)
        assert refused.status_code == 401, refused.text
        assert refused.headers["WWW-Authenticate"] == 'Basic realm="taxi-duration"'
        assert "credentials required" in refused.json()["message"]
    # With them: a prediction once a version is champion, 503 before.
    admitted = httpx.post(
        f"{served}/invocations", json=trips, auth=(MLFLOW_USER, MLFLOW_PASSWORD), timeout=30
    )
    assert admitted.status_code in (200, 503), admitted.text
    # Its health checks stay open, as the servers' do (the stack's own and a load balancer's),
    # and it read the registry with the credentials: the champion, or none, not an error.
    health = httpx.get(f"{served}/health", timeout=30).json()
    assert health["last_error"] is None, health
