"""predict and promote as a user runs them: one-line errors, JSON, the champion by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from test_cli_train import run_cli

pytestmark = pytest.mark.slow

MODEL = "nyc-taxi-duration-green"


def test_predict_and_promote_round_trip(
    workspace: Path, synthetic_data_url: str, prefect_api_url: str
) -> None:
    for model in ("linear", "xgboost"):
        trained = run_cli(
            workspace, synthetic_data_url, "train", "--year", "2023", "--month", "1",
            "--model", model, "--json", prefect_url=prefect_api_url,
        )  # fmt: skip
        assert trained.returncode == 0, trained.stderr

    store = f"sqlite:///{workspace / 'mlflow' / 'mlflow.db'}"
    registry = MlflowClient(tracking_uri=store, registry_uri=store)
    versions = registry.search_model_versions(f"name='{MODEL}'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    champion = str(registry.get_model_version_by_alias(MODEL, "champion").version)
    other = "1" if champion == "2" else "2"

    scored = run_cli(
        workspace, synthetic_data_url, "predict", "--year", "2023", "--month", "3",
        "--output", "out/predictions.parquet", "--json", prefect_url=prefect_api_url,
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    result = json.loads(scored.stdout.strip().splitlines()[-1])
    assert result["rows_scored"] == 2000
    assert result["model_version"] == champion
    # A relative output goes into the outputs folder (default ./outputs), named in full.
    written = workspace / "outputs" / "out" / "predictions.parquet"
    assert result["output"] == str(written)
    assert written.is_file()
    assert f"wrote {written}" in scored.stdout

    # By hand, the version that is not the champion (a rollback or a roll forward).
    promoted = run_cli(
        workspace, synthetic_data_url, "promote", "--version", other, "--json",
        prefect_url=prefect_api_url,
    )  # fmt: skip
    assert promoted.returncode == 0, promoted.stderr
    lines = promoted.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["version"] == other
    assert result["model_name"] == MODEL
    # What it is choosing between: both versions' validation RMSE, as their runs recorded it.
    assert result["rmse"] == validation_rmse(registry, other)
    assert result["previous"] == champion
    assert result["previous_rmse"] == validation_rmse(registry, champion)
    chosen = f"v{other} (validation RMSE {result['rmse']:.4f} on 2023-02)"
    replaced = f"v{champion} (validation RMSE {result['previous_rmse']:.4f}"
    assert lines[0].startswith(f"{MODEL}@champion is now {chosen}")
    assert f"was {replaced}" in lines[0]
    # The alias itself, read back from the registry.
    assert str(registry.get_model_version_by_alias(MODEL, "champion").version) == other


def validation_rmse(registry: MlflowClient, version: str) -> float:
    run_id = registry.get_model_version(MODEL, version).run_id
    return float(registry.get_run(run_id).data.metrics["rmse"])


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
    workspace: Path,
    synthetic_data_url: str,
    prefect_api_url: str,
    args: tuple[str, ...],
    exit_code: int,
    expected: str,
) -> None:
    result = run_cli(workspace, synthetic_data_url, *args, prefect_url=prefect_api_url)
    assert result.returncode == exit_code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert not (workspace / "p.parquet").exists()
