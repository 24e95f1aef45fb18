"""The monitor's runs: one per month in ``<experiment>-monitor``, its figures at the month's
step so that MLflow charts them month by month."""

from __future__ import annotations

import time
from pathlib import Path

from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from taxi_duration.settings import Settings
from taxi_duration.tracking.errors import translate_errors
from taxi_duration.tracking.store import _EXPERIMENT_KIND_TAG, _MODEL_TRAINING_KIND, _configure


@translate_errors
def log_monitoring(
    settings: Settings,
    run_name: str,
    tags: dict[str, str],
    metrics: dict[str, float],
    step: int,
    artifact: Path | None = None,
) -> str:
    """A monitoring run in ``<experiment>-monitor``: the same metric names every month, each
    at ``step`` (the month as YYYYMM), so that MLflow's charts draw them month by month."""
    client = _configure(settings)
    name = f"{settings.experiment_name}-monitor"
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            experiment_id_ = client.create_experiment(
                name,
                artifact_location=settings.artifact_location,
                tags={_EXPERIMENT_KIND_TAG: _MODEL_TRAINING_KIND},
            )
        except MlflowException:  # created by a run at the same time
            experiment_id_ = client.get_experiment_by_name(name).experiment_id  # type: ignore[union-attr]
    else:
        experiment_id_ = experiment.experiment_id
    run = client.create_run(str(experiment_id_), run_name=run_name, tags=tags)
    now = int(time.time() * 1000)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(key, value, now, step) for key, value in metrics.items()],
    )
    if artifact is not None:
        client.log_artifact(run.info.run_id, str(artifact), artifact_path="charts")
    client.set_terminated(run.info.run_id, "FINISHED")
    return str(run.info.run_id)
