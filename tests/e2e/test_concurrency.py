"""train/monthly runs one at a time: prefect.yaml gives the deployment a concurrency limit of 1."""

from __future__ import annotations

import subprocess
from datetime import datetime

import pytest
from team_stack import Stack, spec

pytestmark = pytest.mark.slow


def test_a_second_monthly_run_waits_for_the_first(
    team_stack: Stack, team_deployed: subprocess.CompletedProcess[str]
) -> None:
    monthly = team_stack.call("GET", "/deployments/name/train/monthly")
    assert monthly["global_concurrency_limit"]["limit"] == 1

    run_ids = [
        team_stack.trigger("train/monthly", *spec(year=2023, month=month, model="linear"))
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
    # ... because the second waited for the slot.
    states = team_stack.call("GET", f"/flow_run_states/?flow_run_id={second['id']}")
    assert "AwaitingConcurrencySlot" in [state["name"] for state in states], states
