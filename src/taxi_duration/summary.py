"""What a training run did: the record logged to MLflow, and the summary printed by the CLI,
given as JSON and shown as a Prefect artifact."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from taxi_duration import __version__
from taxi_duration.models import FitResult, TrainingConfig
from taxi_duration.months import Month
from taxi_duration.prepare import raw_example
from taxi_duration.promote import PromotionDecision

if TYPE_CHECKING:
    from taxi_duration.models import TripDurationModel


@dataclass(frozen=True)
class MonthData:
    """A month a run trained or validated on: where it came from and the file it read."""

    context: str  # "training" or "validation"
    name: str  # e.g. green_tripdata_2023-01
    source: str  # the URL it was downloaded from, or the local file given
    path: Path
    rows: int  # rows in the file


@dataclass(frozen=True)
class RunRecord:
    """What a training run logs: its name, parameters, metrics, tags, learning curve, and an
    input example for the model's signature; ``run_id`` to log into a started run."""

    run_name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    history: dict[str, list[float]] = field(default_factory=dict)
    input_example: pd.DataFrame | None = None
    run_id: str | None = None
    datasets: tuple[MonthData, ...] = ()
    charts: dict[str, bytes] = field(default_factory=dict)  # PNG files, by name

    def description(self) -> str:
        """A model version's description: its months, rows and validation RMSE."""
        months = "; ".join(
            f"{data.context} {data.name} ({int(data.rows):,} rows)" for data in self.datasets
        )
        rmse = self.metrics.get("rmse")
        scored = f"validation RMSE {rmse:.4f} min" if rmse is not None else "no validation month"
        return (
            f"{self.run_name}: {months}; {int(self.metrics['rows_kept']):,} trips kept; {scored}."
        )


@dataclass(frozen=True)
class RegisteredModel:
    """Where a training run's model ended up (no name or version: logged, not registered)."""

    run_id: str
    model_name: str | None
    model_version: str | None
    model_uri: str
    model_size_bytes: int | None
    # An identical version was registered already: this is it; no version or alias changed.
    reused: bool = False


class Trips(Protocol):
    """What a record needs of a month's trips: counts, and rows for the input example."""

    @property
    def frame(self) -> pd.DataFrame: ...
    @property
    def rows_loaded(self) -> int: ...
    @property
    def rows_kept(self) -> int: ...


def run_record(
    config: TrainingConfig,
    color: str,
    months: tuple[Sequence[Month], Month | None],
    trips: tuple[Trips, Trips | None],
    fit: FitResult,
    metrics: dict[str, float],
    n_features: int,
) -> RunRecord:
    """The record of a run that trained ``config`` on ``trips`` of ``months`` (the training
    window, oldest first, and the validation month)."""
    window, val_month = months[0], str(months[1] or "none")
    train_month = str(window[-1])
    trained_on = train_month if len(window) == 1 else f"{window[0]}..{train_month}"
    train, val = trips
    counts = {"rows_loaded": train.rows_loaded, "rows_kept": train.rows_kept}
    if val is not None:
        counts.update(val_rows_loaded=val.rows_loaded, val_rows=val.rows_kept)
    logged = {**metrics, **{key: float(value) for key, value in counts.items()}}
    if fit.best_iteration is not None:
        logged["best_iteration"] = fit.best_iteration
    tags = {
        "color": color,
        "train_month": train_month,
        "window": str(len(window)),
        "val_month": val_month,
    }
    return RunRecord(
        run_name=f"{config.preset or config.model}-{config.features}-{color}-{trained_on}",
        params={**config.params(), **tags, "n_features": n_features},
        metrics=logged,
        tags={**tags, "taxi_duration_version": __version__},
        history=fit.history,
        input_example=raw_example(train.frame, color),
    )


@dataclass
class TrainSummary:
    """What a training run did; the CLI prints it, ``--json`` gives it as one object."""

    color: str
    train_month: str
    val_month: str | None
    model: str
    features: str
    preset: str | None
    rows_loaded: int
    rows_kept: int
    val_rows_loaded: int | None
    val_rows: int | None
    n_features: int
    rmse: float | None
    mae: float | None
    rmse_train: float
    intercept: float | None
    best_iteration: int | None
    run_id: str
    model_name: str | None  # None: logged, not registered
    model_version: str | None
    model_uri: str
    model_size_bytes: int | None
    tracking_uri: str
    timings: dict[str, float]
    promoted: bool = False
    # model_version is an identical version registered before: nothing new was registered.
    reused: bool = False
    champion_version: str | None = None  # the champion after this run
    champion_rmse: float | None = None  # the previous champion's, on this validation month
    promotion_reason: str = ""
    best_params: dict[str, Any] | None = None  # tune only
    n_trials: int | None = None  # tune only
    window: int = 1  # the training months, ending at train_month

    @property
    def trained_on(self) -> str:
        """``2023-01``, or ``3 months ending 2023-03`` for a window."""
        if self.window == 1:
            return self.train_month
        return f"{self.window} months ending {self.train_month}"

    @classmethod
    def of_run(
        cls,
        record: RunRecord,
        model: TripDurationModel,
        fit: FitResult,
        registered: RegisteredModel,
        decision: PromotionDecision | None,
        tracking_uri: str,
        timings: dict[str, float],
    ) -> TrainSummary:
        """The summary of a run that logged ``record`` and registered ``model``."""
        metrics, val_month = record.metrics, record.tags["val_month"]

        def count(name: str) -> int | None:
            return int(metrics[name]) if name in metrics else None

        config = model.config
        return cls(
            color=record.tags["color"],
            train_month=record.tags["train_month"],
            window=int(record.tags.get("window", "1")),
            val_month=None if val_month == "none" else val_month,
            model=config.model,
            features=config.features,
            preset=config.preset,
            rows_loaded=int(metrics["rows_loaded"]),
            rows_kept=int(metrics["rows_kept"]),
            val_rows_loaded=count("val_rows_loaded"),
            val_rows=count("val_rows"),
            n_features=int(record.params["n_features"]),
            rmse=metrics.get("rmse"),
            mae=metrics.get("mae"),
            rmse_train=metrics["rmse_train"],
            intercept=model.intercept,
            best_iteration=fit.best_iteration,
            run_id=registered.run_id,
            model_name=registered.model_name,
            model_version=registered.model_version,
            model_uri=registered.model_uri,
            model_size_bytes=registered.model_size_bytes,
            tracking_uri=tracking_uri,
            timings=timings,
            promoted=decision is not None and decision.promoted,
            reused=registered.reused,
            champion_version=None
            if decision is None
            else (registered.model_version if decision.promoted else decision.previous_champion),
            champion_rmse=None if decision is None else decision.champion_rmse,
            promotion_reason=decision.reason
            if decision is not None
            else _unpromoted_reason(registered),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def registered(self) -> str:
        if self.model_version is None:
            return f"not registered (logged as `{self.model_uri}`)"
        reused = " (reused: identical to this run's model)" if self.reused else ""
        return f"`{self.model_name}` version {self.model_version}{reused}"

    def markdown(self) -> str:
        val = f"{self.val_month} ({self.val_rows:,} trips)" if self.val_month else "none"
        rmse = f"{self.rmse:.4f}" if self.rmse is not None else "n/a (no validation month)"
        rows = [
            ("Color", self.color),
            (
                "Training month",
                f"{self.trained_on}: {self.rows_loaded:,} rows, {self.rows_kept:,} kept",
            ),
            ("Validation month", val),
            ("Model", f"{self.model} on `{self.features}` features ({self.n_features:,})"),
            ("Validation RMSE (min)", rmse),
            ("Training RMSE (min)", f"{self.rmse_train:.4f}"),
            ("MLflow run", f"`{self.run_id}`"),
            ("Registered model", self.registered()),
            (
                "Promotion",
                self.promotion_reason
                if self.model_version is None or self.reused
                else f"{'champion' if self.promoted else 'challenger'}: {self.promotion_reason}",
            ),
        ]
        table = "\n".join(f"| {name} | {value} |" for name, value in rows)
        steps = " · ".join(f"{step} {seconds:.1f}s" for step, seconds in self.timings.items())
        curve = (
            "\n\nValidation RMSE (`rmse`) is of the predictions as served, clipped to the "
            "trained range. The learning curve (`boosting_validation_rmse` per round) is "
            "XGBoost's own evaluation, in float32 and unclipped: its values differ slightly."
            if self.best_iteration is not None
            else ""
        )
        return f"# Trip-duration training\n\n| | |\n|---|---|\n{table}{curve}\n\nSteps: {steps}\n"


def _unpromoted_reason(registered: RegisteredModel) -> str:
    """Why a run made no promotion decision."""
    if registered.reused:
        return (
            f"identical to version {registered.model_version} (same data, parameters and code): "
            "not registered again, no alias changed"
        )
    return "not registered (--no-register)"
