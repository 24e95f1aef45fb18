"""What the commands write by default, in the folder they run in, stays out of git."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from taxi_duration.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def _default(field: str) -> Path:
    default = Settings.model_fields[field].default  # not the environment's value
    assert isinstance(default, Path)
    return default


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_folders_written_by_default_are_ignored_and_the_code_is_not(tmp_path: Path) -> None:
    # The repository's .gitignore in a repository of its own: no checkout needed, and what
    # the developer has in the working tree does not count.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=60)
    shutil.copy(REPO_ROOT / ".gitignore", tmp_path / ".gitignore")
    written = [
        _default("data_dir") / "green_tripdata_2023-01.parquet",
        _default("data_dir") / "prepared" / "green-2023-01.parquet",  # the cache
        _default("output_dir") / "predictions.parquet",  # predict's relative --output
        _default("mlflow_dir") / "mlflow.db",
        _default("mlflow_dir") / "artifacts" / "1" / "model.pkl",
        Path(".stack") / "stack.json",  # the stack's folder (stack.find_directory)
        Path("mlruns") / "0" / "meta.yaml",  # MLflow's own default store
        Path("benchmarks") / "results" / "scale.json",
        Path(".hypothesis") / "examples" / "x",  # the property tests' database
    ]

    def ignored(path: Path) -> bool:
        check = ["git", "check-ignore", "-q", str(path)]
        return subprocess.run(check, cwd=tmp_path, timeout=60, check=False).returncode == 0

    assert [path for path in written if not ignored(path)] == []
    code = [Path("src/taxi_duration/settings.py"), Path("docs/deploying.md"), Path("prefect.yaml")]
    assert [path for path in code if ignored(path)] == []
