"""The ``backtest`` flow: train on each month of a range, validate on the next, on Dask.

Each month is ingested and prepared once (one task each), and each (train, validation) pair
is one task that runs the ``train`` flow's own features, train and evaluate steps, for the
chosen model and for the reference preset (the baseline). The tasks run in parallel on a
``DaskTaskRunner``: a local cluster of worker processes, or an existing cluster.
A flow's task runner is fixed when it is decorated, so the ``backtest`` flow (the CLI's and
the ``backtest/manual`` deployment's) runs the ``backtest-pairs`` flow as a subflow with the
spec's runner.
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
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner
from prefect_dask.task_runners import DaskTaskRunner

from taxi_duration import __version__, evaluate, models, prepare
from taxi_duration import backtest as steps
from taxi_duration.cache import PreparedCache
from taxi_duration.cpus import threads_per_job
from taxi_duration.distributed import DEFAULT_WORKERS, import_on_scheduler, local_cluster_kwargs
from taxi_duration.errors import BacktestFailedError
from taxi_duration.flows.progress import progress_line, timed
from taxi_duration.flows.tasks import (
    check_task,
    check_thresholds,
    ingest_arguments,
    ingest_with_settings,
    prepare_task,
)
from taxi_duration.months import Month
from taxi_duration.settings import Settings
from taxi_duration.specs import BacktestSpec
from taxi_duration.tracking import runs


def task_runner(
    workers: int | None = None, address: str | None = None
) -> TaskRunner[PrefectFuture[Any]]:
    """An existing cluster at ``address``, else a local cluster of ``workers`` processes."""
    runner: DaskTaskRunner
    if address is not None:
        runner = DaskTaskRunner(address=address)
        return cast("TaskRunner[PrefectFuture[Any]]", runner)
    runner = DaskTaskRunner(cluster_kwargs=local_cluster_kwargs(workers))
    return cast("TaskRunner[PrefectFuture[Any]]", runner)


def pair_threads(spec: BacktestSpec, settings: Settings) -> int | None:
    """Each pair's XGBoost threads: the threads (given, else available) shared among the
    local cluster's workers; on an existing cluster, only what is given, else XGBoost's own."""
    threads = spec.threads or settings.threads
    if spec.dask_address is not None:
        return threads
    return threads_per_job(threads, spec.workers or DEFAULT_WORKERS)


def executor_label(runner: TaskRunner[Any] | None) -> str:
    """What runs the tasks, as the runner in use says (not as the spec asked)."""
    if isinstance(runner, DaskTaskRunner):
        if runner.address is not None:
            return f"dask cluster at {runner.address}"
        workers = runner.cluster_kwargs.get("n_workers", DEFAULT_WORKERS)
        return f"local dask cluster, {workers} worker processes"
    return type(runner).__name__


def _train_and_score(
    config: models.TrainingConfig,
    train: prepare.PreparedTrips,
    val: prepare.PreparedTrips,
    nthread: int | None,
) -> tuple[dict[str, float], int]:
    """What ``train`` does for a month pair, minus registering: the same steps."""
    data = models.month_pair_features(config, train.frame, val.frame)
    fit = models.fit_estimator(
        config, data.x_train, data.y_train, data.x_val, data.y_val, nthread=nthread
    )
    model = models.TripDurationModel(config, data.preprocessor, fit.estimator)
    return evaluate.model_metrics(model, data), models.n_features(data.x_train)


@task(name="pair", cache_policy=NO_CACHE)  # inputs are large: do not hash them
def pair_task(
    config: models.TrainingConfig,
    baseline: models.TrainingConfig,
    train_month: str,
    val_month: str,
    train: prepare.PreparedTrips,
    val: prepare.PreparedTrips,
    nthread: int | None = None,
) -> steps.PairResult:
    """Train on one month and validate on the next, with the chosen model and the baseline.

    XGBoost runs on ``nthread`` threads: the CPUs shared out among a local cluster's workers.
    """
    start = time.perf_counter()
    metrics, n_features = _train_and_score(config, train, val, nthread)
    baseline_rmse = (
        metrics["rmse"]
        if baseline == config
        else _train_and_score(baseline, train, val, nthread)[0]["rmse"]
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
    if not state.is_final():
        # Never ended, and no state will come: its executor lost it (Dask cancels the
        # futures of a client that lost its scheduler).
        status = getattr(getattr(future, "wrapped_future", None), "status", "unknown")
        return f"the pair's task was lost by the cluster before it ended (Dask: {status})"
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
    submitted = time.perf_counter()
    for (train, val), future in zip(pairs, futures, strict=True):
        future.wait()
        if future.state.is_completed():
            result = future.result()
            progress_line("pair %s -> %s %.1f s", train, val, result.seconds or 0.0)
            results.append(result)
            continue
        culprit = future
        for step in [*month_steps[train], *month_steps[val]]:
            step.wait()
            if step.state.is_failed() or step.state.is_crashed():
                culprit = step
                break
        waited = time.perf_counter() - submitted
        progress_line("pair %s -> %s failed after %.1f s", train, val, waited)
        results.append(steps.PairResult(str(train), str(val), error=_error_of(culprit)))
    return results


def _track(settings: Settings, summary: steps.BacktestSummary, skip_checks: bool) -> None:
    """One parent run, a nested run per pair, the chart as the parent's artifact."""
    with runs.parent_run(
        settings,
        f"backtest-{summary.color}-{summary.start}-{summary.end}",
        {
            "kind": "backtest",
            "color": summary.color,
            "start": summary.start,
            "end": summary.end,
            "taxi_duration_version": __version__,
            runs.SKIP_CHECKS_TAG: str(skip_checks).lower(),
        },
    ) as run_id:
        summary.run_id, summary.tracking_uri = run_id, settings.tracking_uri
        for result in summary.results:
            runs.log_nested_run(
                settings,
                run_id,
                f"{result.train}-{result.val}",
                steps.pair_params(summary, result),
                steps.pair_metrics(result),
                status="FINISHED" if result.ok else "FAILED",
            )
        with tempfile.TemporaryDirectory(prefix="taxi-duration-") as work_dir:
            chart = steps.rmse_chart(summary, Path(work_dir) / "backtest_rmse.png")
            runs.log_parent_results(
                settings, run_id, summary.params(), summary.overall_metrics(), chart
            )
        summary.chart = chart.name
        runs.end_run(settings, run_id, "FAILED" if summary.failed else "FINISHED")


@flow(name="backtest-pairs", log_prints=True)
def backtest_pairs(spec: BacktestSpec) -> steps.BacktestSummary:
    """Train on each month of the spec's range and validate on the next, in parallel on the
    flow's task runner (see ``backtest``, which sets it).

    Raises ``BacktestFailedError`` (the run fails) if any pair failed; its ``summary`` still
    holds every pair's result.
    """
    begun = time.perf_counter()
    first, last, color = spec.first_month, spec.last_month, spec.color
    config = spec.config
    baseline = models.training_config(preset=steps.BASELINE_PRESET)
    settings = Settings()
    ingest = ingest_with_settings(settings)
    thresholds = check_thresholds(settings)
    context = FlowRunContext.get()
    if context is not None and isinstance(context.task_runner, DaskTaskRunner):
        import_on_scheduler(context.task_runner.client, __name__)  # every task's module below
    prepared: dict[Month, PrefectFuture[prepare.PreparedTrips]] = {}
    month_steps: dict[Month, list[PrefectFuture[Any]]] = {}
    for month in steps.months_between(first, last):
        path = ingest.with_options(task_run_name=f"ingest-{color}-{month}").submit(
            *ingest_arguments(settings, color, month)
        )
        prepared[month] = prepare_task.with_options(
            task_run_name=f"prepare-{color}-{month}"
        ).submit(path, color, PreparedCache.of(settings), return_state=False)
        # The train flow's checks: a month that fails them fails the pairs it is in.
        checked = check_task.with_options(task_run_name=f"check-{color}-{month}").submit(
            prepared[month], f"{color} {month}", thresholds, spec.skip_checks, return_state=False
        )
        month_steps[month] = [path, prepared[month], checked]
    pairs = steps.month_pairs(first, last)
    futures = [
        pair_task.with_options(task_run_name=f"pair-{train}-{val}").submit(
            config,
            baseline,
            str(train),
            str(val),
            prepared[train],
            prepared[val],
            pair_threads(spec, settings),
            return_state=False,
            wait_for=[month_steps[train][-1], month_steps[val][-1]],
        )
        for train, val in pairs
    ]
    executor = executor_label(None if context is None else context.task_runner)
    with timed({}, "pairs", f"{len(pairs)} on {executor}"):
        results = _collect(pairs, futures, month_steps)
    summary = steps.BacktestSummary(
        color=color,
        start=str(first),
        end=str(last),
        model=config.model,
        features=config.features,
        preset=config.preset,
        baseline=steps.BASELINE_PRESET,
        results=results,
        executor=executor,
    )
    with timed({}, "track", "in MLflow"):
        _track(settings, summary, spec.skip_checks)
    summary.seconds = round(time.perf_counter() - begun, 3)
    create_table_artifact(
        key="backtest-results",
        table=summary.table(),
        description=f"Backtest on {color} {first}..{last} ({executor})",
    )
    if summary.failed:
        message = steps.failure_message(summary)
        get_run_logger().error(message)
        raise BacktestFailedError(message, summary)
    return summary


@flow(name="backtest", log_prints=True)
def backtest(spec: BacktestSpec) -> steps.BacktestSummary:
    """The backtest on the spec's Dask cluster: ``workers`` local processes, or the existing
    cluster at ``dask_address``.

    Raises ``BacktestFailedError`` (with every pair's result) if any pair failed.
    """
    runner = task_runner(spec.workers, spec.dask_address)
    return backtest_pairs.with_options(task_runner=runner)(spec)
