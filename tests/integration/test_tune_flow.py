"""The tune flow: a seeded search, trials as nested MLflow runs, the best model registered."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from taxi_duration.flows.tune import tune
from taxi_duration.models import DEFAULT_XGBOOST
from taxi_duration.specs import TuneSpec

pytestmark = pytest.mark.slow


def test_tune_logs_each_trial_under_one_parent_and_registers_the_best(
    prefect_api: None, registry: MlflowClient
) -> None:
    summary = tune(TuneSpec.parse(year=2023, month=1, trials=4, seed=7))

    assert summary.n_trials == 4
    assert summary.best_params is not None
    assert {"max_depth", "learning_rate"} <= summary.best_params.keys()
    version = registry.get_model_version("nyc-taxi-duration-green", summary.model_version)
    assert version.run_id == summary.run_id

    parent = registry.get_run(summary.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["max_depth"] == str(summary.best_params["max_depth"])
    assert parent.data.params["n_trials"] == "4"
    children = registry.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{summary.run_id}'",
    )
    assert len(children) == 4
    # The search starts from the default configuration, so it never returns worse.
    first = next(run for run in children if run.info.run_name == "trial-0")
    assert first.data.params["max_depth"] == str(DEFAULT_XGBOOST.params["max_depth"])
    assert (
        float(first.data.params["min_child_weight"]) == DEFAULT_XGBOOST.params["min_child_weight"]
    )
    finished = [run for run in children if run.info.status == "FINISHED"]
    best_trial_rmse = min(run.data.metrics["rmse"] for run in finished)
    assert summary.rmse == pytest.approx(best_trial_rmse, rel=1e-6)


def test_the_same_seed_gives_the_same_search(prefect_api: None, registry: MlflowClient) -> None:
    first = tune(TuneSpec.parse(year=2023, month=1, trials=3, seed=11))
    second = tune(TuneSpec.parse(year=2023, month=1, trials=3, seed=11))
    assert first.best_params == second.best_params
    assert first.rmse == pytest.approx(second.rmse)


def test_tune_rejects_a_search_without_trials(prefect_api: None, registry: MlflowClient) -> None:
    """Parameters given as a deployment gives them (JSON) are checked by the same spec."""
    from taxi_duration.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="trials 0"):
        tune({"year": 2023, "month": 1, "trials": 0})  # type: ignore[arg-type]


def test_two_jobs_run_every_trial_and_weak_trials_are_pruned(
    prefect_api: None, registry: MlflowClient
) -> None:
    """``--jobs 2`` through the flow: every trial a nested run, numbered once each; the
    median pruner stops trials worse than the others' median early (recorded KILLED, without
    the rounds a completed trial keeps), and the best is one that completed."""
    summary = tune(TuneSpec.parse(year=2023, month=1, trials=16, seed=3, jobs=2))
    assert summary.n_trials == 16
    parent = registry.get_run(summary.run_id)
    children = registry.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{summary.run_id}'",
    )
    assert sorted(run.info.run_name for run in children) == sorted(
        f"trial-{number}" for number in range(16)
    )
    pruned = [run for run in children if run.info.status == "KILLED"]
    finished = [run for run in children if run.info.status == "FINISHED"]
    assert pruned, "no trial was pruned"
    assert len(pruned) + len(finished) == 16
    # A pruned trial stopped before its best round was known: no rounds kept.
    assert all("rounds" not in run.data.metrics for run in pruned)
    assert all("rounds" in run.data.metrics for run in finished)
    assert summary.rmse == pytest.approx(min(run.data.metrics["rmse"] for run in finished))
