"""The ``train`` flow: ingest, prepare, features, train, evaluate, register, promote."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow.parquet as pq
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from taxi_duration import checks, distributed, models, prepare, summary
from taxi_duration.cache import PreparedCache
from taxi_duration.cpus import threads_per_job
from taxi_duration.flows.progress import timed
from taxi_duration.flows.tasks import (
    check_task,
    check_thresholds,
    evaluate_task,
    explain_task,
    features_task,
    ingest_month,
    prepare_task,
    promote_on_cluster_task,
    promote_task,
    register_task,
    train_on_dask_task,
    train_task,
)
from taxi_duration.ingest import tlc_url
from taxi_duration.months import Month
from taxi_duration.settings import Settings
from taxi_duration.specs import TrainingSpec, TrainSpec
from taxi_duration.tracking import runs

STEPS = (
    "ingest",
    "prepare",
    "check",
    "features",
    "train",
    "evaluate",
    "explain",
    "register",
    "promote",
)


@dataclass(frozen=True)
class PreparedMonths:
    """The prepared trips of a run's training window (its months as one) and of its
    validation month, if any, where each month came from, and each month's data-check
    figures as metrics (``checks.check_metrics``)."""

    train: prepare.PreparedTrips
    val: prepare.PreparedTrips | None
    datasets: tuple[summary.MonthData, ...]
    check_metrics: dict[str, float]


def prepare_month_pair(
    settings: Settings, spec: TrainingSpec, timings: dict[str, float]
) -> tuple[PreparedMonths, models.FeatureData]:
    """ingest, prepare and make the features of the spec's training window and validation
    month."""
    months = prepare_months(settings, spec, timings)
    with timed(timings, "features", spec.config.features):
        data = features_task(spec.config, months.train, months.val)
    return months, data


def prepare_months(
    settings: Settings, spec: TrainingSpec, timings: dict[str, float]
) -> PreparedMonths:
    """ingest, prepare and check the spec's training window and validation month (or its
    local files): each month is downloaded and prepared once (cached), the window's months
    are then joined. A month that fails its data checks stops the run here, before any
    feature is built, unless the spec skips the checks."""
    thresholds = check_thresholds(settings)  # a bad setting: one line before any download
    train_files, val_file = ingest_months(settings, spec, timings)
    cache = PreparedCache.of(settings)
    with timed(timings, "prepare", chosen_months(spec)):
        window = [prepare_task(path, spec.color, cache) for path in train_files]
        val = None if val_file is None else prepare_task(val_file, spec.color, cache)
        train = prepare.join_months(window)
    with timed(timings, "check", chosen_months(spec)):

        def check(trips: prepare.PreparedTrips, month: Month) -> checks.MonthFigures:
            return check_task(trips, f"{spec.color} {month}", thresholds, spec.skip_checks)

        # Each month on its own, the window's too: a bad month is not hidden by good ones.
        window_figures = [
            check(trips, month) for trips, month in zip(window, spec.training_months(), strict=True)
        ]
        val_month = spec.validation_month
        val_figures = None if val is None or val_month is None else check(val, val_month)
    datasets = months_lineage(
        settings,
        spec,
        (train_files, [trips.rows_loaded for trips in window]),
        (val_file, None if val is None else val.rows_loaded),
    )
    return PreparedMonths(train, val, datasets, checks.check_metrics(window_figures, val_figures))


def chosen_months(spec: TrainingSpec) -> str:
    """The color and months a run uses, for its progress lines: ``green 2023-01, 2023-02``
    (a window: ``green 2022-11..2023-01, 2023-02``)."""
    window = spec.training_months()
    train = str(window[0]) if len(window) == 1 else f"{window[0]}..{window[-1]}"
    val = spec.validation_month
    return f"{spec.color} {train}" + ("" if val is None else f", {val}")


def ingest_months(
    settings: Settings, spec: TrainingSpec, timings: dict[str, float]
) -> tuple[list[Path], Path | None]:
    """The files of the spec's training window and validation month: its local files, or
    each month downloaded once (cached)."""
    val_month = spec.validation_month
    with timed(timings, "ingest", chosen_months(spec)):
        if spec.train_file is not None:  # one month (the spec allows no wider window)
            train_files = [spec.train_file]
        else:
            train_files = [
                ingest_month(settings, spec.color, month) for month in spec.training_months()
            ]
        val_file = spec.val_file
        if val_month is not None and val_file is None:
            val_file = ingest_month(settings, spec.color, val_month)
    return train_files, val_file


def months_lineage(
    settings: Settings,
    spec: TrainingSpec,
    train: tuple[list[Path], list[int]],
    validation: tuple[Path | None, int | None],
) -> tuple[summary.MonthData, ...]:
    """The lineage of the window's months (their files, as ``ingest_months`` gave them, and
    the rows each held) and of the validation month's file and rows, if any."""
    train_files, train_rows = train
    datasets = [
        _month_data(settings, spec.color, "training", month, path, rows, spec.train_file)
        for month, path, rows in zip(spec.training_months(), train_files, train_rows, strict=True)
    ]
    val_file, val_rows = validation
    val_month = spec.validation_month
    if val_month is not None and val_file is not None and val_rows is not None:
        datasets.append(
            _month_data(
                settings, spec.color, "validation", val_month, val_file, val_rows, spec.val_file
            )
        )
    return tuple(datasets)


def _month_data(
    settings: Settings,
    color: str,
    context: str,
    month: Month,
    path: Path,
    rows: int,
    given: Path | None,
) -> summary.MonthData:
    """A month's lineage: the local file given, else the URL it was downloaded from."""
    source = str(given.resolve()) if given is not None else tlc_url(settings.data_url, color, month)
    return summary.MonthData(context, path.stem, source, path, rows)


def _rows(path: Path) -> int:
    """A file's rows, from its parquet footer (the file itself is read elsewhere)."""
    return int(pq.read_metadata(path).num_rows)


def train_and_register(
    settings: Settings,
    spec: TrainingSpec,
    config: models.TrainingConfig,
    months: PreparedMonths,
    data: models.FeatureData,
    timings: dict[str, float],
    parent_run_id: str | None = None,
) -> summary.TrainSummary:
    """train, evaluate, register and promote ``config`` on a month pair's features."""
    with timed(timings, "train", config.model):
        fit = train_task(config, data, threads_per_job(spec.threads or settings.threads))
        model = models.TripDurationModel(config, data.preprocessor, fit.estimator)
    with timed(timings, "evaluate"):
        metrics = evaluate_task(model, data)
    record = summary.run_record(
        config,
        spec.color,
        (spec.training_months(), spec.validation_month),
        (months.train, months.val),
        fit,
        metrics,
        models.n_features(data.x_train),
    )
    with timed(timings, "explain"):
        made = explain_task(model, data, fit, months.val)
    record = replace(
        record,
        run_id=parent_run_id,
        datasets=months.datasets,
        metrics={**record.metrics, **months.check_metrics},
        tags={
            **record.tags,
            **_prefect_tags(),
            runs.SKIP_CHECKS_TAG: str(spec.skip_checks).lower(),
        },
        charts=made,
    )
    with timed(timings, "register"):
        registered = register_task(settings, model, record, spec.register_version)
    decision = None
    if registered.model_version is not None and not registered.reused:
        with timed(timings, "promote", f"version {registered.model_version}"):
            decision = promote_task(
                settings, registered.model_version, months.val, spec.color, spec.min_improvement
            )
    return summary.TrainSummary.of_run(
        record, model, fit, registered, decision, settings.tracking_uri, timings
    )


def _prefect_tags() -> dict[str, str]:
    """The Prefect flow run that trained the model, and its page in the UI."""
    from prefect.runtime import flow_run

    tags = {
        "prefect.flow_run_id": str(flow_run.id or ""),
        "prefect.flow_run_name": str(flow_run.name or ""),
    }
    # Without PREFECT_UI_URL (ephemeral Prefect), Prefect gives "None/flow-runs/...": no link.
    if str(flow_run.ui_url or "").startswith(("http://", "https://")):
        tags["prefect.flow_run_url"] = str(flow_run.ui_url)
    return {key: value for key, value in tags.items() if value}


def publish(settings: Settings, result: summary.TrainSummary, kind: str) -> None:
    """The summary as the flow run's Prefect artifact and the MLflow run's ``summary.md``."""
    runs.log_text(settings, result.run_id, result.markdown(), "summary.md")
    create_markdown_artifact(
        key=f"{kind}-summary",
        markdown=result.markdown(),
        description=f"{kind.title()} on {result.color} {result.trained_on}",
    )


def with_scheduled_months(spec: TrainSpec) -> TrainSpec:
    """A spec without months (a scheduled run) takes them from the run's scheduled date:
    train on the month two before it, validate on the one before, falling back to earlier
    months while the data server has not published them (``taxi_duration.schedule``)."""
    if spec.train_month is not None:
        return spec
    from prefect.runtime import flow_run as current_run

    from taxi_duration.schedule import months_for_run

    settings = Settings()
    chosen = months_for_run(
        current_run.scheduled_start_time,
        spec.color,
        settings.data_url,
        timeout=settings.download_timeout_seconds,
    )
    scheduled = spec.with_months(chosen.train, chosen.val if spec.validation else None)
    get_run_logger().info(
        "scheduled months: train %s, validate %s%s",
        scheduled.train_month,
        scheduled.validation_month or "none",
        f" (fell back: validating on {', '.join(map(str, chosen.skipped))} not published)"
        if chosen.skipped
        else "",
    )
    return scheduled


_ANY_MONTHS = TrainSpec()  # a spec without months: a scheduled run chooses them


@flow(name="train", log_prints=True)
def train(spec: TrainSpec = _ANY_MONTHS) -> summary.TrainSummary:
    """Train on one month, evaluate on the next, register, and promote if it beats the champion.

    Without year and month (a scheduled run), the months come from the run's scheduled date.
    """
    spec = with_scheduled_months(spec)
    settings = Settings()
    timings: dict[str, float] = {}
    if spec.on_dask:
        result = train_on_dask(settings, spec, timings)
    else:
        months, data = prepare_month_pair(settings, spec, timings)
        result = train_and_register(settings, spec, spec.config, months, data, timings)
    publish(settings, result, "train")
    return result


def train_on_dask(
    settings: Settings, spec: TrainSpec, timings: dict[str, float]
) -> summary.TrainSummary:
    """The window's months read, prepared and trained on by the spec's Dask cluster; the
    model registered as a local run's is, and compared with the champion on the cluster.
    The cluster is reached before any download."""
    train_months, val_month = spec.training_months(), spec.validation_month
    with distributed.dask_client(spec.dask_address, spec.workers) as client:
        train_files, val_file = ingest_months(settings, spec, timings)
        run = train_on_dask_task(client, spec.config, spec.color, train_files, val_file)
        timings.update(run.timings)
        record = summary.run_record(
            spec.config,
            spec.color,
            (train_months, val_month),
            (run.train, run.val),
            run.fit,
            run.metrics,
            run.n_features,
        )
        datasets = months_lineage(
            settings,
            spec,
            (train_files, [_rows(path) for path in train_files]),
            (val_file, None if val_file is None else _rows(val_file)),
        )
        record = replace(record, datasets=datasets, tags={**record.tags, **_prefect_tags()})
        with timed(timings, "register"):
            registered = register_task(settings, run.model, record, spec.register_version)
        decision = None
        if registered.model_version is not None and not registered.reused:
            with timed(timings, "promote", f"version {registered.model_version}"):
                decision = promote_on_cluster_task(
                    settings,
                    client,
                    registered.model_version,
                    val_file,
                    spec.color,
                    spec.min_improvement,
                )
    return summary.TrainSummary.of_run(
        record, run.model, run.fit, registered, decision, settings.tracking_uri, timings
    )
