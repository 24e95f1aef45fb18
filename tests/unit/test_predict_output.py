"""Where ``predict`` writes: a relative output goes into the outputs folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from taxi_duration.predict import output_path
from taxi_duration.settings import Settings


def test_a_relative_output_is_taken_in_the_outputs_folder(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    assert output_path("p.parquet", outputs) == outputs / "p.parquet"
    assert output_path("2023/p.parquet", outputs) == outputs / "2023" / "p.parquet"
    assert output_path("../p.parquet", outputs) == tmp_path / "p.parquet"


def test_an_absolute_or_home_output_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert output_path(str(tmp_path / "p.parquet"), Path("outputs")) == tmp_path / "p.parquet"
    assert output_path("~/p.parquet", Path("outputs")) == tmp_path / "home" / "p.parquet"


def test_a_relative_outputs_folder_is_taken_in_the_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TAXI_DURATION_OUTPUT_DIR", raising=False)
    assert output_path("p.parquet", Settings().output_dir) == tmp_path / "outputs" / "p.parquet"
    monkeypatch.setenv("TAXI_DURATION_OUTPUT_DIR", "/srv/predictions")
    assert output_path("p.parquet", Settings().output_dir) == Path("/srv/predictions/p.parquet")
