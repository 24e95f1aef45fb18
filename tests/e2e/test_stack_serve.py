"""The prediction services of the stack: ``up`` starts one per served color, ``status`` tells
the version each serves, ``down`` stops them (``running_stack`` checks that no process and no
port is left).

On the shared team stack, which serves green (whose champion other tests promote) and yellow
(which no test trains there: it answers 503 from start to end).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from team_stack import BIN, Stack, run, stack_command

pytestmark = pytest.mark.slow

TRIP = {
    "lpep_pickup_datetime": "2023-03-01T08:15:00",
    "PULocationID": 74,
    "DOLocationID": 75,
    "trip_distance": 2.5,
}
# A few polls of the alias (the team stack polls every second) and the load of a version.
SWITCH_SECONDS = 60.0


def _champion(stack: Stack, color: str) -> str | None:
    """The version the color's champion alias names on the stack's MLflow, if any."""
    answer = httpx.get(
        f"{stack.mlflow}/api/2.0/mlflow/registered-models/alias",
        params={"name": f"nyc-taxi-duration-{color}", "alias": "champion"},
        timeout=30,
    )
    return str(answer.json()["model_version"]["version"]) if answer.status_code == 200 else None


def test_up_starts_a_service_per_color_that_answers_503_until_a_champion_exists(
    team_stack: Stack,
) -> None:
    assert set(team_stack.serve_ports) == {"green", "yellow"}
    assert "serve-yellow" in team_stack.up_output
    yellow = team_stack.serve("yellow")
    assert f"{'serve yellow':<15} {yellow}  no champion of nyc-taxi-duration-yellow yet" in (
        team_stack.up_output
    )
    answer = httpx.post(f"{yellow}/invocations", json={"dataframe_records": [TRIP]}, timeout=30)
    assert answer.status_code == 503, answer.text
    message = answer.json()["message"]
    assert message.startswith(
        f"no champion yet: nyc-taxi-duration-yellow@champion at {team_stack.mlflow} names no "
        "version"
    ), message
    assert httpx.get(f"{yellow}/ping", timeout=30).status_code == 503


def test_status_tells_the_version_each_service_serves(team_stack: Stack, tmp_path: Path) -> None:
    champion = _champion(team_stack, "green")
    if champion is None:  # no test before this one promoted a green version: make one
        env = {**team_stack.env, "TAXI_DURATION_DATA_DIR": str(tmp_path / "data")}
        trained = run(
            env,
            str(BIN / "taxi-duration"),
            *("train", "--year", "2023", "--month", "1", "--model", "linear", "--quiet"),
            cwd=tmp_path,
        )
        assert trained.returncode == 0, trained.stdout + trained.stderr
        champion = _champion(team_stack, "green")
    assert champion is not None
    green = team_stack.serve("green")
    deadline = time.monotonic() + SWITCH_SECONDS
    while (served := httpx.get(f"{green}/health", timeout=30).json())["model_version"] != (
        champion
    ):
        assert time.monotonic() < deadline, f"version {champion} not served: {served}"
        time.sleep(0.5)
    answer = httpx.post(f"{green}/invocations", json={"dataframe_records": [TRIP]}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == champion

    status = stack_command(team_stack.env, "status", cwd=team_stack.root, timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    lines = status.stdout.splitlines()
    for service in ("serve-green", "serve-yellow"):
        running = f"{service:<15} running (pid "
        assert any(line.startswith(running) for line in lines), status.stdout
    assert f"{'serve green':<15} {green}  nyc-taxi-duration-green version {champion}" in lines
    yellow = team_stack.serve("yellow")
    assert (
        f"{'serve yellow':<15} {yellow}  no champion of nyc-taxi-duration-yellow yet (answers 503)"
        in lines
    ), status.stdout
