"""Every run ends in a decided state, however its worker stops (docs/deploying.md's table).

- ``stack down`` cancels the pool's in-flight runs through Prefect before stopping the worker.
- A worker stopped with SIGTERM (however the stack was started) kills its runs' processes;
  they stop sending heartbeats (every 30 s, set in the pool's job template) and Prefect's
  heartbeat automation marks them Crashed, which is alerted (test_worker_sigterm.py).
- A run whose process is killed outright, with its worker, is marked Crashed the same way.
- A worker killed alone with SIGKILL leaves its runs to go on to their end.
``prefect flow-run retry`` then completes a Crashed run with a new worker, from the months
cache, or from the data address the stack was started with when that cache is gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import psutil
import pytest
from data_server import SERVED_REQUESTS
from team_stack import BIN, REPO_ROOT, SMTPSink, Stack, run, spec, stack_command

pytestmark = pytest.mark.slow

CRASHED_WITHIN_SECONDS = 120
# The crashed run's search stops starting trials after this, so its retry ends soon.
RETRIED_SEARCH_SECONDS = 60
MONTH_TASKS = ("ingest", "prepare")


def start_long_run(stack: Stack, **fields: object) -> str:
    """A tune run of many trials, once its months are prepared (ingest and prepare Completed,
    hence cached) and the server has its first heartbeat."""
    flow_run_id = stack.trigger("tune/manual", *spec(year=2023, month=1, trials=2000, **fields))
    deadline = time.monotonic() + 300
    while not (
        stack.call("GET", f"/flow_runs/{flow_run_id}")["state"]["type"] == "RUNNING"
        and all(
            len(states) == 2  # the training and the validation month
            and all(kind == "COMPLETED" for kind, _ in states)
            for states in month_task_states(stack, flow_run_id).values()
        )
    ):
        assert time.monotonic() < deadline, stack.logs(flow_run_id)
        time.sleep(1)
    wait_for_heartbeat(stack, flow_run_id)
    return flow_run_id


def wait_for_heartbeat(stack: Stack, flow_run_id: str, timeout: float = 60) -> None:
    """Until the server has the run's first heartbeat event: from then on a run that stops
    sending them is one the heartbeat automation can mark Crashed."""
    query = {
        "filter": {
            "event": {"name": ["prefect.flow-run.heartbeat"]},
            "resource": {"id": [f"prefect.flow-run.{flow_run_id}"]},
        },
        "limit": 1,
    }
    deadline = time.monotonic() + timeout
    while not stack.call("POST", "/events/filter", query)["events"]:
        assert time.monotonic() < deadline, f"no heartbeat from {flow_run_id} in {timeout} s"
        time.sleep(0.5)


def month_task_states(
    stack: Stack, flow_run_id: str, skip: frozenset[str] = frozenset()
) -> dict[str, list[tuple[str, str]]]:
    """The (type, name) of the states of the run's ingest and prepare task runs, by task,
    except the task runs in ``skip``."""
    return {
        task: [
            (task_run["state"]["type"], task_run["state"]["name"])
            for task_run in month_task_runs(stack, flow_run_id)
            if task_run["name"].startswith(f"{task}-") and task_run["id"] not in skip
        ]
        for task in MONTH_TASKS
    }


def month_task_runs(stack: Stack, flow_run_id: str) -> list[dict[str, Any]]:
    task_runs = stack.call(
        "POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}}
    )
    return [
        task_run
        for task_run in task_runs
        if task_run["state"] and task_run["name"].split("-")[0] in MONTH_TASKS
    ]


def worker_pid(stack: Stack) -> int:
    return int(json.loads((stack.directory / "run" / "worker.json").read_text())["pid"])


def wait_for_alert(smtp_sink: SMTPSink, flow_run: dict[str, Any], emails_before: int) -> None:
    deadline = time.monotonic() + 60
    while not any(
        flow_run["name"] in email["subject"] for email in smtp_sink.inbox.snapshot()[emails_before:]
    ):
        assert time.monotonic() < deadline, "no alert for the crashed run"
        time.sleep(1)


@dataclass(frozen=True)
class KilledRun:
    flow_run_id: str
    flow_run: dict[str, Any]  # once final
    seconds_to_final: float
    emails_before: int


@pytest.fixture(scope="module")
def killed_run(
    team_stack: Stack, team_deployed: subprocess.CompletedProcess[str], smtp_sink: SMTPSink
) -> KilledRun:
    """A tune run whose worker and run process were SIGKILLed, once it is final (or its
    deadline passed), and a new worker (`stack up`)."""
    flow_run_id = start_long_run(team_stack, timeout=RETRIED_SEARCH_SECONDS)
    emails_before = len(smtp_sink.inbox.snapshot())
    worker = worker_pid(team_stack)
    flow_processes = psutil.Process(worker).children(recursive=True)
    assert flow_processes, "the worker has no flow run process"
    os.killpg(worker, signal.SIGKILL)
    for process in flow_processes:  # in a session of their own, not the worker's group
        process.kill()
    killed = time.monotonic()
    try:
        flow_run = team_stack.wait_final(flow_run_id, timeout=CRASHED_WITHIN_SECONDS + 30)
        seconds_to_final = time.monotonic() - killed
    finally:
        restarted = stack_command(team_stack.env, "up", cwd=team_stack.root)  # a new worker
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    return KilledRun(flow_run_id, flow_run, seconds_to_final, emails_before)


def test_a_run_whose_worker_and_process_are_killed_is_marked_crashed_and_alerted(
    killed_run: KilledRun, smtp_sink: SMTPSink
) -> None:
    assert killed_run.seconds_to_final < CRASHED_WITHIN_SECONDS
    assert killed_run.flow_run["state"]["type"] == "CRASHED", killed_run.flow_run["state"]
    assert "no heartbeat" in killed_run.flow_run["state"]["message"]
    wait_for_alert(smtp_sink, killed_run.flow_run, killed_run.emails_before)


def test_prefect_flow_run_retry_completes_a_crashed_run_from_the_cached_months(
    team_stack: Stack, killed_run: KilledRun, synthetic_data_url: str
) -> None:
    assert killed_run.flow_run["state"]["type"] == "CRASHED"
    first_attempt = frozenset(t["id"] for t in month_task_runs(team_stack, killed_run.flow_run_id))
    downloads_before = downloads(synthetic_data_url)
    # The runbook's command (docs/faults.md), with the worker `stack up` restarted.
    retried = run(
        team_stack.env,
        str(BIN / "prefect"),
        *("flow-run", "retry", killed_run.flow_run_id),
        cwd=REPO_ROOT,
    )
    assert retried.returncode == 0, retried.stdout + retried.stderr
    team_stack.wait_completed(killed_run.flow_run_id)
    # Each month was downloaded and prepared by the crashed attempt. The retry downloads
    # none again (the data folder) and prepares none again: both months are read back from
    # the prepared-months cache (cache.py), which the prepare task's log line says.
    retry = month_task_states(team_stack, killed_run.flow_run_id, skip=first_attempt)
    assert [kind for kind, _ in retry["prepare"]] == ["COMPLETED"] * 2, retry
    assert [kind for kind, _ in retry["ingest"]] == ["COMPLETED"] * 2, retry
    assert downloads(synthetic_data_url) == downloads_before
    prepared = [
        task_run["id"]
        for task_run in month_task_runs(team_stack, killed_run.flow_run_id)
        if task_run["name"].startswith("prepare-") and task_run["id"] not in first_attempt
    ]
    deadline = time.monotonic() + 60  # logs reach the API in batches
    while True:
        logs = team_stack.call(
            "POST", "/logs/filter", {"logs": {"task_run_id": {"any_": prepared}}}
        )
        if sum("(cached)" in record["message"] for record in logs) == 2:
            break
        assert time.monotonic() < deadline, logs
        time.sleep(1)


def downloads(data_url: str) -> list[str]:
    return [request for request in SERVED_REQUESTS[data_url] if request.startswith("GET")]


def test_a_run_whose_worker_alone_is_killed_goes_on_to_its_end(
    team_stack: Stack, team_deployed: subprocess.CompletedProcess[str]
) -> None:
    """SIGKILL leaves the worker no chance to stop its runs: each goes on in its own session
    and reports its own final state."""
    flow_run_id = start_long_run(team_stack, timeout=15)
    worker = worker_pid(team_stack)
    flow_processes = psutil.Process(worker).children(recursive=True)
    assert flow_processes, "the worker has no flow run process"
    os.killpg(worker, signal.SIGKILL)  # the worker's group: not its runs' sessions
    try:
        team_stack.wait_completed(flow_run_id)
    finally:
        restarted = stack_command(team_stack.env, "up", cwd=team_stack.root)  # a new worker
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr


def test_stack_down_cancels_the_runs_in_flight(
    team_stack: Stack, team_deployed: subprocess.CompletedProcess[str]
) -> None:
    flow_run_id = start_long_run(team_stack)
    name = team_stack.call("GET", f"/flow_runs/{flow_run_id}")["name"]
    try:
        stopped = stack_command(team_stack.env, "down", cwd=team_stack.root, timeout=180)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert f"cancelled flow runs {name}" in stopped.stdout
    finally:
        started = stack_command(team_stack.env, "up", cwd=team_stack.root)
        assert started.returncode == 0, started.stdout + started.stderr
    state = team_stack.call("GET", f"/flow_runs/{flow_run_id}")["state"]
    assert state["type"] == "CANCELLED", state
