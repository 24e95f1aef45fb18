"""Prefect tasks, one per step: each calls its step and logs.

No task result is cached or persisted by Prefect: a downloaded month is its own cache (the
file in the data folder, ``ingest``), and a prepared month is cached as parquet by the
prepare step (``taxi_duration.cache``), keyed by the file's bytes and the step's code. The
results stay in memory, so Prefect's result store does not grow with each month.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import get_client, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.objects import State, TaskRun
from prefect.concurrency.sync import concurrency
from prefect.events import emit_event
from prefect.exceptions import ObjectAlreadyExists
from prefect.runtime import flow_run as current_flow_run
from prefect.tasks import Task, exponential_backoff

from taxi_duration import (
    charts,
    checks,
    distributed,
    evaluate,
    ingest,
    models,
    prepare,
    promote,
    summary,
)
from taxi_duration.alerts import PROMOTED_EVENT
from taxi_duration.cache import PreparedCache, prepare_cached
from taxi_duration.errors import TRANSIENT_ERRORS
from taxi_duration.months import Month
from taxi_duration.settings import Settings
from taxi_duration.tracking import registry, runs, store

if TYPE_CHECKING:
    from distributed import Client


def _retry_if_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry a download that may pass; never a month not published, a full disk, a bug."""
    try:
        state.result()
    except TRANSIENT_ERRORS:
        return True
    except Exception:
        return False
    return False


@task(
    name="ingest",
    cache_policy=NO_CACHE,  # the downloaded file is the cache
    persist_result=False,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_if_transient,
)
def ingest_task(color: str, month: str, base_url: str, cache_dir: str, timeout: float) -> Path:
    path = ingest.download_month(
        color,
        Month.parse(month),
        base_url=base_url,
        cache_dir=Path(cache_dir),
        timeout_seconds=timeout,
        progress=Settings().progress_bar,
    )
    get_run_logger().info("%s %s: %s (%d bytes)", color, month, path, path.stat().st_size)
    return path


def ingest_with_settings(settings: Settings) -> Task[..., Path]:
    """The ingest task with the retries and backoff the settings ask for."""
    return ingest_task.with_options(
        retries=settings.download_retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=settings.download_backoff_seconds),
    )


def ingest_arguments(settings: Settings, color: str, month: Month) -> tuple[Any, ...]:
    """The ingest task's arguments for a month, from the settings."""
    return (
        color,
        str(month),
        settings.data_url,
        str(settings.data_dir),
        settings.download_timeout_seconds,
    )


def ingest_month(settings: Settings, color: str, month: Month) -> Path:
    """Download (or take from the cache) a month, with the retries the settings ask for."""
    return ingest_with_settings(settings)(*ingest_arguments(settings, color, month))


@task(name="prepare", cache_policy=NO_CACHE, persist_result=False)  # cached as parquet
def prepare_task(path: Path, color: str, cache: PreparedCache) -> prepare.PreparedTrips:
    trips, hit = prepare_cached(path, color, cache)
    get_run_logger().info(
        "%s: %d rows loaded, %d kept (1-60 minutes)%s",
        path.name,
        trips.rows_loaded,
        trips.rows_kept,
        " (cached)" if hit else "",
    )
    return trips


def check_thresholds(settings: Settings) -> checks.CheckThresholds:
    """The data checks' thresholds: ``checks.py``'s defaults, but those the settings set
    (``TAXI_DURATION_CHECK_*``)."""
    return checks.CheckThresholds(**settings.check_thresholds())


@task(name="check", cache_policy=NO_CACHE, persist_result=False)  # inputs are large
def check_task(
    trips: prepare.PreparedTrips,
    month_label: str,
    thresholds: checks.CheckThresholds,
    skip: bool = False,
) -> checks.MonthFigures:
    """A prepared month's figures; a month that fails its checks stops the run (DataCheckError),
    unless ``skip``: then the failure is a warning."""
    logger = get_run_logger()
    if skip:
        figures, failure = checks.audit_month(
            month_label, trips.rows_loaded, trips.frame, thresholds
        )
        if failure:
            logger.warning("checks skipped (skip_checks): %s", failure)
    else:
        figures = checks.check_month(month_label, trips.rows_loaded, trips.frame, thresholds)
    shown = ", ".join(f"{name} {value:.4g}" for name, value in figures.as_dict().items())
    logger.info("%s: %s", month_label, shown)
    return figures


@task(name="features", cache_policy=NO_CACHE)  # inputs are large: do not hash them
def features_task(
    config: models.TrainingConfig,
    train: prepare.PreparedTrips,
    val: prepare.PreparedTrips | None,
) -> models.FeatureData:
    data = models.month_pair_features(config, train.frame, None if val is None else val.frame)
    get_run_logger().info("%s features: %d", config.features, models.n_features(data.x_train))
    return data


@task(name="train", cache_policy=NO_CACHE)
def train_task(
    config: models.TrainingConfig, data: models.FeatureData, threads: int
) -> models.FitResult:
    fit = models.fit_estimator(
        config, data.x_train, data.y_train, data.x_val, data.y_val, nthread=threads
    )
    if fit.best_iteration is not None:
        get_run_logger().info("best iteration: %d", fit.best_iteration)
    return fit


@task(name="train-on-dask", cache_policy=NO_CACHE)
def train_on_dask_task(
    client: Client,
    config: models.TrainingConfig,
    color: str,
    train_files: list[Path],
    val_file: Path | None,
) -> distributed.DistributedRun:
    """Prepare, featurize, train and evaluate on the cluster (the files are read there)."""
    run = distributed.train_on_cluster(client, config, color, train_files, val_file)
    get_run_logger().info(
        "on %d dask workers: %d trips kept of %d, best iteration %s, metrics %s",
        len(client.scheduler_info()["workers"]),
        run.train.rows_kept,
        run.train.rows_loaded,
        run.fit.best_iteration,
        run.metrics,
    )
    return run


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(model: models.TripDurationModel, data: models.FeatureData) -> dict[str, float]:
    metrics = evaluate.model_metrics(model, data)
    get_run_logger().info("metrics: %s", metrics)
    return metrics


@task(name="explain", cache_policy=NO_CACHE)
def explain_task(
    model: models.TripDurationModel,
    data: models.FeatureData,
    fit: models.FitResult,
    val: prepare.PreparedTrips | None,
) -> dict[str, bytes]:
    made = charts.model_charts(model, data, fit.history, None if val is None else val.frame)
    get_run_logger().info("charts: %s", ", ".join(made))
    return made


@task(name="register", cache_policy=NO_CACHE)
def register_task(
    settings: Settings,
    model: models.TripDurationModel,
    record: summary.RunRecord,
    register: bool = True,
) -> summary.RegisteredModel:
    with tempfile.TemporaryDirectory(prefix="taxi-duration-") as work_dir:
        logged = runs.log_and_register(settings, model, record, Path(work_dir), register)
    if logged.model_version is None:
        get_run_logger().info("logged run %s, registered nothing", logged.run_id)
    elif logged.reused:
        get_run_logger().info(
            "%s version %s is identical (same data, parameters and code): reused, "
            "no new version, no alias changed (run %s)",
            logged.model_name,
            logged.model_version,
            logged.run_id,
        )
    else:
        get_run_logger().info(
            "registered %s version %s (run %s)",
            logged.model_name,
            logged.model_version,
            logged.run_id,
        )
    if current_flow_run.id:  # for the alerts' link to the MLflow run
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(current_flow_run.id, {"mlflow.run_id": logged.run_id})
    return logged


@task(name="promote", cache_policy=NO_CACHE)
def promote_task(
    settings: Settings,
    version: str,
    val: prepare.PreparedTrips | None,
    color: str,
    min_improvement: float,
) -> promote.PromotionDecision:
    """Champion if the new version beats the champion on the validation month, else challenger.

    Both are scored through their registered pyfuncs on the same trips.
    """

    def compared(champion: str) -> tuple[float, float]:
        assert val is not None
        return promote.compare_on(
            val.frame["duration"].to_numpy(),
            registry.score_version(settings, version, val.frame, color),
            registry.score_version(settings, champion, val.frame, color),
        )

    return _promote(settings, version, color, None if val is None else compared, min_improvement)


@task(name="promote", cache_policy=NO_CACHE)
def promote_on_cluster_task(
    settings: Settings,
    client: Client,
    version: str,
    val_file: Path | None,
    color: str,
    min_improvement: float,
) -> promote.PromotionDecision:
    """``promote_task`` for a distributed run: the cluster's workers read the validation month
    and score it through both registered pyfuncs, so that no month passes through here."""

    def compared(champion: str) -> tuple[float, float]:
        assert val_file is not None
        return distributed.compare_on_cluster(
            client,
            val_file,
            color,
            registry.version_model(settings, version, color),
            registry.version_model(settings, champion, color),
        )

    return _promote(
        settings, version, color, None if val_file is None else compared, min_improvement
    )


def _promote(
    settings: Settings,
    version: str,
    color: str,
    compared: promote.Comparison | None,
    min_improvement: float,
) -> promote.PromotionDecision:
    # A run finishing at the same time waits, then compares with whichever version this one
    # leaves as the champion.
    with promotion_lock(settings, color):
        decision = promote.champion_by(
            version, registry.champion_version(settings, color), compared, min_improvement
        )
        registry.record_promotion(settings, color, version, decision)
    get_run_logger().info("version %s is the %s: %s", version, decision.alias, decision.reason)
    if decision.promoted:  # for the alerts (TAXI_DURATION_NOTIFY_ON_PROMOTION)
        model_name = settings.registered_model(color)
        emit_event(
            PROMOTED_EVENT,
            resource={"prefect.resource.id": f"taxi-duration.model.{model_name}.{version}"},
            payload={"model_name": model_name, "version": version, **asdict(decision)},
        )
    return decision


# Seconds a promotion may wait for another's to end, and the lease of the one in progress
# (renewed while it runs; a run killed mid-promotion frees the slot when it lapses).
PROMOTION_WAIT_SECONDS = 600.0
PROMOTION_LEASE_SECONDS = 60.0


@contextlib.contextmanager
def promotion_lock(settings: Settings, color: str) -> Iterator[None]:
    """One promotion of ``color``'s model at a time, across processes and machines.

    The embedded store is one file on this machine: the operating system's file lock on it
    (freed if the process dies). An MLflow server is shared by every worker: a Prefect global
    concurrency limit of 1 named after the model, created on first use.
    """
    if settings.mlflow_tracking_uri is None:
        with store.embedded_store_lock(settings):
            yield
        return
    name = f"taxi-duration-promote-{settings.registered_model(color)}"
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    # strict: a limit deleted in between is an error, never a promotion without the lock.
    with concurrency(
        name,
        occupy=1,
        timeout_seconds=PROMOTION_WAIT_SECONDS,
        lease_duration=PROMOTION_LEASE_SECONDS,
        strict=True,
    ):
        yield
