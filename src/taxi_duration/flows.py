"""Orchestration: Prefect tasks wrapping the steps, and the ``train`` flow. The only Prefect import.

ingest and prepare are cached across runs: their key is their inputs (with the size and
modification time of any data file) and the source of the step's module, so a re-run of an
unchanged month reuses them and a change to the step's code does not.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.context import TaskRunContext
from prefect.tasks import Task, exponential_backoff

from taxi_duration import __version__, evaluate, ingest, models, prepare, tracking
from taxi_duration import tune as tune_step
from taxi_duration.errors import InvalidInputError, MonthNotPublishedError
from taxi_duration.features import Preprocessor
from taxi_duration.months import Month
from taxi_duration.request import TrainRequest, check_tuning_budget
from taxi_duration.settings import Settings
from taxi_duration.summary import TrainSummary

STEPS = ("ingest", "prepare", "features", "train", "evaluate", "register")


# ---- caching ------------------------------------------------------------------------------


def _module_source_hash(module: ModuleType) -> str:
    return hashlib.sha256(inspect.getsource(module).encode()).hexdigest()


def _file_state(path: Path) -> list[Any] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def _cache_key(step: ModuleType, parameters: dict[str, Any], files: list[Path]) -> str | None:
    states = [_file_state(path) for path in files]
    if any(state is None for state in states):
        return None  # a missing file must be (re)made, never taken from the cache
    payload = {
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
    return _cache_key(ingest, parameters, [target])


def _prepare_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    return _cache_key(prepare, parameters, [Path(parameters["path"])])


def _retry_unless_final(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry downloads, but not a month that is not published or a bad parameter."""
    try:
        state.result()
    except (MonthNotPublishedError, InvalidInputError):
        return False
    except Exception:
        return True
    return False


# ---- tasks: one per step ------------------------------------------------------------------


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
    return registered


# ---- the train flow -----------------------------------------------------------------------


@contextmanager
def _timed(timings: dict[str, float], step: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[step] = round(timings.get(step, 0.0) + time.perf_counter() - start, 3)


def _get_month(settings: Settings, color: str, month: Month, local: Path | None) -> Path:
    if local is not None:
        return local
    return ingest_task.with_options(retries=settings.download_retries)(
        color,
        str(month),
        settings.data_url,
        str(settings.data_dir),
        settings.download_timeout_seconds,
    )


@dataclass
class _Months:
    train: prepare.PreparedTrips
    val: prepare.PreparedTrips | None


def _load_months(settings: Settings, request: TrainRequest, timings: dict[str, float]) -> _Months:
    """ingest and prepare the training and validation months."""
    with _timed(timings, "ingest"):
        train_file = _get_month(settings, request.color, request.train_month, request.train_path)
        val_file = None
        if request.val_month is not None:
            val_file = _get_month(settings, request.color, request.val_month, request.val_path)
    with _timed(timings, "prepare"):
        train_trips = prepare_task(train_file, request.color)
        val_trips = None if val_file is None else prepare_task(val_file, request.color)
    return _Months(train_trips, val_trips)


def _fit_evaluate_register(
    settings: Settings,
    request: TrainRequest,
    config: models.TrainingConfig,
    months: _Months,
    data: FeatureData,
    timings: dict[str, float],
    *,
    run_id: str | None = None,
    extra_params: dict[str, Any] | None = None,
) -> TrainSummary:
    """train, evaluate and register; the summary of it all."""
    with _timed(timings, "train"):
        fit = train_task(config, data)
        trained = models.TripDurationModel(config, data.preprocessor, fit.estimator)
    with _timed(timings, "evaluate"):
        metrics = evaluate_task(trained, data)

    train_month, val_month = str(request.train_month), str(request.val_month or "none")
    params = {
        **config.params(),
        **(extra_params or {}),
        "color": request.color,
        "train_month": train_month,
        "val_month": val_month,
        "n_features": models.n_features(data.x_train),
    }
    counts = {"rows_loaded": months.train.rows_loaded, "rows_kept": months.train.rows_kept}
    if months.val is not None:
        counts.update(val_rows_loaded=months.val.rows_loaded, val_rows=months.val.rows_kept)
    tags = {
        "color": request.color,
        "train_month": train_month,
        "val_month": val_month,
        "taxi_duration_version": __version__,
    }
    logged_metrics = {**metrics, **{key: float(value) for key, value in counts.items()}}
    if fit.best_iteration is not None:
        logged_metrics["best_iteration"] = fit.best_iteration
    run_name = f"{config.preset or config.model}-{config.features}-{request.color}-{train_month}"
    with _timed(timings, "register"):
        registered = register_task(
            settings,
            run_name,
            trained,
            params,
            logged_metrics,
            tags,
            fit.history,
            prepare.raw_example(months.train.frame, request.color),
            run_id,
        )
    return TrainSummary(
        color=request.color,
        train_month=train_month,
        val_month=str(request.val_month) if request.val_month else None,
        model=config.model,
        features=config.features,
        preset=config.preset,
        rows_loaded=months.train.rows_loaded,
        rows_kept=months.train.rows_kept,
        val_rows_loaded=months.val.rows_loaded if months.val else None,
        val_rows=months.val.rows_kept if months.val else None,
        n_features=models.n_features(data.x_train),
        rmse=metrics.get("rmse"),
        mae=metrics.get("mae"),
        rmse_train=metrics["rmse_train"],
        intercept=trained.intercept,
        best_iteration=fit.best_iteration,
        run_id=registered.run_id,
        model_name=registered.model_name,
        model_version=registered.model_version,
        model_uri=registered.model_uri,
        model_size_bytes=registered.model_size_bytes,
        tracking_uri=settings.tracking_uri,
        timings=timings,
    )


def _publish(summary: TrainSummary, kind: str) -> None:
    create_markdown_artifact(
        key=f"{kind}-summary",
        markdown=summary.markdown(),
        description=f"{kind.title()} on {summary.color} {summary.train_month}",
    )


@flow(name="train", log_prints=True)
def train(
    color: str = "green",
    year: int | None = None,
    month: int | None = None,
    val_year: int | None = None,
    val_month: int | None = None,
    validation: bool = True,
    train_path: str | None = None,
    val_path: str | None = None,
    model: str | None = None,
    features: str | None = None,
    preset: str | None = None,
) -> TrainSummary:
    """Train a trip-duration model on one month, evaluate on the next, register it."""
    request = TrainRequest.build(
        color, year, month, val_year, val_month, validation, train_path, val_path
    )
    config = models.training_config(model, features, preset)
    settings = Settings()
    timings: dict[str, float] = {}
    months = _load_months(settings, request, timings)
    with _timed(timings, "features"):
        data = features_task(config, months.train, months.val)
    summary = _fit_evaluate_register(settings, request, config, months, data, timings)
    _publish(summary, "train")
    return summary


@flow(name="search", log_prints=True)
def search(
    settings: Settings,
    config: models.TrainingConfig,
    data: FeatureData,
    parent_run_id: str,
    trials: int,
    timeout: float | None,
    jobs: int,
    seed: int,
) -> tune_step.TuneResult:
    """The hyperparameter search, each trial a nested MLflow run of ``parent_run_id``."""
    assert config.xgboost is not None
    assert data.x_val is not None
    logger = get_run_logger()

    def log_trial(record: tune_step.TrialRecord) -> None:
        metrics = {"rmse": record.rmse} if record.rmse is not None else {}
        if record.rounds is not None:
            metrics["rounds"] = record.rounds
        tracking.log_nested_run(
            settings,
            parent_run_id,
            f"trial-{record.number}",
            record.params,
            metrics,
            status="FINISHED" if record.state == "COMPLETE" else "KILLED",
        )
        logger.info(
            "trial %d %s rmse=%s %s", record.number, record.state, record.rmse, record.params
        )

    result = tune_step.tune_xgboost(
        config.xgboost,
        models.dmatrix(data.x_train, data.y_train),
        models.dmatrix(data.x_val, data.y_val),
        n_trials=trials,
        timeout_seconds=timeout,
        jobs=jobs,
        seed=seed,
        on_trial=log_trial,
    )
    logger.info(
        "best of %d trials: rmse %.4f with %s",
        result.n_trials,
        result.best_rmse,
        result.best_params,
    )
    return result


@flow(name="tune", log_prints=True)
def tune(
    color: str = "green",
    year: int | None = None,
    month: int | None = None,
    val_year: int | None = None,
    val_month: int | None = None,
    train_path: str | None = None,
    val_path: str | None = None,
    trials: int = 20,
    timeout: float | None = None,
    jobs: int = 1,
    seed: int = 42,
) -> TrainSummary:
    """Search XGBoost parameters on the validation month, then train and register the best."""
    request = TrainRequest.build(
        color, year, month, val_year, val_month, True, train_path, val_path
    )
    check_tuning_budget(trials, timeout, jobs)
    config = models.training_config("xgboost", "default")
    settings = Settings()
    timings: dict[str, float] = {}
    months = _load_months(settings, request, timings)
    with _timed(timings, "features"):
        data = features_task(config, months.train, months.val)
    parent_run_id = tracking.start_parent_run(
        settings,
        f"tune-{color}-{request.train_month}",
        {"color": color, "train_month": str(request.train_month), "kind": "tune"},
    )
    try:
        with _timed(timings, "tune"):
            result = search(settings, config, data, parent_run_id, trials, timeout, jobs, seed)
        # The trials' seed too, so that the final model is the best trial's model.
        tuned = config.with_xgboost_params({**result.best_params, "seed": seed})
        summary = _fit_evaluate_register(
            settings,
            request,
            tuned,
            months,
            data,
            timings,
            run_id=parent_run_id,
            extra_params={"n_trials": result.n_trials, "seed": seed},
        )
    except BaseException:
        tracking.end_run(settings, parent_run_id, "FAILED")
        raise
    summary.best_params = result.best_params
    summary.n_trials = result.n_trials
    _publish(summary, "tune")
    return summary
