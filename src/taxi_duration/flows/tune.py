"""The ``tune`` flow: a hyperparameter search (the ``search`` subflow), then train the best."""

from __future__ import annotations

from prefect import flow, get_run_logger

from taxi_duration import models, tracking
from taxi_duration import tune as tune_step
from taxi_duration.flows.tasks import FeatureData, features_task
from taxi_duration.flows.train import fit_evaluate_register, load_months, publish, timed
from taxi_duration.request import TrainRequest, check_min_improvement, check_tuning_budget
from taxi_duration.settings import Settings
from taxi_duration.summary import TrainSummary


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
    min_improvement: float = 0.0,
) -> TrainSummary:
    """Search XGBoost parameters on the validation month, then train and register the best."""
    request = TrainRequest.build(
        color, year, month, val_year, val_month, True, train_path, val_path
    )
    check_tuning_budget(trials, timeout, jobs)
    check_min_improvement(min_improvement)
    config = models.training_config("xgboost", "default")
    settings = Settings()
    timings: dict[str, float] = {}
    months = load_months(settings, request, timings)
    with timed(timings, "features"):
        data = features_task(config, months.train, months.val)
    parent_run_id = tracking.start_parent_run(
        settings,
        f"tune-{color}-{request.train_month}",
        {"color": color, "train_month": str(request.train_month), "kind": "tune"},
    )
    try:
        with timed(timings, "tune"):
            result = search(settings, config, data, parent_run_id, trials, timeout, jobs, seed)
        # The trials' seed too, so that the final model is the best trial's model.
        tuned = config.with_xgboost_params({**result.best_params, "seed": seed})
        summary = fit_evaluate_register(
            settings,
            request,
            tuned,
            months,
            data,
            timings,
            run_id=parent_run_id,
            extra_params={"n_trials": result.n_trials, "seed": seed},
            min_improvement=min_improvement,
        )
    except BaseException:
        tracking.end_run(settings, parent_run_id, "FAILED")
        raise
    summary.best_params = result.best_params
    summary.n_trials = result.n_trials
    publish(summary, "tune")
    return summary
