"""The ``backtest`` flow: train on each month of a range, validate on the next, on Dask.

Each month is ingested and prepared once (one task each), and each (train, validation) pair
is one task that runs the ``train`` flow's own features, train and evaluate steps, for the
chosen model and for the reference preset (the baseline). The tasks run in parallel on a
``DaskTaskRunner``: a local cluster of worker processes, or an existing cluster.
Nothing is registered: a backtest logs one MLflow parent run, a nested run per pair, and a
chart of RMSE by month, and never touches the model registry or the champion.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, cast

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner
from prefect_dask.task_runners import DaskTaskRunner

from taxi_duration import __version__, models, prepare, tracking
from taxi_duration import backtest as steps
from taxi_duration.errors import InvalidInputError
from taxi_duration.flows.tasks import (
    evaluate_task,
    features_task,
    ingest_with_settings,
    prepare_task,
    train_task,
)
from taxi_duration.ingest import check_color_and_month
from taxi_duration.months import Month
from taxi_duration.settings import Settings

DEFAULT_WORKERS = 2


def task_runner(
    workers: int | None = None, address: str | None = None
) -> TaskRunner[PrefectFuture[Any]]:
    """An existing cluster at ``address``, else a local cluster of ``workers`` processes."""
    runner: DaskTaskRunner
    if address is not None:
        runner = DaskTaskRunner(address=address)
        return cast("TaskRunner[PrefectFuture[Any]]", runner)
    runner = DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers or DEFAULT_WORKERS,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": ":0",  # any free port: never clash with a running cluster
        }
    )
    return cast("TaskRunner[PrefectFuture[Any]]", runner)


def executor_label(workers: int | None = None, address: str | None = None) -> str:
    if address is not None:
        return f"dask cluster at {address}"
    return f"local dask cluster, {workers or DEFAULT_WORKERS} worker processes"


def _train_and_score(
    config: models.TrainingConfig, train: prepare.PreparedTrips, val: prepare.PreparedTrips
) -> tuple[dict[str, float], int]:
    """What ``train`` does for a month pair, minus registering: the same steps, same code."""
    data = features_task.fn(config, train, val)
    fit = train_task.fn(config, data)
    model = models.TripDurationModel(config, data.preprocessor, fit.estimator)
    return evaluate_task.fn(model, data), models.n_features(data.x_train)


@task(name="pair", cache_policy=NO_CACHE)  # inputs are large: do not hash them
def pair_task(
    config: models.TrainingConfig,
    baseline: models.TrainingConfig,
    train_month: str,
    val_month: str,
    train: prepare.PreparedTrips,
    val: prepare.PreparedTrips,
) -> steps.PairResult:
    """Train on one month and validate on the next, with the chosen model and the baseline."""
    start = time.perf_counter()
    metrics, n_features = _train_and_score(config, train, val)
    baseline_rmse = (
        metrics["rmse"] if baseline == config else _train_and_score(baseline, train, val)[0]["rmse"]
    )
    result = steps.PairResult(
        train=train_month,
        val=val_month,
        rows=train.rows_kept,
        val_rows=val.rows_kept,
        rmse=metrics["rmse"],
        baseline_rmse=baseline_rmse,
        rmse_train=metrics["rmse_train"],
        mae=metrics["mae"],
        n_features=n_features,
        seconds=round(time.perf_counter() - start, 3),
    )
    get_run_logger().info(
        "%s -> %s: rmse %.4f, baseline %.4f", train_month, val_month, result.rmse, baseline_rmse
    )
    return result


def _error_of(future: PrefectFuture[Any]) -> str:
    state = future.state
    try:
        exception = state.result(raise_on_failure=False)
    except Exception as error:  # the result could not be read back
        exception = error
    if isinstance(exception, BaseException):
        return str(exception) or type(exception).__name__
    return state.message or f"the pair's task ended {state.name}"


def _collect(
    pairs: list[tuple[Month, Month]],
    futures: list[PrefectFuture[steps.PairResult]],
    month_steps: dict[Month, list[PrefectFuture[Any]]],
) -> list[steps.PairResult]:
    """Each pair's result, or its reason: the first failed step of its months, else its own.

    A pair whose month failed is not run (Prefect leaves it ``NotReady``); the month's error
    (e.g. not published) is the pair's reason.
    """
    results = []
    for (train, val), future in zip(pairs, futures, strict=True):
        future.wait()
        if future.state.is_completed():
            results.append(future.result())
            continue
        culprit = future
        for step in [*month_steps[train], *month_steps[val]]:
            step.wait()
            if step.state.is_failed() or step.state.is_crashed():
                culprit = step
                break
        results.append(steps.PairResult(str(train), str(val), error=_error_of(culprit)))
    return results


def _track(settings: Settings, summary: steps.BacktestSummary) -> None:
    """One parent run, a nested run per pair, the chart as the parent's artifact."""
    run_id = tracking.start_parent_run(
        settings,
        f"backtest-{summary.color}-{summary.start}-{summary.end}",
        {
            "kind": "backtest",
            "color": summary.color,
            "start": summary.start,
            "end": summary.end,
            "taxi_duration_version": __version__,
        },
    )
    summary.run_id, summary.tracking_uri = run_id, settings.tracking_uri
    try:
        for result in summary.results:
            metrics = {
                key: float(value)
                for key, value in (
                    ("rmse", result.rmse),
                    ("baseline_rmse", result.baseline_rmse),
                    ("rmse_train", result.rmse_train),
                    ("mae", result.mae),
                    ("rows_kept", result.rows),
                    ("val_rows", result.val_rows),
                    ("n_features", result.n_features),
                )
                if value is not None
            }
            params: dict[str, Any] = {
                "color": summary.color,
                "train_month": result.train,
                "val_month": result.val,
                "model": summary.model,
                "features": summary.features,
                "baseline": summary.baseline,
            }
            if result.error:
                params["error"] = result.error[:500]
            tracking.log_nested_run(
                settings,
                run_id,
                f"{result.train}-{result.val}",
                params,
                metrics,
                status="FINISHED" if result.ok else "FAILED",
            )
        done = [result.rmse for result in summary.results if result.rmse is not None]
        overall = {"pairs": float(len(summary.results)), "failed": float(len(summary.failed))}
        if done:
            overall["mean_rmse"] = sum(done) / len(done)
        with tempfile.TemporaryDirectory(prefix="taxi-duration-") as work_dir:
            chart = steps.rmse_chart(summary, Path(work_dir) / "backtest_rmse.png")
            tracking.log_parent_results(
                settings,
                run_id,
                {
                    "color": summary.color,
                    "start": summary.start,
                    "end": summary.end,
                    "model": summary.model,
                    "features": summary.features,
                    "preset": summary.preset or "",
                    "baseline": summary.baseline,
                    "executor": summary.executor,
                },
                overall,
                chart,
            )
        summary.chart = chart.name
    except BaseException:
        tracking.end_run(settings, run_id, "FAILED")
        raise
    tracking.end_run(settings, run_id, "FAILED" if summary.failed else "FINISHED")


@flow(name="backtest", log_prints=True, task_runner=task_runner())
def backtest_flow(
    color: str = "green",
    start: str = "2023-01",
    end: str = "2023-03",
    model: str | None = None,
    features: str | None = None,
    preset: str | None = None,
    executor: str = "",
) -> steps.BacktestSummary:
    """Train on each month of ``start``..``end`` and validate on the next, in parallel.

    Raises ``BacktestFailedError`` (the run fails) if any pair failed; its ``summary`` still
    holds every pair's result.
    """
    begun = time.perf_counter()
    first, last = steps.month_range(start, end)
    for month in (first, last):
        check_color_and_month(color, month)
    config = models.training_config(model, features, preset)
    baseline = models.training_config(preset=steps.BASELINE_PRESET)
    settings = Settings()
    logger = get_run_logger()

    ingest = ingest_with_settings(settings)
    prepared: dict[Month, PrefectFuture[prepare.PreparedTrips]] = {}
    month_steps: dict[Month, list[PrefectFuture[Any]]] = {}
    for month in steps.months_between(first, last):
        path = ingest.with_options(task_run_name=f"ingest-{color}-{month}").submit(
            color,
            str(month),
            settings.data_url,
            str(settings.data_dir),
            settings.download_timeout_seconds,
        )
        prepared[month] = prepare_task.with_options(
            task_run_name=f"prepare-{color}-{month}"
        ).submit(path, color, return_state=False)
        month_steps[month] = [path, prepared[month]]
    pairs = steps.month_pairs(first, last)
    futures = [
        pair_task.with_options(task_run_name=f"pair-{train}-{val}").submit(
            config,
            baseline,
            str(train),
            str(val),
            prepared[train],
            prepared[val],
            return_state=False,
        )
        for train, val in pairs
    ]
    summary = steps.BacktestSummary(
        color=color,
        start=str(first),
        end=str(last),
        model=config.model,
        features=config.features,
        preset=config.preset,
        baseline=steps.BASELINE_PRESET,
        results=_collect(pairs, futures, month_steps),
        executor=executor,
    )
    _track(settings, summary)
    summary.seconds = round(time.perf_counter() - begun, 3)
    create_table_artifact(
        key="backtest-results",
        table=summary.table(),
        description=f"Backtest on {color} {first}..{last} ({executor or 'dask'})",
    )
    if summary.failed:
        message = steps.failure_message(summary)
        logger.error(message)
        raise steps.BacktestFailedError(message, summary)
    return summary


def backtest(
    color: str = "green",
    start: str = "2023-01",
    end: str = "2023-03",
    model: str | None = None,
    features: str | None = None,
    preset: str | None = None,
    workers: int | None = None,
    dask_address: str | None = None,
) -> steps.BacktestSummary:
    """Run ``backtest_flow`` on a local cluster of ``workers`` or the cluster at ``dask_address``.

    Raises ``BacktestFailedError`` (with every pair's result) if any pair failed.
    """
    if workers is not None and dask_address is not None:
        raise InvalidInputError("give --workers or --dask-address, not both")
    if workers is not None and workers < 1:
        raise InvalidInputError(f"workers {workers} is out of range: at least 1")
    steps.month_range(start, end)
    models.training_config(model, features, preset)
    flow_with_runner = backtest_flow.with_options(task_runner=task_runner(workers, dask_address))
    return flow_with_runner(
        color=color,
        start=start,
        end=end,
        model=model,
        features=features,
        preset=preset,
        executor=executor_label(workers, dask_address),
    )
