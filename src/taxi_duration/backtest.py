"""Backtesting: train on each month of a range and validate on the next.

Plain step logic (no Prefect, no MLflow): the month pairs of a range, a pair's result, the
results table and the chart of RMSE by month. The flow is ``taxi_duration.flows.backtest``.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from taxi_duration.months import Month

BASELINE_PRESET = "reference"


def months_between(first: Month, last: Month) -> list[Month]:
    """Every month from ``first`` to ``last``, both included."""
    months = [first]
    while months[-1] < last:
        months.append(months[-1].next())
    return months


def month_pairs(first: Month, last: Month) -> list[tuple[Month, Month]]:
    """(train, validation) for each consecutive pair whose validation month is <= ``last``."""
    months = months_between(first, last)
    return list(itertools.pairwise(months))


@dataclass
class PairResult:
    """One pair: trained on ``train``, validated on ``val``; ``error`` if it failed."""

    train: str
    val: str
    rows: int | None = None  # training rows kept (1-60 minutes)
    val_rows: int | None = None
    rmse: float | None = None
    baseline_rmse: float | None = None
    rmse_train: float | None = None
    mae: float | None = None
    n_features: int | None = None
    seconds: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class BacktestSummary:
    """What a backtest did; the CLI prints it, ``--json`` gives it as one object."""

    color: str
    start: str
    end: str
    model: str
    features: str
    preset: str | None
    baseline: str
    results: list[PairResult]
    executor: str = ""
    run_id: str | None = None
    tracking_uri: str | None = None
    chart: str | None = None  # the PNG's name among the parent run's artifacts
    seconds: float | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> list[PairResult]:
        return [result for result in self.results if not result.ok]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed"] = len(self.failed)
        return data

    def params(self) -> dict[str, Any]:
        """What was backtested, as the parent run's parameters."""
        return {
            "color": self.color,
            "start": self.start,
            "end": self.end,
            "model": self.model,
            "features": self.features,
            "preset": self.preset or "",
            "baseline": self.baseline,
            "executor": self.executor,
        }

    def overall_metrics(self) -> dict[str, float]:
        """Pairs, failed pairs and the mean RMSE of those that finished."""
        done = [result.rmse for result in self.results if result.rmse is not None]
        overall = {"pairs": float(len(self.results)), "failed": float(len(self.failed))}
        if done:
            overall["mean_rmse"] = sum(done) / len(done)
        return overall

    def table(self) -> list[dict[str, Any]]:
        """The results as rows (a Prefect table artifact)."""
        return [
            {
                "pair": f"{result.train} -> {result.val}",
                "rows": result.rows,
                f"rmse ({self.preset or self.model}, {self.features})": _round(result.rmse),
                f"baseline rmse ({self.baseline})": _round(result.baseline_rmse),
                "error": result.error or "",
            }
            for result in self.results
        ]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def pair_params(summary: BacktestSummary, result: PairResult) -> dict[str, Any]:
    """A pair's nested run parameters (its error, cut short, if it failed)."""
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
    return params


def pair_metrics(result: PairResult) -> dict[str, float]:
    """A pair's nested run metrics: those it has."""
    values = {
        "rmse": result.rmse,
        "baseline_rmse": result.baseline_rmse,
        "rmse_train": result.rmse_train,
        "mae": result.mae,
        "rows_kept": result.rows,
        "val_rows": result.val_rows,
        "n_features": result.n_features,
    }
    return {key: float(value) for key, value in values.items() if value is not None}


def failure_message(summary: BacktestSummary) -> str:
    failed = summary.failed
    reasons = "; ".join(f"{result.train}->{result.val}: {result.error}" for result in failed)
    return f"{len(failed)} of {len(summary.results)} pairs failed: {reasons}"


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else value


def rmse_chart(summary: BacktestSummary, path: Path) -> Path:
    """A PNG of validation RMSE by month: the chosen model and the baseline preset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [result for result in summary.results if result.ok]
    labels = [result.val for result in done]
    figure, axes = plt.subplots(figsize=(max(6.0, 0.8 * len(summary.results) + 3), 4))
    try:
        axes.plot(
            labels,
            [_nan_if_none(result.rmse) for result in done],
            marker="o",
            label=f"{summary.preset or summary.model} ({summary.features})",
        )
        axes.plot(
            labels,
            [_nan_if_none(result.baseline_rmse) for result in done],
            marker="s",
            linestyle="--",
            label=f"baseline: {summary.baseline}",
        )
        axes.set_xlabel("validation month (trained on the month before)")
        axes.set_ylabel("RMSE (minutes)")
        axes.set_title(f"Backtest, {summary.color} {summary.start}..{summary.end}")
        axes.grid(alpha=0.3)
        axes.legend()
        figure.autofmt_xdate()
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png", dpi=100)
    finally:
        plt.close(figure)
    return path
