"""``backtest/manual`` runs its pairs on the Dask cluster its spec names (``dask_address``).

A flow's task runner is fixed when it is decorated: the deployment's flow runs the pairs as a
subflow with the runner its spec asks for. The cluster here is a ``dask scheduler`` and a
``dask worker`` started on loopback by the fixture, used by nothing else.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from team_stack import Stack, spec

pytestmark = pytest.mark.slow


def test_a_backtest_deployment_run_uses_the_dask_cluster_of_its_spec(
    team_stack: Stack, team_deployed: subprocess.CompletedProcess[str], dask_cluster: str
) -> None:
    from distributed import Client

    flow_run_id = team_stack.trigger(
        "backtest/manual",
        *spec(start="2023-01", end="2023-02", model="linear", dask_address=dask_cluster),
    )
    team_stack.wait_completed(flow_run_id)

    (pairs,) = team_stack.call(
        "POST",
        "/flow_runs/filter",
        {"flow_runs": {"parent_flow_run_id": {"any_": [flow_run_id]}}},
    )
    (artifact,) = team_stack.call(
        "POST",
        "/artifacts/filter",
        {
            "artifacts": {
                "flow_run_id": {"any_": [pairs["id"]]},
                "key": {"any_": ["backtest-results"]},
            }
        },
    )
    assert artifact["description"].endswith(f"(dask cluster at {dask_cluster})")

    def tasks_computed(dask_scheduler: Any) -> int:
        """Run on the scheduler (pickled by value): tasks whose result a worker held."""
        return sum(
            prefix.state_counts["memory"] for prefix in dask_scheduler.task_prefixes.values()
        )

    with Client(dask_cluster, timeout=30) as client:
        # Two months ingested and prepared, one pair: five tasks, all computed on this cluster.
        assert client.run_on_scheduler(tasks_computed) >= 5
