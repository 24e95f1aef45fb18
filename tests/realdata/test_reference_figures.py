"""The course's figures on the real TLC files, reached through the project's own download.

The files in ../shared/data/tlc are served from 127.0.0.1 and fetched by ``ingest``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from taxi_duration.flows.train import train
from taxi_duration.specs import TrainSpec

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


@pytest.fixture
def real_month_url(workspace: Path, real_data_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TAXI_DURATION_DATA_URL", real_data_url)
    return real_data_url


def test_reference_preset_reproduces_the_course_rmse(
    prefect_api: None, real_month_url: str
) -> None:
    summary = train(TrainSpec.parse(year=2023, month=1, preset="reference"))
    assert summary.rows_loaded == 68_211
    assert summary.rows_kept == 65_946
    assert summary.val_rows == 62_574
    assert summary.rmse == pytest.approx(5.19, rel=0.01)


def test_linear_on_pu_do_reproduces_the_course_rmse(prefect_api: None, real_month_url: str) -> None:
    summary = train(TrainSpec.parse(year=2021, month=1, model="linear", features="pu_do"))
    assert summary.rows_kept == 73_908
    assert summary.val_rows == 61_921
    assert summary.rmse == pytest.approx(7.7587, abs=0.0005)
