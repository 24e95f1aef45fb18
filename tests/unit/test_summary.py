"""TrainSummary: the JSON dict and the markdown report of a run."""

from __future__ import annotations

import dataclasses
import json

from taxi_duration.summary import TrainSummary


def _summary(**changes: object) -> TrainSummary:
    summary = TrainSummary(
        color="green",
        train_month="2023-01",
        val_month="2023-02",
        model="xgboost",
        features="default",
        preset=None,
        rows_loaded=68_211,
        rows_kept=65_946,
        val_rows_loaded=64_809,
        val_rows=62_574,
        n_features=5,
        rmse=5.1234567,
        mae=3.2,
        rmse_train=4.56789,
        intercept=None,
        best_iteration=42,
        run_id="abc123",
        model_name="nyc-taxi-duration",
        model_version="3",
        model_uri="models:/nyc-taxi-duration/3",
        model_size_bytes=123_456,
        tracking_uri="sqlite:///mlflow/mlflow.db",
        timings={"ingest": 1.234, "train": 5.0},
    )
    return dataclasses.replace(summary, **changes)  # type: ignore[arg-type]


def test_to_dict_is_json_serializable() -> None:
    data = _summary().to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["val_month"] == "2023-02"
    assert data["timings"] == {"ingest": 1.234, "train": 5.0}
    assert set(data) == {f.name for f in dataclasses.fields(TrainSummary)}


def test_markdown_with_validation() -> None:
    text = _summary().markdown()
    assert text.startswith("# Trip-duration training\n")
    assert "| Training month | 2023-01: 68,211 rows, 65,946 kept |" in text
    assert "| Validation month | 2023-02 (62,574 trips) |" in text
    assert "| Validation RMSE (min) | 5.1235 |" in text
    assert "| Training RMSE (min) | 4.5679 |" in text
    assert "| Model | xgboost on `default` features (5) |" in text
    assert "`nyc-taxi-duration` version 3" in text
    assert "Steps: ingest 1.2s · train 5.0s" in text


def test_markdown_names_a_window_by_its_months() -> None:
    text = _summary(window=3, train_month="2023-03").markdown()
    assert "| Training month | 3 months ending 2023-03: 68,211 rows, 65,946 kept |" in text


def test_markdown_without_validation() -> None:
    text = _summary(val_month=None, val_rows=None, val_rows_loaded=None, rmse=None).markdown()
    assert "| Validation month | none |" in text
    assert "n/a (no validation month)" in text
