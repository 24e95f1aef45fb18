"""train/monthly runs one at a time: prefect.yaml gives the deployment a concurrency limit of 1."""

from __future__ import annotations

import subprocess
from datetime import datetime

import pytest
from team_stack import Stack

pytestmark = pytest.mark.slow


def test_a_second_monthly_run_waits_for_the_first(
    team_stack: Stack, team_deployed: subprocess.CompletedProcess[str]
) -> None:
    monthly = team_stack.call("GET", "/deployments/name/train/monthly")
    assert monthly["global_concurrency_limit"]["limit"] == 1

    # Created through the API a few milliseconds apart, so that the worker finds both in one
    # poll (a `prefect deployment run` each takes seconds: the first could end in between).
    run_ids = [
        team_stack.call(
            "POST",
            f"/deployments/{monthly['id']}/create_flow_run",
            {"parameters": {"spec": {"year": 2023, "month": month, "model": "linear"}}},
        )["id"]
        for month in (1, 2)
    ]
    runs = sorted(
        (team_stack.wait_completed(run_id) for run_id in run_ids),
        key=lambda flow_run: flow_run["start_time"],
    )
    first, second = runs
    # One after the other, never both at once...
    assert datetime.fromisoformat(second["start_time"]) >= datetime.fromisoformat(
        first["end_time"]
    ), runs
    # ... because the second waited for the slot (unless, on a quiet machine, the worker only
    # found it once the first had ended: then it never had to wait).
    states = team_stack.call("GET", f"/flow_run_states/?flow_run_id={second['id']}")
    names = [state["name"] for state in states]
    submitted = min(
        datetime.fromisoformat(state["timestamp"]) for state in states if state["name"] == "Pending"
    )
    assert "AwaitingConcurrencySlot" in names or submitted >= datetime.fromisoformat(
        first["end_time"]
    ), states
