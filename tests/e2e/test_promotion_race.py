"""Two runs promoting at once against an MLflow server take turns (a Prefect global
concurrency limit): the one that goes second compares itself with the champion the first
left, not with the champion both started from.

The registry is the stack's real MLflow server and the lock its real Prefect server. The
versions' predictions are fixed (RMSE 3, 2 and 1 for v1, v2 and v3) so that the test is about
the turns, and v2's decision is written slowly: without turns, both compare with v1 and v2's
late write leaves the worse version champion.
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from team_stack import Stack

from taxi_duration.flows import tasks
from taxi_duration.prepare import PreparedTrips
from taxi_duration.promote import CHAMPION, PromotionDecision
from taxi_duration.settings import Settings
from taxi_duration.tracking import registry

pytestmark = pytest.mark.slow

RMSE_OF_VERSION = {"1": 3.0, "2": 2.0, "3": 1.0}
SLOW_WRITE_SECONDS = 3.0


@pytest.fixture
def on_the_stack(team_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings of a model of its own on the stack's MLflow server; Prefect on its server."""
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("MLFLOW_TRACKING_URI", team_stack.mlflow)
    monkeypatch.setenv("TAXI_DURATION_MODEL_NAME", f"race-{uuid.uuid4().hex[:8]}-{{color}}")
    with temporary_settings(updates={PREFECT_API_URL: team_stack.api}):
        yield Settings()
        # Prefect keeps one events worker a process, bound to the API it was made for: the
        # promotions' events made it for the stack's. Drained and dropped here, or a later
        # test's flows in this process send their events to the stack (its event test saw
        # none on its own server).
        EventsWorker.drain_all(timeout=30)


def _register_three_versions(settings: Settings) -> str:
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    name = settings.registered_model("green")
    client.create_registered_model(name)
    experiment = client.create_experiment(f"{name}-runs")
    for _ in RMSE_OF_VERSION:
        run = client.create_run(experiment)
        client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias(name, CHAMPION, "1")
    return name


def test_two_promotions_at_once_take_turns_and_the_best_is_champion(
    on_the_stack: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = on_the_stack
    name = _register_three_versions(settings)
    truth = np.linspace(5.0, 40.0, 200)
    val = PreparedTrips(pd.DataFrame({"duration": truth}), rows_loaded=len(truth))

    def scores(settings: Settings, version: str, trips: pd.DataFrame, color: str) -> np.ndarray:
        return truth + RMSE_OF_VERSION[version]  # every error the same: RMSE = the offset

    record = registry.record_promotion

    def slow_for_v2(
        settings: Settings, color: str, version: str, decision: PromotionDecision
    ) -> None:
        if version == "2":
            time.sleep(SLOW_WRITE_SECONDS)
        record(settings, color, version, decision)

    monkeypatch.setattr(registry, "score_version", scores)
    monkeypatch.setattr(registry, "record_promotion", slow_for_v2)

    start = threading.Barrier(2)
    decisions: dict[str, PromotionDecision] = {}
    errors: list[BaseException] = []

    def promote(version: str) -> None:
        try:
            start.wait(timeout=60)
            decisions[version] = tasks.promote_task(settings, version, val, "green", 0.0)
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)

    # Each thread in a copy of this context: Prefect's settings (the stack's API) included.
    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(promote, v))
        for v in ("2", "3")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    assert client.get_model_version_by_alias(name, CHAMPION).version == "3"
    # Turns: one compared with v1, the other with the version the first left champion.
    previous = {v: decisions[v].previous_champion for v in decisions}
    assert previous in ({"2": "1", "3": "2"}, {"3": "1", "2": "3"}), decisions
    # Each decision is recorded on its version.
    for version, decision in decisions.items():
        recorded: Any = client.get_model_version(name, version)
        assert recorded.tags["promotion.previous_champion"] == decision.previous_champion
        assert f"{decision.alias}: {decision.reason}" in recorded.description
