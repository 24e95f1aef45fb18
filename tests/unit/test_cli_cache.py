"""``taxi-duration cache ls|clear``: the prepared months under the data folder."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest
from tlc_samples import write_month

from taxi_duration import cli
from taxi_duration.cache import PreparedCache, prepare_cached
from taxi_duration.months import Month
from taxi_duration.settings import Settings


@pytest.fixture
def cached_month(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A prepared month cached where the settings point (TAXI_DURATION_DATA_DIR)."""
    monkeypatch.setenv("TAXI_DURATION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(cli, "_configure_runtime", lambda verbose: None)  # no flow to log
    source = write_month(tmp_path / "data", "green", Month(2023, 1), rows=300)
    prepare_cached(source, "green", PreparedCache.of(Settings()))
    return PreparedCache.of(Settings()).entry_path(source, "green")


def _json(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    result: dict[str, object] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return result


def test_ls_lists_each_cached_month_with_its_size(
    cached_month: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Last used: when the entry was last written or read (its modification time).
    used = datetime(2024, 5, 6, 7, 8, 9).timestamp()
    os.utime(cached_month, (used, used))
    assert cli.main(["cache", "ls"]) == 0
    out = capsys.readouterr().out
    assert "Cached 1 prepared month, " in out
    assert "green_tripdata_2023-01.green" in out
    assert cli.main(["cache", "ls", "--json"]) == 0
    listed = _json(capsys)
    assert listed["entries"] == [
        {
            "file": cached_month.name,
            "source": "green_tripdata_2023-01.green",
            "size": cached_month.stat().st_size,
            "last_used": "2024-05-06 07:08:09",
        }
    ]
    assert listed["max_bytes"] == 5 * 10**9  # the documented default bound
    assert cached_month.exists()


def test_clear_removes_the_cached_months(
    cached_month: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    size = cached_month.stat().st_size
    assert cli.main(["cache", "clear", "--json"]) == 0
    cleared = _json(capsys)
    assert cleared["total_bytes"] == size
    assert not cached_month.exists()
    assert cli.main(["cache", "ls", "--json"]) == 0
    assert _json(capsys)["entries"] == []


def test_an_unknown_action_is_an_argument_error(
    cached_month: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["cache", "purge"])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "'purge'" in error
    assert "'ls', 'clear'" in error
    assert cached_month.exists()
