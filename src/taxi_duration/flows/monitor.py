"""The ``monitor`` flow: the color's champion judged on a published month it has not seen.

The champion, its training month and the new month come from the registry and the data
server (downloaded and prepared once, cached as for training); the new month passes the data
checks; ``monitor.judge`` measures the RMSE and the drift. The result is logged to MLflow
(``<experiment>-monitor``, the month as the metrics' step), shown as a markdown artifact, and
a degraded month emits ``taxi-duration.model.degraded`` for automations to act on.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from taxi_duration import checks, prepare
from taxi_duration import monitor as monitor_step
from taxi_duration.alerts import DEGRADED_EVENT
from taxi_duration.cache import PreparedCache
from taxi_duration.errors import InvalidInputError, MonthNotPublishedError, RegistryError
from taxi_duration.flows.progress import timed
from taxi_duration.flows.tasks import check_task, check_thresholds, ingest_month, prepare_task
from taxi_duration.months import Month
from taxi_duration.settings import Settings
from taxi_duration.specs import MonitorSpec
from taxi_duration.tracking import monitoring, registry

_NEWEST_MONTH = MonitorSpec()  # a spec without a month: a scheduled run chooses it


def champion_months(champion: registry.ChampionRecord) -> list[Month]:
    """The months the champion saw: its training window and its validation month."""
    window = [Month.parse(champion.train_month)]
    while len(window) < champion.window:
        window.insert(0, window[0].previous())
    return window + ([Month.parse(champion.val_month)] if champion.val_month else [])


def scheduled_month(settings: Settings, color: str) -> Month:
    """The month a scheduled run judges: the newest published one at its scheduled date (the
    month before it, falling back while it is not published), as ``train`` validates on."""
    from prefect.runtime import flow_run as current_run

    from taxi_duration.schedule import months_for_run

    chosen = months_for_run(
        current_run.scheduled_start_time,
        color,
        settings.data_url,
        timeout=settings.download_timeout_seconds,
    )
    get_run_logger().info("scheduled month: %s", chosen.val)
    return chosen.val


@task(name="judge", cache_policy=NO_CACHE)
def judge_task(
    settings: Settings,
    spec: MonitorSpec,
    champion: registry.ChampionRecord,
    month: Month,
    training: prepare.PreparedTrips,
    current: prepare.PreparedTrips,
    figures: checks.MonthFigures,
) -> monitor_step.MonitorReport:
    assert champion.validation_rmse is not None
    model = registry.version_model(settings, champion.version, spec.color)
    report = monitor_step.judge(
        month=f"{spec.color} {month}",
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


def _champion(settings: Settings, color: str) -> registry.ChampionRecord:
    """The color's champion, with the validation RMSE it is judged against."""
    champion = registry.champion_record(settings, color)
    model_name = settings.registered_model(color)
    if champion is None:
        raise RegistryError(f"{model_name} has no champion yet: train one before monitoring")
    if champion.validation_rmse is None:
        raise RegistryError(
            f"{model_name} version {champion.version} recorded no validation RMSE: "
            "promote a version trained with a validation month"
        )
    return champion


def judge_month(
    settings: Settings,
    spec: MonitorSpec,
    champion: registry.ChampionRecord,
    month: Month,
    timings: dict[str, float],
) -> tuple[monitor_step.MonitorReport, str]:
    """One month: downloaded, prepared, checked and judged (the training month beside it),
    logged to MLflow (the run's id returned) and shown as an artifact."""
    model_name = settings.registered_model(spec.color)
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
        report = judge_task(settings, spec, champion, month, training, current, figures)
    with timed(timings, "record"):
        run_id = monitoring.log_monitoring(
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
    return report, run_id


def emit_degraded(
    model_name: str, color: str, report: monitor_step.MonitorReport, month: Month
) -> None:
    """``taxi-duration.model.degraded``, with the pair to retrain on for the automation that
    does (prefect.yaml): the newest published months, the month before and this one."""
    emit_event(
        event=DEGRADED_EVENT,
        resource={
            "prefect.resource.id": f"taxi-duration.model.{model_name}",
            "prefect.resource.name": model_name,
            "taxi-duration.color": color,
        },
        payload={
            "month": str(month),
            "model_version": report.model_version,
            "reasons": list(report.reasons),
            "retrain": {
                "year": month.previous().year,
                "month": month.previous().month,
                "val_year": month.year,
                "val_month": month.month,
            },
        },
    )
    get_run_logger().warning(
        "%s version %s is degraded on %s: %s",
        model_name,
        report.model_version,
        month,
        "; ".join(report.reasons),
    )


@flow(name="monitor", log_prints=True)
def monitor(spec: MonitorSpec = _NEWEST_MONTH) -> dict[str, Any]:
    """Judge the color's champion on a month it was neither trained nor validated on, or
    on each month of a range (the decay curve)."""
    settings = Settings()
    # The champion first: without one, or on one of its own months, fail before downloading.
    champion = _champion(settings, spec.color)
    seen = champion_months(champion)
    months = spec.monitored_range()
    if months is not None:
        return _monitor_range(settings, spec, champion, months)
    timings: dict[str, float] = {}
    month = spec.monitored_month or scheduled_month(settings, spec.color)
    if month in seen:
        raise InvalidInputError(
            f"{spec.color} {month}: the champion (version {champion.version}) was trained or "
            f"validated on it ({', '.join(map(str, seen))}): monitor a month it has not seen"
        )
    report, run_id = judge_month(settings, spec, champion, month, timings)
    if report.degraded:
        emit_degraded(settings.registered_model(spec.color), spec.color, report, month)
    return {**report.to_dict(), "color": spec.color, "run_id": run_id, "timings": timings}


def _monitor_range(
    settings: Settings,
    spec: MonitorSpec,
    champion: registry.ChampionRecord,
    months: list[Month],
) -> dict[str, Any]:
    """Each month of the range judged as one month is, but the champion's own months and
    those not published, which are listed as skipped. No event: a range looks back."""
    seen = champion_months(champion)
    results: list[dict[str, Any]] = []
    judged: list[tuple[str, float]] = []
    for month in months:
        if month in seen:
            results.append({"month": str(month), "skipped": "trained or validated on it"})
            continue
        try:
            report, run_id = judge_month(settings, spec, champion, month, {})
        except MonthNotPublishedError:
            results.append({"month": str(month), "skipped": "not published"})
            continue
        judged.append((str(month), report.rmse))
        results.append({**report.to_dict(), "month": str(month), "run_id": run_id})
    assert champion.validation_rmse is not None
    model_name = settings.registered_model(spec.color)
    title = f"{model_name} version {champion.version}, {months[0]}..{months[-1]}"
    with tempfile.TemporaryDirectory(prefix="taxi-duration-") as work_dir:
        chart = monitor_step.decay_chart(
            [month for month, _ in judged],
            [rmse for _, rmse in judged],
            champion.validation_rmse,
            spec.max_degradation,
            title,
            Path(work_dir) / "decay.png",
        )
        run_id = monitoring.log_monitoring(
            settings,
            run_name=f"monitor-{spec.color}-{months[0]}..{months[-1]}",
            tags={"color": spec.color, "model_name": model_name, "model_version": champion.version},
            metrics={},
            step=0,
            artifact=chart,
        )
    create_table_artifact(
        key=f"monitor-{spec.color}-range",
        table=[
            {
                "month": result["month"],
                "rmse": round(result["rmse"], 4) if "rmse" in result else None,
                "degradation": round(result["degradation"], 4) if "rmse" in result else None,
                "drifted share": result.get("drifted_share"),
                "degraded": result.get("degraded", result.get("skipped")),
            }
            for result in results
        ],
        description=f"{title}: validation RMSE {champion.validation_rmse:.4f}; the decay chart "
        f"is run {run_id}'s charts/decay.png in MLflow",
    )
    return {
        "color": spec.color,
        "model_version": champion.version,
        "validation_rmse": champion.validation_rmse,
        "months": results,
        "chart_run_id": run_id,
    }
