"""Every run ends in a final state, however its worker stops.

``stack down`` cancels the pool's in-flight runs through Prefect before stopping the worker;
a run whose process is killed outright stops sending heartbeats (every 30 s, set in the pool's
job template) and Prefect's heartbeat automation marks it Crashed, which is then alerted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import psutil
import pytest
from team_stack import SMTPSink, Stack, spec, stack_command

pytestmark = pytest.mark.slow

CRASHED_WITHIN_SECONDS = 120


def start_long_run(stack: Stack) -> str:
    """A tune run of many trials, once it is Running (and has sent its first heartbeat)."""
    flow_run_id = stack.trigger("tune/manual", *spec(year=2023, month=1, trials=2000))
    deadline = time.monotonic() + 300
    while stack.call("GET", f"/flow_runs/{flow_run_id}")["state"]["type"] != "RUNNING":
        assert time.monotonic() < deadline, stack.logs(flow_run_id)
        time.sleep(1)
    time.sleep(5)
    return flow_run_id


def test_a_run_whose_worker_and_process_are_killed_is_marked_crashed_and_alerted(
    team_stack: Stack, team_deployed: subprocess.CompletedProcess[str], smtp_sink: SMTPSink
) -> None:
    flow_run_id = start_long_run(team_stack)
    emails_before = len(smtp_sink.inbox.snapshot())
    worker = int(json.loads((team_stack.directory / "run" / "worker.json").read_text())["pid"])
    flow_processes = psutil.Process(worker).children(recursive=True)
    assert flow_processes, "the worker has no flow run process"
    os.killpg(worker, signal.SIGKILL)
    for process in flow_processes:  # in a session of their own, not the worker's group
        process.kill()
    killed = time.monotonic()
    try:
        flow_run = team_stack.wait_final(flow_run_id, timeout=CRASHED_WITHIN_SECONDS + 30)
        assert time.monotonic() - killed < CRASHED_WITHIN_SECONDS
        assert flow_run["state"]["type"] == "CRASHED", flow_run["state"]
        assert "no heartbeat" in flow_run["state"]["message"]
        deadline = time.monotonic() + 60
        while not any(
            flow_run["name"] in email["subject"]
            for email in smtp_sink.inbox.snapshot()[emails_before:]
        ):
            assert time.monotonic() < deadline, "no alert for the crashed run"
            time.sleep(1)
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
