"""The ``taxi-duration`` command as a user runs it: a real process, embedded defaults (the
first test as on a fresh machine, the others against the session's Prefect server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_output import non_progress_lines, progress_match
from mlflow.tracking import MlflowClient

from taxi_duration.environment import RUN_ENVIRONMENT_DEFAULTS
from taxi_duration.flows.train import STEPS

pytestmark = pytest.mark.slow

JSON_KEYS = {
    "rows_loaded",
    "rows_kept",
    "val_rows",
    "n_features",
    "rmse",
    "rmse_train",
    "intercept",
    "run_id",
    "model_name",
    "model_version",
    "model_uri",
    "model_size_bytes",
    "timings",
}


def run_cli(
    workspace: Path, data_url: str, *args: str, prefect_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The command in a fresh process. Without ``prefect_url`` it runs as on a fresh machine:
    its own temporary Prefect server, in an empty Prefect home (about 13 s of CPU more per
    command than against a running server, which tests not about that path share)."""
    env = {
        **{k: v for k, v in os.environ.items() if k not in RUN_ENVIRONMENT_DEFAULTS},
        "TAXI_DURATION_DATA_URL": data_url,
        "PREFECT_HOME": str(workspace / "prefect-home"),
    }
    if prefect_url is not None:
        env["PREFECT_API_URL"] = prefect_url
    return subprocess.run(
        [sys.executable, "-m", "taxi_duration.cli", *args],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


# A step's progress line: "train linear ..." as it starts, "train linear 0.3 s" as it ends.


def progress(stderr: str) -> list[str]:
    """The progress lines on stderr as "<step> started" or "<step> ended", in order."""
    found = []
    for line in stderr.splitlines():
        match = progress_match(line)
        if match:
            ended = "failed" if match["failed"] else "ended"
            found.append(f"{match['step']} {'started' if match['start'] else ended}")
    return found


def leftovers(workspace: Path) -> list[str]:
    """What a failed run left in the data cache and the MLflow store."""
    found = [str(p.relative_to(workspace)) for p in (workspace / "data").glob("**/*")]
    database = workspace / "mlflow" / "mlflow.db"
    if database.exists():
        uri = f"sqlite:///{database}"
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        found += [f"model version {v.version}" for v in client.search_model_versions()]
    return found


def test_train_prints_a_summary_and_one_json_object_last(
    workspace: Path, synthetic_data_url: str
) -> None:
    result = run_cli(
        workspace,
        synthetic_data_url,
        *("train", "--year", "2023", "--month", "1", "--model", "linear", "--json"),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert "rows kept" in result.stdout
    payload = json.loads(lines[-1])
    assert payload.keys() >= JSON_KEYS
    assert set(payload["timings"]) == set(STEPS)
    assert payload["model_version"] == "1"
    assert payload["val_month"] == "2023-02"
    assert payload["intercept"] is not None
    assert payload["model_size_bytes"] > 0
    # On stderr: a line as each step starts and one as it ends, and nothing else.
    expected = [f"{step} {event}" for step in STEPS for event in ("started", "ended")]
    assert progress(result.stderr) == expected
    assert len(result.stderr.splitlines()) == len(expected), result.stderr


def test_no_validation_trains_on_one_month(
    workspace: Path, synthetic_data_url: str, prefect_api_url: str
) -> None:
    result = run_cli(
        workspace,
        synthetic_data_url,
        *("train", "--year", "2023", "--month", "3", "--no-validation", "--json", "--quiet"),
        prefect_url=prefect_api_url,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # --quiet: no progress lines
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["val_month"] is None
    assert payload["rmse"] is None
    assert payload["rmse_train"] > 0
    # Only the training month was fetched (prepared/ holds the prepared-months cache).
    assert sorted(p.name for p in (workspace / "data").glob("*.parquet")) == [
        "green_tripdata_2023-03.parquet"
    ]


def test_local_files_replace_the_download(
    workspace: Path, synthetic_months: Path, prefect_api_url: str
) -> None:
    result = run_cli(
        workspace,
        "http://127.0.0.1:9/unused",
        *("train", "--color", "yellow", "--year", "2023", "--month", "1"),
        *("--train-path", str(synthetic_months / "yellow_tripdata_2023-01.parquet")),
        *("--val-path", str(synthetic_months / "yellow_tripdata_2023-02.parquet")),
        *("--model", "linear", "--features", "separate", "--json", "--verbose"),
        prefect_url=prefect_api_url,
    )
    assert result.returncode == 0, result.stderr
    # -v: Prefect's own logs, and each progress line once (through Prefect's console handler).
    assert "Finished in state Completed" in result.stderr
    assert progress(result.stderr).count("train ended") == 1
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["color"] == "yellow"
    assert not list((workspace / "data").glob("*_tripdata_*.parquet"))  # nothing downloaded


@pytest.mark.parametrize(
    ("args", "exit_code", "expected"),
    [
        pytest.param(("--year", "2023", "--month", "5"), 1, "2023-05 is not published", id="404"),
        pytest.param(("--year", "2023", "--month", "13"), 2, "month 13", id="month-13"),
        pytest.param(("--year", "2012", "--month", "5"), 2, "2012-05", id="before-tlc"),
        pytest.param(
            ("--color", "blue", "--year", "2023", "--month", "1"), 2, "'blue'", id="color"
        ),
        pytest.param(
            ("--year", "2023", "--month", "1", "--train-path", "missing.parquet"),
            2,
            "missing.parquet does not exist",
            id="missing-file",
        ),
    ],
)
def test_bad_input_is_one_line_with_nothing_left_behind(
    workspace: Path,
    synthetic_data_url: str,
    prefect_api_url: str,
    args: tuple[str, ...],
    exit_code: int,
    expected: str,
) -> None:
    result = run_cli(workspace, synthetic_data_url, "train", *args, prefect_url=prefect_api_url)
    assert result.returncode == exit_code
    assert result.stdout == ""
    # One error line; a month found missing only once the run started follows its progress.
    error_lines = non_progress_lines(result.stderr)
    assert len(error_lines) == 1, result.stderr
    assert expected in error_lines[0]
    assert "Traceback" not in result.stderr
    assert leftovers(workspace) == []
