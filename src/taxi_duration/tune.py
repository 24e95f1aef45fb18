"""Tune: a hyperparameter search for the XGBoost model.

Optuna's TPE sampler proposes booster parameters; each trial trains on the training month
and is scored, and pruned early, on the validation month's RMSE (at the round it keeps: a
base that stops on a slice of the training month stops each trial there too). Seeded: with
one job the same data gives the same trials. With several jobs, trials run in threads
(XGBoost releases the GIL) that share the machine's cores, and their order, hence the
result, may vary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import xgboost as xgb

from taxi_duration.cpus import threads_per_job
from taxi_duration.errors import InvalidInputError, TuningError
from taxi_duration.models import FeatureData, FitResult, XGBoostParams, dmatrix, train_booster

# A trial whose validation RMSE is worse than the median of earlier trials at the same
# round, after a few warm-up rounds, is stopped.
_PRUNER_WARMUP_ROUNDS = 10
_PRUNER_STARTUP_TRIALS = 5


@dataclass(frozen=True)
class TrialRecord:
    """One trial: its parameters and how it ended."""

    number: int
    params: dict[str, Any]
    state: str  # COMPLETE, PRUNED or FAIL
    rmse: float | None
    rounds: int | None


@dataclass(frozen=True)
class TuneResult:
    best_params: dict[str, Any]
    best_rmse: float
    n_trials: int
    trials: list[TrialRecord]


def suggest_params(trial: optuna.Trial) -> dict[str, Any]:
    """The search space: tree shape, learning rate, sampling and regularisation."""
    return {
        "max_depth": trial.suggest_int("max_depth", 4, 14),
        "learning_rate": trial.suggest_float("learning_rate", 0.03, 0.3, log=True),
        "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 100.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.6, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.6, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
        # Linear from 0, XGBoost's default, so that the starting point is in the space.
        "reg_alpha": trial.suggest_float("reg_alpha", 0.0, 10.0),
    }


# XGBoost's own defaults, for the searched parameters the base configuration leaves unset.
_XGBOOST_DEFAULTS = {
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "reg_lambda": 1.0,
    "reg_alpha": 0.0,
}


def starting_point(base: XGBoostParams) -> dict[str, Any]:
    """The base configuration in the search space's terms."""
    names = ("max_depth", "learning_rate", "min_child_weight", *_XGBOOST_DEFAULTS)
    return {name: base.params.get(name, _XGBOOST_DEFAULTS.get(name)) for name in names}


class _PruneOnValidation(xgb.callback.TrainingCallback):
    """Report each round's validation RMSE to the trial; stop the trial if it is pruned."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        self.trial.report(float(evals_log["validation"]["rmse"][-1]), epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned()
        return False


def tune_xgboost(
    base: XGBoostParams,
    data: FeatureData,
    *,
    n_trials: int,
    timeout_seconds: float | None = None,
    jobs: int = 1,
    threads: int | None = None,
    seed: int = 42,
    on_trial: Callable[[TrialRecord], None] | None = None,
) -> TuneResult:
    """Search booster parameters around ``base``; the best has the lowest validation RMSE.

    ``jobs`` trials run at once, sharing ``threads`` (default: the CPUs available) evenly.
    """
    if data.x_val is None or data.y_val is None:
        raise InvalidInputError("tuning needs a validation month to score the trials on")
    dtrain, dval = dmatrix(data.x_train, data.y_train), dmatrix(data.x_val, data.y_val)
    threads_per_trial = threads_per_job(threads, jobs)

    def objective(trial: optuna.Trial) -> float:
        booster_params = XGBoostParams(
            params={**base.params, **suggest_params(trial), "seed": seed},
            num_boost_round=base.num_boost_round,
            early_stopping_rounds=base.early_stopping_rounds,
            rounds_without_validation=base.rounds_without_validation,
            holdout_fraction=base.holdout_fraction,
        )
        fit: FitResult = train_booster(
            booster_params, dtrain, dval, [_PruneOnValidation(trial)], nthread=threads_per_trial
        )
        # Early stopping (on the validation month or a holdout) always sets the best round.
        best = fit.best_iteration if fit.best_iteration is not None else 0
        trial.set_user_attr("rounds", best + 1)
        # At the round kept: the validation month's best only where it is what stopped.
        return fit.history["boosting_validation_rmse"][best]

    def record(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(_record(trial))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=_PRUNER_STARTUP_TRIALS, n_warmup_steps=_PRUNER_WARMUP_ROUNDS
        ),
    )
    # The first trial is the base configuration, so the search never returns worse.
    study.enqueue_trial(starting_point(base), skip_if_exists=True)
    study.optimize(
        objective, n_trials=n_trials, timeout=timeout_seconds, n_jobs=jobs, callbacks=[record]
    )
    trials = [_record(trial) for trial in study.trials]
    completed = [t for t in trials if t.state == "COMPLETE"]
    if not completed:
        raise TuningError(f"no tuning trial completed out of {len(trials)}")
    return TuneResult(
        best_params=dict(study.best_params),
        best_rmse=float(study.best_value),
        n_trials=len(trials),
        trials=trials,
    )


def _record(trial: optuna.trial.FrozenTrial) -> TrialRecord:
    rounds = trial.user_attrs.get("rounds")
    return TrialRecord(
        number=trial.number,
        params=dict(trial.params),
        state=trial.state.name,
        rmse=float(trial.value) if trial.value is not None else None,
        rounds=int(rounds) if rounds is not None else None,
    )
