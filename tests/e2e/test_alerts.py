"""Alerts as code: a run that fails tells the team, by email and by webhook, once.

The stack (see conftest.py) is started with ``TAXI_DURATION_NOTIFY_WEBHOOK_URL`` pointing at
a local HTTP receiver and ``TAXI_DURATION_NOTIFY_EMAIL_TO`` with an aiosmtpd SMTP sink;
``stack up`` turns them into Prefect notification blocks and automations, and the Prefect
server's automation service sends the messages.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from team_stack import BIN, SMTPSink, Stack, WebhookReceiver, run, spec, stack_command

from taxi_duration import alerts
from taxi_duration.stack.config import kept_settings

pytestmark = pytest.mark.slow

ALERT_WITHIN_SECONDS = 60
# After the first message: time for a duplicate to show, if there were one.
SETTLE_SECONDS = 5


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def new_messages(
    smtp_sink: SMTPSink, webhook_receiver: WebhookReceiver, before: tuple[int, int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return smtp_sink.inbox.snapshot()[before[0] :], webhook_receiver.inbox.snapshot()[before[1] :]


def one_email_and_one_webhook_call(
    smtp_sink: SMTPSink, webhook_receiver: WebhookReceiver, before: tuple[int, int]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Wait for the alert to arrive by both channels, then check that it came once each."""
    arrived = wait_for(
        lambda: all(
            len(messages) >= 1 for messages in new_messages(smtp_sink, webhook_receiver, before)
        ),
        ALERT_WITHIN_SECONDS,
    )
    emails, hooks = new_messages(smtp_sink, webhook_receiver, before)
    assert arrived, f"within {ALERT_WITHIN_SECONDS}s: emails {emails}, webhook calls {hooks}"
    time.sleep(SETTLE_SECONDS)
    emails, hooks = new_messages(smtp_sink, webhook_receiver, before)
    assert len(emails) == 1, emails
    assert len(hooks) == 1, hooks
    return emails[0], hooks[0]


def counts(smtp_sink: SMTPSink, webhook_receiver: WebhookReceiver) -> tuple[int, int]:
    return len(smtp_sink.inbox.snapshot()), len(webhook_receiver.inbox.snapshot())


def test_a_failing_run_alerts_once_by_email_and_webhook_and_a_successful_run_not_at_all(
    team_stack: Stack,
    team_deployed: subprocess.CompletedProcess[str],
    smtp_sink: SMTPSink,
    webhook_receiver: WebhookReceiver,
) -> None:
    before = counts(smtp_sink, webhook_receiver)
    succeeding = team_stack.trigger("train/monthly", *spec(year=2023, month=1, model="linear"))
    succeeded = team_stack.wait_completed(succeeding)
    # June 2023 is not among the generated months: the data server answers 404.
    failing = team_stack.trigger("train/monthly", *spec(year=2023, month=6))
    failed = team_stack.wait_final(failing)
    assert failed["state"]["type"] == "FAILED", failed["state"]

    email, hook = one_email_and_one_webhook_call(smtp_sink, webhook_receiver, before)
    assert email["to"] == ["team@example.com", "oncall@example.com"]
    assert email["subject"] == f"taxi-duration: train/monthly run {failed['name']} Failed"
    assert hook["path"] == "/hooks/taxi"
    assert list(hook["json"]) == ["text"]  # what Slack and Teams webhooks take
    for text in (email["body"], hook["json"]["text"]):
        assert f"Flow run {failed['name']} of deployment train/monthly ended Failed." in text
        assert (
            "Error: Flow run encountered an exception: MonthNotPublishedError: "
            "green 2023-06 is not published" in text
        )
        assert f"Prefect run: {team_stack.ui}/runs/flow-run/{failing}\n" in text
        assert "MLflow run" not in text  # it failed before logging one
        assert succeeded["name"] not in text


def test_status_from_another_folder_lists_the_alerts_and_what_runs_get(
    team_stack: Stack, synthetic_data_url: str, tmp_path: Path
) -> None:
    # No TAXI_DURATION_* at all: the stack is the one `up` recorded (XDG_STATE_HOME).
    env = {key: value for key, value in team_stack.env.items() if "TAXI_DURATION" not in key}
    status = run(env, str(BIN / "taxi-duration"), "stack", "status", cwd=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"stack folder    {team_stack.directory}" in status.stdout
    assert (
        f"{alerts.FAILED_AUTOMATION} (on) -> {alerts.WEBHOOK_BLOCK}, {alerts.EMAIL_BLOCK}"
        in status.stdout
    )
    assert alerts.PROMOTED_AUTOMATION not in status.stdout
    # Every automation `up` made is told as in force, with what it does.
    made = _ours(team_stack)
    assert set(made) == {
        alerts.FAILED_AUTOMATION,
        alerts.DEGRADED_AUTOMATION,
        alerts.HEARTBEAT_AUTOMATION,
    }
    for name in made:
        assert f"{name} (on) -> " in status.stdout, status.stdout
    assert f"{alerts.HEARTBEAT_AUTOMATION} (on) -> mark it Crashed" in status.stdout
    assert "missing" not in status.stdout
    assert f"TAXI_DURATION_DATA_URL={synthetic_data_url}" in status.stdout
    assert f"MLFLOW_TRACKING_URI={team_stack.mlflow}" in status.stdout
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES=3" in status.stdout


def _ours(stack: Stack) -> dict[str, str]:
    return {
        automation["name"]: automation["id"]
        for automation in stack.call("POST", "/automations/filter", {})
        if automation["name"].startswith("taxi-duration: ")
    }


def test_up_again_updates_the_alerts_in_place_and_tells_of_a_new_champion(
    team_stack: Stack,
    team_deployed: subprocess.CompletedProcess[str],
    smtp_sink: SMTPSink,
    webhook_receiver: WebhookReceiver,
) -> None:
    failure_alert = _ours(team_stack)[alerts.FAILED_AUTOMATION]
    with_promotions = {**team_stack.env, "TAXI_DURATION_NOTIFY_ON_PROMOTION": "true"}
    try:
        again = stack_command(with_promotions, "up", cwd=team_stack.root)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "already running" in again.stdout
        ours = _ours(team_stack)
        assert set(ours) == {
            alerts.FAILED_AUTOMATION,
            alerts.DEGRADED_AUTOMATION,
            alerts.PROMOTED_AUTOMATION,
            alerts.HEARTBEAT_AUTOMATION,
        }
        assert ours[alerts.FAILED_AUTOMATION] == failure_alert  # updated, not made again

        # No champion: the next version is promoted, whatever its RMSE. A model no other
        # test on this stack trains: an identical one would not be registered again.
        client = MlflowClient(tracking_uri=team_stack.mlflow, registry_uri=team_stack.mlflow)
        with contextlib.suppress(MlflowException):  # no model or no alias yet
            client.delete_registered_model_alias("nyc-taxi-duration-green", "champion")
        before = counts(smtp_sink, webhook_receiver)
        flow_run_id = team_stack.trigger(
            "train/monthly", *spec(year=2023, month=2, model="linear", features="separate")
        )
        flow_run = team_stack.wait_completed(flow_run_id)
        mlflow_run_id = flow_run["labels"]["mlflow.run_id"]
        email, hook = one_email_and_one_webhook_call(smtp_sink, webhook_receiver, before)
        assert "is the new champion" in email["subject"]
        for text in (email["body"], hook["json"]["text"]):
            assert "is the new champion (was none): first version: no champion yet." in text
            assert f"Flow run {flow_run['name']} of deployment train/monthly." in text
            assert f"Prefect run: {team_stack.ui}/runs/flow-run/{flow_run_id}\n" in text
            assert f"MLflow run: {team_stack.mlflow}/#/runs/{mlflow_run_id}\n" in text
    finally:
        # `up` kept the setting: a later `up` turns it off only by setting it again (empty:
        # back to its default, off).
        without_promotions = {**team_stack.env, "TAXI_DURATION_NOTIFY_ON_PROMOTION": ""}
        restored = stack_command(without_promotions, "up", cwd=team_stack.root)
        assert restored.returncode == 0, restored.stdout + restored.stderr
    assert set(_ours(team_stack)) == {
        alerts.FAILED_AUTOMATION,
        alerts.DEGRADED_AUTOMATION,
        alerts.HEARTBEAT_AUTOMATION,
    }
    assert "TAXI_DURATION_NOTIFY_ON_PROMOTION" not in kept_settings(team_stack.directory)
