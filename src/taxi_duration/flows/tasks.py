"""Prefect tasks, one per step, thin wrappers around the step functions.

ingest and prepare are cached across runs: their key is their inputs (with the size and
modification time of any data file) and the source of the step's module, so a re-run of an
unchanged month reuses them and a change to the step's code does not. A month whose file
is not on disk yet has no key: its first download is never taken from the cache.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from prefect import get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.context import TaskRunContext
from prefect.events import emit_event
from prefect.runtime import flow_run as current_flow_run
from prefect.tasks import Task, exponential_backoff

from taxi_duration import __version__, evaluate, ingest, models, prepare, tracking
from taxi_duration.alerts import PROMOTED_EVENT
from taxi_duration.errors import InvalidInputError, MonthNotPublishedError
from taxi_duration.features import Preprocessor
from taxi_duration.months import Month
from taxi_duration.promote import PromotionDecision, decide_promotion
from taxi_duration.settings import Settings


def _module_source_hash(module: ModuleType) -> str:
    return hashlib.sha256(inspect.getsource(module).encode()).hexdigest()


def _file_state(path: Path) -> list[Any] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def _cache_key(
    context: TaskRunContext, step: ModuleType, parameters: dict[str, Any], files: list[Path]
) -> str | None:
    states = [_file_state(path) for path in files]
    if any(state is None for state in states):
        return None  # a missing file must be (re)made, never taken from the cache
    payload = {
        # The task's own source too: a wrapper that changes what it returns must not be
        # handed a result cached by its older self.
        "task": context.task.name,
        "task_source": hashlib.sha256(inspect.getsource(context.task.fn).encode()).hexdigest(),
        "step": step.__name__,
        "source": _module_source_hash(step),
        "version": __version__,
        "parameters": {key: str(value) for key, value in sorted(parameters.items())},
        "files": states,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _ingest_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    month = Month.parse(parameters["month"])
    target = Path(parameters["cache_dir"]) / ingest.tlc_file_name(parameters["color"], month)
    return _cache_key(context, ingest, parameters, [target])


def _prepare_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    return _cache_key(context, prepare, parameters, [Path(parameters["path"])])


def _retry_unless_final(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry downloads, but not a month that is not published or a bad parameter."""
    try:
        state.result()
    except (MonthNotPublishedError, InvalidInputError):
        return False
    except Exception:
        return True
    return False


@task(
    name="ingest",
    cache_key_fn=_ingest_cache_key,
    persist_result=True,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_unless_final,
)
def ingest_task(color: str, month: str, base_url: str, cache_dir: str, timeout: float) -> Path:
    path = ingest.download_month(
        color,
        Month.parse(month),
        base_url=base_url,
        cache_dir=Path(cache_dir),
        timeout_seconds=timeout,
    )
    get_run_logger().info("%s %s: %s (%d bytes)", color, month, path, path.stat().st_size)
    return path


def ingest_with_settings(settings: Settings) -> Task[..., Path]:
    """The ingest task with the retries and backoff the settings ask for."""
    return ingest_task.with_options(
        retries=settings.download_retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=settings.download_backoff_seconds),
    )


@task(name="prepare", cache_key_fn=_prepare_cache_key, persist_result=True)
def prepare_task(path: Path, color: str) -> prepare.PreparedTrips:
    trips = prepare.prepare_trips(path, color)
    get_run_logger().info(
        "%s: %d rows loaded, %d kept (1-60 minutes)", path.name, trips.rows_loaded, trips.rows_kept
    )
    return trips


@dataclass
class FeatureData:
    preprocessor: Preprocessor
    x_train: models.Features
    y_train: np.ndarray
    x_val: models.Features | None
    y_val: np.ndarray | None


@task(name="features", cache_policy=NO_CACHE)  # inputs are large: do not hash them
def features_task(
    config: models.TrainingConfig,
    train: prepare.PreparedTrips,
    val: prepare.PreparedTrips | None,
) -> FeatureData:
    preprocessor = Preprocessor.fit(train.frame, config.feature_set)
    return FeatureData(
        preprocessor=preprocessor,
        x_train=models.encode(preprocessor, train.frame, config),
        y_train=train.frame["duration"].to_numpy(),
        x_val=None if val is None else models.encode(preprocessor, val.frame, config),
        y_val=None if val is None else val.frame["duration"].to_numpy(),
    )


@task(name="train", cache_policy=NO_CACHE)
def train_task(config: models.TrainingConfig, data: FeatureData) -> models.FitResult:
    return models.fit_estimator(config, data.x_train, data.y_train, data.x_val, data.y_val)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(model: models.TripDurationModel, data: FeatureData) -> dict[str, float]:
    metrics = {
        f"{name}_train": value
        for name, value in evaluate.regression_metrics(
            data.y_train, model.predict_features(data.x_train)
        ).items()
    }
    if data.x_val is not None and data.y_val is not None:
        metrics.update(evaluate.regression_metrics(data.y_val, model.predict_features(data.x_val)))
    get_run_logger().info("metrics: %s", metrics)
    return metrics


@task(name="register", cache_policy=NO_CACHE)
def register_task(
    settings: Settings,
    run_name: str,
    model: models.TripDurationModel,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    history: dict[str, list[float]],
    input_example: Any,
    run_id: str | None = None,
) -> tracking.RegisteredModel:
    with tempfile.TemporaryDirectory(prefix="taxi-duration-") as work_dir:
        registered = tracking.log_and_register(
            settings,
            run_name=run_name,
            model=model,
            params=params,
            metrics=metrics,
            tags=tags,
            history=history,
            input_example=input_example,
            work_dir=Path(work_dir),
            run_id=run_id,
        )
    get_run_logger().info(
        "registered %s version %s (run %s)",
        registered.model_name,
        registered.model_version,
        registered.run_id,
    )
    if current_flow_run.id:  # for the alerts' link to the MLflow run
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(current_flow_run.id, {"mlflow.run_id": registered.run_id})
    return registered


@task(name="promote", cache_policy=NO_CACHE)
def promote_task(
    settings: Settings,
    version: str,
    val: prepare.PreparedTrips | None,
    color: str,
    min_improvement: float,
) -> PromotionDecision:
    """Champion if the new version beats the champion on the validation month, else challenger.

    Both are scored through their registered pyfuncs on the same trips, so the two RMSEs
    compare like with like.
    """
    # Locked (embedded store): a run finishing at the same time waits, then compares with
    # whichever version this one leaves as the champion.
    with tracking.embedded_store_lock(settings):
        champion = tracking.champion_version(settings)
        new_rmse = champion_rmse = None
        if champion is not None and val is not None:
            truth = val.frame["duration"].to_numpy()
            new = tracking.score_version(settings, version, val.frame, color)
            old = tracking.score_version(settings, champion, val.frame, color)
            scored = np.isfinite(new) & np.isfinite(old)
            new_rmse = evaluate.rmse(truth[scored], new[scored])
            champion_rmse = evaluate.rmse(truth[scored], old[scored])
        decision = decide_promotion(new_rmse, champion, champion_rmse, min_improvement)
        tracking.record_promotion(settings, version, decision)
    get_run_logger().info("version %s is the %s: %s", version, decision.alias, decision.reason)
    if decision.promoted:  # for the alerts (TAXI_DURATION_NOTIFY_ON_PROMOTION)
        emit_event(
            PROMOTED_EVENT,
            resource={
                "prefect.resource.id": f"taxi-duration.model.{settings.model_name}.{version}"
            },
            payload={"model_name": settings.model_name, "version": version, **asdict(decision)},
        )
    return decision
