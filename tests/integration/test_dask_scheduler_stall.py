"""A Dask scheduler slow to import the project loses no task of a backtest.

The scheduler unpickles each graph, importing the modules its tasks name. On a loaded
machine its first import of Prefect and the project took 50 s; with a graph in flight, the
client was cut off by Dask's TCP timeout and the pair failed ("Run is in PENDING state").
Here the stall is made on purpose (tests/slow_scheduler/sitecustomize.py), longer than the
client's TCP timeout, which the test shortens to keep it quick.
"""

from __future__ import annotations

from pathlib import Path

import dask
import pytest
from dask_cluster import running_dask_cluster

from taxi_duration.flows.backtest import backtest_pairs, task_runner
from taxi_duration.specs import BacktestSpec

pytestmark = pytest.mark.slow

TCP_TIMEOUT_SECONDS = 11  # the least Dask accepts
STALL_SECONDS = 25  # the scheduler's first import of the project, in its event loop


def test_a_backtest_survives_a_scheduler_stalled_importing_the_project(
    prefect_api: None,
    data_url: str,
    workspace: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logs = tmp_path_factory.mktemp("stalled-dask")
    with monkeypatch.context() as patch:  # the cluster's processes only
        patch.setenv("PYTHONPATH", str(Path(__file__).parents[1] / "slow_scheduler"))
        patch.setenv("TAXI_DURATION_TEST_IMPORT_STALL", str(STALL_SECONDS))
        cluster = running_dask_cluster(logs)
        address = cluster.__enter__()
    try:
        spec = BacktestSpec.parse(
            start="2023-01", end="2023-02", model="linear", features="pu_do", dask_address=address
        )
        with dask.config.set({"distributed.comm.timeouts.tcp": f"{TCP_TIMEOUT_SECONDS}s"}):
            state = backtest_pairs.with_options(task_runner=task_runner(address=address))(
                spec, return_state=True
            )
        scheduler_log = (logs / "scheduler.log").read_text(errors="replace")
        assert state.is_completed(), state.message
        assert "Event loop was unresponsive in Scheduler" in scheduler_log  # it did stall
    finally:
        cluster.__exit__(None, None, None)
