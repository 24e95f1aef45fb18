"""Where ``predict`` writes: a relative output goes into the outputs folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from taxi_duration.errors import StorageError
from taxi_duration.predict import output_path, write_parquet_atomically
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


@pytest.mark.parametrize("parent", ["/proc/taxi-duration-test", "a-file"])
def test_an_output_folder_that_cannot_be_made_is_one_error_naming_it(
    parent: str, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    path = tmp_path / parent / "predictions" / "p.parquet"  # an absolute parent replaces tmp_path
    with pytest.raises(StorageError, match=r"output folder .* cannot be written.*--output"):
        write_parquet_atomically(pd.DataFrame({"a": [1]}), path)
    assert list(tmp_path.iterdir()) == [tmp_path / "a-file"]
