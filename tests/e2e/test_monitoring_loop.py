"""The loop on the team's stack: a degraded month retrains the champion by itself.

A ``monitor/monthly`` run judges fhvhv's champion (trained on 2023-01, validated on 02) on an
April whose trips take 40% longer; its ``taxi-duration.model.degraded`` event makes the
trigger of ``train/monthly`` (prefect.yaml) start a run on March validated on April, which
registers a version, and the stack's degraded automation sends one notification.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from team_stack import Stack, WebhookReceiver, spec
from tlc_samples import make_trips, slower, write_trips

from taxi_duration.months import Month

pytestmark = pytest.mark.slow
APRIL = Month(2023, 4)


def _retrain_runs(stack: Stack) -> list[dict[str, Any]]:
    """The train/monthly runs on fhvhv validated on April: only the trigger starts them."""
    deployment = stack.call("GET", "/deployments/name/train/monthly")
    runs = stack.call(
        "POST", "/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}}
    )
    return [
        run
        for run in runs
        if (run["parameters"].get("spec") or {}).get("color") == "fhvhv"
        and str((run["parameters"]["spec"]).get("val_month")) == "4"
    ]


def test_a_degraded_month_retrains_the_champion_and_notifies_once(
    team_stack: Stack,
    team_deployed: subprocess.CompletedProcess[str],
    synthetic_months: Path,
    webhook_receiver: WebhookReceiver,
) -> None:
    # A month of the stack's data server no other test asks for; removed at the end.
    april = write_trips(synthetic_months, "fhvhv", APRIL, slower(make_trips("fhvhv", APRIL), 1.4))
    try:
        trained = team_stack.trigger(
            "train/monthly", *spec(color="fhvhv", year=2023, month=1, model="linear")
        )
        team_stack.wait_completed(trained)
        hooks_before = len(webhook_receiver.inbox.snapshot())

        monitored = team_stack.trigger("monitor/monthly", *spec(color="fhvhv", year=2023, month=4))
        team_stack.wait_completed(monitored)
        team_stack.wait_for_log(monitored, "is degraded on 2023-04: rmse")

        deadline = time.monotonic() + 120  # the trigger acts within seconds
        while not (retrains := _retrain_runs(team_stack)):
            assert time.monotonic() < deadline, "no train/monthly run after the degraded event"
            time.sleep(2)
        [retrain] = retrains
        # The trigger renders each field as text; the flow's spec reads them as numbers.
        given = {key: str(value) for key, value in retrain["parameters"]["spec"].items()}
        assert given == {
            "color": "fhvhv",
            "year": "2023",
            "month": "3",
            "val_year": "2023",
            "val_month": "4",
        }
        flow_run = team_stack.wait_completed(retrain["id"])

        client = MlflowClient(tracking_uri=team_stack.mlflow, registry_uri=team_stack.mlflow)
        run = client.get_run(flow_run["labels"]["mlflow.run_id"])
        assert run.data.params["train_month"] == "2023-03"
        assert run.data.params["val_month"] == "2023-04"
        [version] = client.search_model_versions(f"run_id = '{run.info.run_id}'")
        assert version.name == "nyc-taxi-duration-fhvhv"

        deadline = time.monotonic() + 60
        while not (hooks := webhook_receiver.inbox.snapshot()[hooks_before:]):
            assert time.monotonic() < deadline, "no notification of the degraded champion"
            time.sleep(1)
        time.sleep(5)  # a second one would come within seconds
        hooks = webhook_receiver.inbox.snapshot()[hooks_before:]
        assert len(hooks) == 1, hooks
        text = hooks[0]["json"]["text"]
        assert "nyc-taxi-duration-fhvhv version 1 degraded on 2023-04" in text
        assert "above the validation rmse" in text
    finally:
        april.unlink()
