"""The ``monitor`` flow: the color's champion judged on a published month it has not seen.

The champion, its training month and the new month come from the registry and the data
server (downloaded and prepared once, cached as for training); the new month passes the data
checks; ``monitor.judge`` measures the RMSE and the drift. The result is logged to MLflow
(``<experiment>-monitor``, the month as the metrics' step), shown as a markdown artifact, and
a degraded month emits ``taxi-duration.model.degraded`` for automations to act on.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from taxi_duration import checks, prepare, tracking
from taxi_duration import monitor as monitor_step
from taxi_duration.cache import PreparedCache
from taxi_duration.errors import InvalidInputError, RegistryError
from taxi_duration.flows.progress import timed
from taxi_duration.flows.tasks import check_task, check_thresholds, ingest_month, prepare_task
from taxi_duration.months import Month
from taxi_duration.settings import Settings
from taxi_duration.specs import MonitorSpec

DEGRADED_EVENT = "taxi-duration.model.degraded"


def champion_months(champion: tracking.ChampionRecord) -> list[Month]:
    """The months the champion saw: its training window and its validation month."""
    window = [Month.parse(champion.train_month)]
    while len(window) < champion.window:
        window.insert(0, window[0].previous())
    return window + ([Month.parse(champion.val_month)] if champion.val_month else [])


@task(name="judge", cache_policy=NO_CACHE)
def judge_task(
    settings: Settings,
    spec: MonitorSpec,
    champion: tracking.ChampionRecord,
    training: prepare.PreparedTrips,
    current: prepare.PreparedTrips,
    figures: checks.MonthFigures,
) -> monitor_step.MonitorReport:
    assert champion.validation_rmse is not None
    model = tracking.version_model(settings, champion.version, spec.color)
    report = monitor_step.judge(
        month=f"{spec.color} {spec.monitored_month}",
        model_version=champion.version,
        predict=model.predict,
        training=training.frame,
        current=current.frame,
        validation_rmse=champion.validation_rmse,
        figures=figures.as_dict(),
        training_figures=checks.month_figures(training.rows_loaded, training.frame).as_dict(),
        thresholds=monitor_step.MonitorThresholds(max_degradation=spec.max_degradation),
    )
    for line in report.lines():
        get_run_logger().info(line)
    return report


def _markdown(report: monitor_step.MonitorReport) -> str:
    verdict = "degraded: " + "; ".join(report.reasons) if report.degraded else "not degraded"
    rows = "\n".join(
        f"| {line.rsplit(': ', 1)[0]} | {line.rsplit(': ', 1)[1]} |" for line in report.lines()
    )
    return (
        f"# Champion version {report.model_version} on {report.month}\n\n{verdict}\n\n"
        f"| check | result |\n|---|---|\n{rows}\n"
    )


@flow(name="monitor", log_prints=True)
def monitor(spec: MonitorSpec) -> dict[str, Any]:
    """Judge the color's champion on a month it was neither trained nor validated on."""
    settings = Settings()
    timings: dict[str, float] = {}
    month = spec.monitored_month
    # The champion first: without one, or on one of its own months, fail before downloading.
    champion = tracking.champion_record(settings, spec.color)
    model_name = settings.registered_model(spec.color)
    if champion is None:
        raise RegistryError(f"{model_name} has no champion yet: train one before monitoring")
    seen = champion_months(champion)
    if month in seen:
        raise InvalidInputError(
            f"{spec.color} {month}: the champion (version {champion.version}) was trained or "
            f"validated on it ({', '.join(map(str, seen))}): monitor a month it has not seen"
        )
    if champion.validation_rmse is None:
        raise RegistryError(
            f"{model_name} version {champion.version} recorded no validation RMSE: "
            "promote a version trained with a validation month"
        )
    training_month = Month.parse(champion.train_month)
    cache = PreparedCache.of(settings)
    with timed(timings, "ingest", f"{spec.color} {training_month}, {month}"):
        training_file = ingest_month(settings, spec.color, training_month)
        month_file = ingest_month(settings, spec.color, month)
    with timed(timings, "prepare", f"{spec.color} {training_month}, {month}"):
        training = prepare_task(training_file, spec.color, cache)
        current = prepare_task(month_file, spec.color, cache)
    with timed(timings, "check", f"{spec.color} {month}"):
        figures = check_task(current, f"{spec.color} {month}", check_thresholds(settings))
    with timed(timings, "judge", f"version {champion.version}"):
        report = judge_task(settings, spec, champion, training, current, figures)
    with timed(timings, "record"):
        run_id = tracking.log_monitoring(
            settings,
            run_name=f"monitor-{spec.color}-{month}",
            tags={
                "color": spec.color,
                "month": str(month),
                "model_name": model_name,
                "model_version": champion.version,
                "degraded": str(report.degraded).lower(),
            },
            metrics=report.metrics(),
            step=month.year * 100 + month.month,
        )
        create_markdown_artifact(
            key=f"monitor-{spec.color}",
            markdown=_markdown(report),
            description=f"{model_name} version {champion.version} on {month}",
        )
    if report.degraded:
        emit_event(
            event=DEGRADED_EVENT,
            resource={
                "prefect.resource.id": f"taxi-duration.model.{model_name}",
                "prefect.resource.name": model_name,
                "taxi-duration.color": spec.color,
            },
            payload={
                "month": str(month),
                "model_version": champion.version,
                "reasons": list(report.reasons),
            },
        )
        get_run_logger().warning(
            "%s version %s is degraded on %s: %s",
            model_name,
            champion.version,
            month,
            "; ".join(report.reasons),
        )
    return {**report.to_dict(), "color": spec.color, "run_id": run_id, "timings": timings}
