"""The monitor flow on generated months: the champion judged on a month it has not seen."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.tracking import MlflowClient
from tlc_samples import make_trips, slower, write_month, write_trips

from taxi_duration.alerts import DEGRADED_EVENT
from taxi_duration.errors import InvalidInputError, RegistryError
from taxi_duration.flows.monitor import monitor
from taxi_duration.flows.train import train
from taxi_duration.months import Month
from taxi_duration.specs import MonitorSpec, TrainSpec

pytestmark = pytest.mark.slow
MARCH = Month(2023, 3)


@pytest.fixture(scope="module")
def slower_march(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Green 2023-01 and 02 as generated, and a March whose trips take 40% longer."""
    directory = tmp_path_factory.mktemp("slower")
    for month in (Month(2023, 1), Month(2023, 2)):
        write_month(directory, "green", month)
    write_trips(directory, "green", MARCH, slower(make_trips("green", MARCH), 1.4))
    return directory


def _degraded_events(since: str) -> list[dict[str, Any]]:
    from prefect.settings import PREFECT_API_URL

    response = httpx.post(
        f"{PREFECT_API_URL.value()}/events/filter",
        json={"filter": {"event": {"name": [DEGRADED_EVENT]}, "occurred": {"since": since}}},
        timeout=30,
    )
    response.raise_for_status()
    return list(response.json()["events"])


def _wait_for_degraded_events(since: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60  # events reach the server in batches
    while len(events := _degraded_events(since)) < count:
        assert time.monotonic() < deadline, events
        time.sleep(1)
    return events


def test_a_month_like_the_training_months_is_recorded_and_not_degraded(
    prefect_api: None, registry: MlflowClient
) -> None:
    with pytest.raises(RegistryError, match="has no champion yet: train one before monitoring"):
        monitor(MonitorSpec.parse(year=2023, month=3))
    trained = train(TrainSpec.parse(year=2023, month=1, model="linear"))
    with pytest.raises(InvalidInputError, match="validated on it \\(2023-01, 2023-02\\)"):
        monitor(MonitorSpec.parse(year=2023, month=2))

    result = monitor(MonitorSpec.parse(year=2023, month=3))
    assert result["degraded"] is False, result["reasons"]
    assert result["model_version"] == trained.model_version
    assert result["validation_rmse"] == pytest.approx(trained.rmse)
    assert abs(result["degradation"]) < 0.1
    assert result["drifted_share"] <= 0.25  # two samples of 2,000 trips: a zone may differ

    run = registry.get_run(result["run_id"])
    experiment = registry.get_experiment(run.info.experiment_id)
    assert experiment.name == "nyc-taxi-duration-monitor"
    assert run.data.tags["month"] == "2023-03"
    assert run.data.tags["degraded"] == "false"
    [rmse] = registry.get_metric_history(result["run_id"], "rmse")
    assert rmse.step == 202303  # the month as the step: MLflow draws it month by month
    assert rmse.value == pytest.approx(result["rmse"])

    # A range: the champion's own months and a month not published are skipped, the chart
    # is logged; a range looks back, so it emits no event.
    ranged = monitor(MonitorSpec.parse(start="2023-01", end="2023-04"))
    assert [(m["month"], m.get("skipped")) for m in ranged["months"]] == [
        ("2023-01", "trained or validated on it"),
        ("2023-02", "trained or validated on it"),
        ("2023-03", None),
        ("2023-04", "not published"),
    ]
    assert ranged["months"][2]["rmse"] == pytest.approx(result["rmse"])
    artifacts = registry.list_artifacts(ranged["chart_run_id"], "charts")
    assert [artifact.path for artifact in artifacts] == ["charts/decay.png"]


def test_durations_40_percent_longer_are_degraded_and_emit_the_event(
    prefect_api: None,
    registry: MlflowClient,
    monkeypatch: pytest.MonkeyPatch,
    http_server: functools.partial[str],
    slower_march: Path,
) -> None:
    monkeypatch.setenv("TAXI_DURATION_DATA_URL", http_server(slower_march))
    since = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 1))
    train(TrainSpec.parse(year=2023, month=1, model="linear"))
    result = monitor(MonitorSpec.parse(year=2023, month=3))
    assert result["degraded"] is True
    [reason] = result["reasons"]
    assert reason.startswith("rmse ")
    assert "above the validation rmse" in reason
    [event] = _wait_for_degraded_events(since, 1)
    resource = event["resource"]
    assert resource["prefect.resource.id"] == "taxi-duration.model.nyc-taxi-duration-green"
    assert resource["taxi-duration.color"] == "green"
    assert event["payload"]["month"] == "2023-03"
    assert event["payload"]["reasons"] == [reason]
