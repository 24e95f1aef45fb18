"""predict and promote as a user runs them: one-line errors, JSON, the champion by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli_train import run_cli

pytestmark = pytest.mark.slow


def test_predict_and_promote_round_trip(workspace: Path, synthetic_data_url: str) -> None:
    for model in ("linear", "xgboost"):
        trained = run_cli(
            workspace, synthetic_data_url, "train", "--year", "2023", "--month", "1",
            "--model", model, "--json",
        )  # fmt: skip
        assert trained.returncode == 0, trained.stderr

    scored = run_cli(
        workspace, synthetic_data_url, "predict", "--year", "2023", "--month", "3",
        "--output", "out/predictions.parquet", "--json",
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    result = json.loads(scored.stdout.strip().splitlines()[-1])
    assert result["rows_scored"] == 2000
    assert result["model_version"] in ("1", "2")
    # A relative output goes into the outputs folder (default ./outputs), named in full.
    written = workspace / "outputs" / "out" / "predictions.parquet"
    assert result["output"] == str(written)
    assert written.is_file()
    assert f"wrote {written}" in scored.stdout

    promoted = run_cli(workspace, synthetic_data_url, "promote", "--version", "1", "--json")
    assert promoted.returncode == 0, promoted.stderr
    lines = promoted.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["version"] == "1"
    assert result["model_name"] == "nyc-taxi-duration-green"
    # What it is choosing between: both versions' validation RMSE, as their runs recorded it.
    assert result["rmse"] > 0
    chosen = f"v1 (validation RMSE {result['rmse']:.4f} on 2023-02)"
    assert lines[0].startswith(f"nyc-taxi-duration-green@champion is now {chosen}")
    if result["previous"] is not None:
        replaced = f"v{result['previous']} (validation RMSE {result['previous_rmse']:.4f}"
        assert f"was {replaced}" in lines[0]


@pytest.mark.parametrize(
    ("args", "exit_code", "expected"),
    [
        pytest.param(("promote", "--version", "4"), 2, "version 4 of model", id="no-version"),
        pytest.param(
            ("predict", "--year", "2023", "--month", "3", "--output", "p.parquet"),
            1,
            "@champion is not in the registry",
            id="no-champion",
        ),
        pytest.param(("predict", "--year", "2023", "--month", "3"), 2, "--output", id="no-output"),
        pytest.param(
            ("train", "--year", "2023", "--month", "1", "--min-improvement", "-1"),
            2,
            "min_improvement -1",
            id="negative-improvement",
        ),
    ],
)
def test_registry_errors_are_one_line(
    workspace: Path, synthetic_data_url: str, args: tuple[str, ...], exit_code: int, expected: str
) -> None:
    result = run_cli(workspace, synthetic_data_url, *args)
    assert result.returncode == exit_code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert not (workspace / "p.parquet").exists()
