"""The monitor's judgement on generated months: RMSE against the validation RMSE, and drift."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tlc_samples import write_month

from taxi_duration import models, monitor
from taxi_duration.checks import month_figures
from taxi_duration.errors import InvalidInputError
from taxi_duration.evaluate import rmse
from taxi_duration.features.preprocessor import Preprocessor
from taxi_duration.months import Month
from taxi_duration.prepare import prepare_trips

ROWS = 20_000  # two samples of 2,000 rows differ by chance on 59 zones about as much as 0.1


def _month(tmp_path_factory: pytest.TempPathFactory, month: str) -> pd.DataFrame:
    path = write_month(tmp_path_factory.mktemp("tlc"), "green", Month.parse(month), rows=ROWS)
    return prepare_trips(path, "green").frame


@pytest.fixture(scope="module")
def champion(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[models.TripDurationModel, float, pd.DataFrame]:
    """A linear model trained on January, its validation RMSE on February, and January."""
    train, val = _month(tmp_path_factory, "2023-01"), _month(tmp_path_factory, "2023-02")
    config = models.training_config(model="linear")
    preprocessor = Preprocessor.fit(train, config.feature_set)
    x_train = models.encode_training(preprocessor, train, config)
    fit = models.fit_estimator(config, x_train, train["duration"].to_numpy(), None, None)
    model = models.TripDurationModel(config, preprocessor, fit.estimator)
    return model, rmse(val["duration"].to_numpy(), model.predict(val)), train


@pytest.fixture(scope="module")
def march(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return _month(tmp_path_factory, "2023-03")


def _report(
    champion: tuple[models.TripDurationModel, float, pd.DataFrame],
    month: pd.DataFrame,
    thresholds: monitor.MonitorThresholds | None = None,
) -> monitor.MonitorReport:
    model, validation_rmse, train = champion
    thresholds = thresholds or monitor.MonitorThresholds()
    predictions = model.predict(month)
    reference = monitor.model_inputs(train)
    reference[monitor.PREDICTION] = model.predict(train)
    current = monitor.model_inputs(month)
    current[monitor.PREDICTION] = predictions
    return monitor.assess(
        month="green 2023-03",
        model_version="1",
        durations=month["duration"].to_numpy(),
        predictions=predictions,
        validation_rmse=validation_rmse,
        reference=reference,
        current=current,
        figures=month_figures(len(month), month).as_dict(),
        training_figures=month_figures(len(train), train).as_dict(),
        thresholds=thresholds,
    )


def test_a_month_drawn_like_the_training_month_is_not_degraded(
    champion: tuple[models.TripDurationModel, float, pd.DataFrame], march: pd.DataFrame
) -> None:
    report = _report(champion, march)
    assert not report.degraded, report.reasons
    assert abs(report.degradation) < 0.05
    assert report.drifted_columns() == []
    assert not report.prediction_drift.drifted


def test_durations_40_percent_longer_are_degraded_for_the_rmse(
    champion: tuple[models.TripDurationModel, float, pd.DataFrame], march: pd.DataFrame
) -> None:
    slower = march.copy()
    slower["duration"] = slower["duration"] * 1.4  # the same trips, slower traffic
    report = _report(champion, slower)
    assert report.degraded
    [reason] = report.reasons
    assert reason.startswith(f"rmse {report.rmse:.4f} is ")
    assert "above the validation rmse" in reason
    assert report.drifted_columns() == []  # the inputs did not move: only the outcome did


def test_shuffled_pickup_zones_drift_on_pulocationid_alone(
    champion: tuple[models.TripDurationModel, float, pd.DataFrame], march: pd.DataFrame
) -> None:
    shuffled = march.copy()
    rng = np.random.default_rng(7)  # each trip's pickup anywhere in the city
    zones = rng.integers(1, 264, len(shuffled)).astype(np.float64)
    shuffled["PULocationID"] = pd.Categorical(zones)
    report = _report(champion, shuffled)
    assert report.drifted_columns() == ["PULocationID"]
    drift = {d.column: d for d in report.drift}["PULocationID"]
    assert drift.statistic == "jensen_shannon"
    assert drift.value > 0.3
    # One input of eight drifted: flagged, not degraded by drift alone.
    assert report.drifted_share == pytest.approx(1 / 8)
    assert not any("drifted" in reason for reason in report.reasons)
    assert "drift PULocationID jensen_shannon" in "\n".join(report.lines())


def test_more_than_half_the_inputs_drifting_is_degraded(
    champion: tuple[models.TripDurationModel, float, pd.DataFrame], march: pd.DataFrame
) -> None:
    moved = march.copy()
    rng = np.random.default_rng(8)
    for column in ("PULocationID", "DOLocationID"):
        moved[column] = pd.Categorical(rng.integers(100, 264, len(moved)).astype(np.float64))
    moved["VendorID"] = np.float32(2)
    moved["passenger_count"] = np.float32(3)
    moved["trip_type"] = np.float32(2)
    report = _report(champion, moved, monitor.MonitorThresholds(max_degradation=10))
    assert report.drifted_share > 0.5
    assert [reason.split(" of the inputs")[0] for reason in report.reasons] == [
        f"{report.drifted_share:.0%}"
    ]


def test_the_report_is_one_json_object_and_one_line_per_check(
    champion: tuple[models.TripDurationModel, float, pd.DataFrame], march: pd.DataFrame
) -> None:
    report = _report(champion, march)
    loaded = json.loads(json.dumps(report.to_dict()))
    assert loaded["degraded"] is False
    assert loaded["reasons"] == []
    assert len(loaded["drift"]) == len(monitor.CATEGORICAL_INPUTS + monitor.NUMERICAL_INPUTS)
    lines = report.lines()
    assert len(lines) == 2 + len(report.drift) + 1  # rmse, drifted share, each column
    assert all("\n" not in line for line in lines)
    assert lines[0].endswith(": ok")
    assert set(report.metrics()) >= {"rmse", "mae", "drifted_share", "drift_PULocationID"}


def test_the_statistics_are_zero_on_identical_data_and_a_missing_field_drifts() -> None:
    values = pd.Series([1.0, 2.0, 2.0, 3.0])
    assert monitor.jensen_shannon(values, values) == 0.0
    assert monitor.wasserstein_normed(values.to_numpy(), values.to_numpy()) == 0.0
    emptied = pd.Series([np.nan] * 4)
    assert monitor.jensen_shannon(values, emptied) > 0.5  # all missing: a category of its own
    assert monitor.wasserstein_normed(values.to_numpy(), emptied.to_numpy()) == 1.0
    # Normalized by the reference's spread: a shift of one standard deviation is 1.
    reference = np.random.default_rng(0).normal(0, 2, 10_000)
    assert monitor.wasserstein_normed(reference, reference + 2) == pytest.approx(1, rel=0.02)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_degradation": -0.1}, "max_degradation -0.1 is negative"),
        ({"drift_threshold": 1.5}, "drift_threshold 1.5 is not between 0 and 1"),
        ({"max_drifted_share": -1}, "max_drifted_share -1 is not between 0 and 1"),
        ({"sample_rows": 10}, "sample_rows 10 is under 1000"),
    ],
)
def test_thresholds_out_of_range_are_one_line(fields: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        monitor.MonitorThresholds(**fields)  # type: ignore[arg-type]


def test_a_sample_is_fixed_by_its_seed(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": np.arange(5_000)})
    first = monitor.sample(frame, 1_000, seed=42)
    assert len(first) == 1_000
    assert first.index.equals(monitor.sample(frame, 1_000, seed=42).index)
    assert monitor.sample(frame, 10_000, seed=42) is frame
