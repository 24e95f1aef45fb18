"""The ``tune`` flow: a hyperparameter search (the ``search`` subflow), then train the best."""

from __future__ import annotations

from prefect import flow, get_run_logger

from taxi_duration import models
from taxi_duration import tune as tune_step
from taxi_duration.flows.progress import timed
from taxi_duration.flows.train import prepare_month_pair, publish, train_and_register
from taxi_duration.settings import Settings
from taxi_duration.specs import TuneSpec
from taxi_duration.summary import TrainSummary
from taxi_duration.tracking import runs


@flow(name="search", log_prints=True)
def search(
    settings: Settings, spec: TuneSpec, data: models.FeatureData, parent_run_id: str
) -> tune_step.TuneResult:
    """The hyperparameter search, each trial a nested MLflow run of ``parent_run_id``."""
    logger = get_run_logger()

    def log_trial(record: tune_step.TrialRecord) -> None:
        metrics = {"rmse": record.rmse} if record.rmse is not None else {}
        if record.rounds is not None:
            metrics["rounds"] = record.rounds
        runs.log_nested_run(
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
        spec.config.booster_params(),
        data,
        n_trials=spec.trials,
        timeout_seconds=spec.timeout,
        jobs=spec.jobs,
        threads=spec.threads or settings.threads,
        seed=spec.seed,
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
def tune(spec: TuneSpec) -> TrainSummary:
    """Search XGBoost parameters on the validation month, then train and register the best."""
    settings = Settings()
    timings: dict[str, float] = {}
    months, data = prepare_month_pair(settings, spec, timings)
    with runs.parent_run(
        settings,
        f"tune-{spec.color}-{spec.train_month}",
        {"color": spec.color, "train_month": str(spec.train_month), "kind": "tune"},
    ) as parent_run_id:
        with timed(timings, "tune", f"{spec.trials} trials"):
            result = search(settings, spec, data, parent_run_id)
        runs.log_parent_results(settings, parent_run_id, {"n_trials": result.n_trials}, {})
        # The trials' seed too, so that the final model is the best trial's model.
        tuned = spec.config.with_xgboost_params({**result.best_params, "seed": spec.seed})
        summary = train_and_register(
            settings, spec, tuned, months, data, timings, parent_run_id=parent_run_id
        )
    summary.best_params = result.best_params
    summary.n_trials = result.n_trials
    publish(settings, summary, "tune")
    return summary
