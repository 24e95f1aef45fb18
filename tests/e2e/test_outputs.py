"""A deployment run's relative ``predict`` output outlives the worker's temporary run folder.

``stack up`` writes ``TAXI_DURATION_OUTPUT_DIR`` (the stack's ``outputs/``) into the work
pool's job template; ``predict`` writes a relative output there, logs the absolute path and
publishes it, with the rows and the model version, as the run's artifact.
"""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest
from team_stack import Stack, spec

pytestmark = pytest.mark.slow


def test_a_relative_predict_output_survives_the_deployment_run(
    team_stack: Stack, team_deployed: subprocess.CompletedProcess[str]
) -> None:
    trained = team_stack.trigger("train/monthly", *spec(year=2023, month=1, model="linear"))
    team_stack.wait_completed(trained)

    flow_run_id = team_stack.trigger(
        "predict/manual", *spec(year=2023, month=2, output="team/green-2023-02.parquet")
    )
    team_stack.wait_completed(flow_run_id)

    written = team_stack.directory / "outputs" / "team" / "green-2023-02.parquet"
    assert written.is_file(), sorted(str(p) for p in team_stack.directory.rglob("*.parquet"))
    predictions = pd.read_parquet(written)
    assert len(predictions) > 0
    team_stack.wait_for_log(flow_run_id, str(written))
    (artifact,) = team_stack.call(
        "POST",
        "/artifacts/filter",
        {
            "artifacts": {
                "flow_run_id": {"any_": [flow_run_id]},
                "key": {"any_": ["predict-output"]},
            }
        },
    )
    assert str(written) in artifact["data"]
    assert f"{len(predictions):,}" in artifact["data"]
    assert f"version {predictions['model_version'].iloc[0]}" in artifact["data"]
