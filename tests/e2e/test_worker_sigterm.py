"""A worker stopped as a service manager stops it (docs/deploying.md's table, first row).

Its own module, so that it runs on a stack of its own beside tests/e2e/test_final_states.py
(tests/conftest.py): each waits minutes for a run to be marked Crashed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import psutil
import pytest
from team_stack import BIN, REPO_ROOT, SMTPSink, Stack, run, stack_command
from test_final_states import (
    CRASHED_WITHIN_SECONDS,
    RETRIED_SEARCH_SECONDS,
    downloads,
    start_long_run,
    wait_for_alert,
    worker_pid,
)

pytestmark = pytest.mark.slow


def shell_without_settings(stack: Stack) -> dict[str, str]:
    """The stack's environment without any TAXI_DURATION_* setting: a shell after a reboot,
    which finds the stack by the folder `up` recorded (XDG_STATE_HOME)."""
    return {k: v for k, v in stack.env.items() if not k.startswith("TAXI_DURATION_")}


def test_a_run_whose_worker_gets_sigterm_ends_crashed_alerted_and_retried_on_kept_settings(
    team_stack: Stack,
    team_deployed: subprocess.CompletedProcess[str],
    smtp_sink: SMTPSink,
    synthetic_data_url: str,
) -> None:
    """The worker stopped as a service manager stops it, the stack having been started as a
    background job (SIGINT ignored, team_stack.stack_command): the worker stops its run, which
    ends Crashed and alerted; then the stack is started again from a shell without its
    settings and with its months cache emptied, and the retry downloads the months from the
    data address the stack was first started with."""
    flow_run_id = start_long_run(team_stack, timeout=RETRIED_SEARCH_SECONDS)
    emails_before = len(smtp_sink.inbox.snapshot())
    worker = worker_pid(team_stack)
    flow_processes = psutil.Process(worker).children(recursive=True)
    assert flow_processes, "the worker has no flow run process"
    os.kill(worker, signal.SIGTERM)  # the worker alone, as a service manager stops it
    stopped = time.monotonic()
    try:
        flow_run = team_stack.wait_final(flow_run_id, timeout=CRASHED_WITHIN_SECONDS + 30)
        assert flow_run["state"]["type"] == "CRASHED", flow_run["state"]
        print(f"SIGTERM: {flow_run['state']['type']} after {time.monotonic() - stopped:.0f} s")
        assert time.monotonic() - stopped < CRASHED_WITHIN_SECONDS
        wait_for_alert(smtp_sink, flow_run, emails_before)
        # The run's process does not go on (and crash later on a broken pipe).
        _, alive = psutil.wait_procs(flow_processes, timeout=30)
        assert not alive, alive
    finally:
        shutil.rmtree(team_stack.directory / "data", ignore_errors=True)
        restarted = stack_command(shell_without_settings(team_stack), "up", cwd=team_stack.root)
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert f"data from {synthetic_data_url}" in restarted.stdout, restarted.stdout
    downloads_before = len(downloads(synthetic_data_url))
    retried = run(
        shell_without_settings(team_stack),
        str(BIN / "prefect"),
        *("flow-run", "retry", flow_run_id),
        cwd=REPO_ROOT,
    )
    assert retried.returncode == 0, retried.stdout + retried.stderr
    team_stack.wait_completed(flow_run_id)
    assert len(downloads(synthetic_data_url)) == downloads_before + 2  # both months, again
