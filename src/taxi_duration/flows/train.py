"""The ``train`` flow: ingest, prepare, features, train, evaluate, register."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from taxi_duration import __version__, models, prepare
from taxi_duration.flows.tasks import (
    FeatureData,
    evaluate_task,
    features_task,
    ingest_with_settings,
    prepare_task,
    promote_task,
    register_task,
    train_task,
)
from taxi_duration.months import Month
from taxi_duration.request import TrainRequest, check_min_improvement
from taxi_duration.settings import Settings
from taxi_duration.summary import TrainSummary

STEPS = ("ingest", "prepare", "features", "train", "evaluate", "register", "promote")


@contextmanager
def timed(timings: dict[str, float], step: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[step] = round(timings.get(step, 0.0) + time.perf_counter() - start, 3)


def _get_month(settings: Settings, color: str, month: Month, local: Path | None) -> Path:
    if local is not None:
        return local
    return ingest_with_settings(settings)(
        color,
        str(month),
        settings.data_url,
        str(settings.data_dir),
        settings.download_timeout_seconds,
    )


@dataclass
class Months:
    train: prepare.PreparedTrips
    val: prepare.PreparedTrips | None


def load_months(settings: Settings, request: TrainRequest, timings: dict[str, float]) -> Months:
    """ingest and prepare the training and validation months."""
    with timed(timings, "ingest"):
        train_file = _get_month(settings, request.color, request.train_month, request.train_path)
        val_file = None
        if request.val_month is not None:
            val_file = _get_month(settings, request.color, request.val_month, request.val_path)
    with timed(timings, "prepare"):
        train_trips = prepare_task(train_file, request.color)
        val_trips = None if val_file is None else prepare_task(val_file, request.color)
    return Months(train_trips, val_trips)


def fit_evaluate_register(
    settings: Settings,
    request: TrainRequest,
    config: models.TrainingConfig,
    months: Months,
    data: FeatureData,
    timings: dict[str, float],
    *,
    run_id: str | None = None,
    extra_params: dict[str, Any] | None = None,
    min_improvement: float = 0.0,
) -> TrainSummary:
    """train, evaluate, register and promote; the summary of it all."""
    with timed(timings, "train"):
        fit = train_task(config, data)
        trained = models.TripDurationModel(config, data.preprocessor, fit.estimator)
    with timed(timings, "evaluate"):
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
    with timed(timings, "register"):
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
    with timed(timings, "promote"):
        decision = promote_task(
            settings, registered.model_version, months.val, request.color, min_improvement
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
        promoted=decision.promoted,
        champion_version=registered.model_version
        if decision.promoted
        else decision.previous_champion,
        champion_rmse=decision.champion_rmse,
        promotion_reason=decision.reason,
    )


def publish(summary: TrainSummary, kind: str) -> None:
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
    min_improvement: float = 0.0,
) -> TrainSummary:
    """Train on one month, evaluate on the next, register, and promote if it beats the champion.

    Without year and month (a scheduled run), the months come from the run's scheduled date:
    train on the month two before it, validate on the one before, falling back to earlier
    months while the data server has not published them (see ``taxi_duration.schedule``).
    """
    if year is None and month is None and train_path is None:
        from prefect import get_run_logger
        from prefect.runtime import flow_run as current_run

        from taxi_duration.schedule import months_for_run

        run_settings = Settings()
        chosen = months_for_run(
            current_run.scheduled_start_time,
            color,
            run_settings.data_url,
            timeout=run_settings.download_timeout_seconds,
        )
        year, month = chosen.train.year, chosen.train.month
        if validation and val_year is None and val_month is None:
            val_year, val_month = chosen.val.year, chosen.val.month
        get_run_logger().info(
            "scheduled months: train %s, validate %s%s",
            chosen.train,
            f"{val_year:04d}-{val_month:02d}" if val_year and val_month else "none",
            f" (fell back: validating on {', '.join(map(str, chosen.skipped))} not published)"
            if chosen.skipped
            else "",
        )
    request = TrainRequest.build(
        color, year, month, val_year, val_month, validation, train_path, val_path
    )
    config = models.training_config(model, features, preset)
    settings = Settings()
    timings: dict[str, float] = {}
    months = load_months(settings, request, timings)
    with timed(timings, "features"):
        data = features_task(config, months.train, months.val)
    check_min_improvement(min_improvement)
    summary = fit_evaluate_register(
        settings, request, config, months, data, timings, min_improvement=min_improvement
    )
    publish(summary, "train")
    return summary
