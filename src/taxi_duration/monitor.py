"""Monitoring: how the champion does on a month it was not trained or validated on.

Plain functions on prepared months: the champion's RMSE and MAE on the month against the
validation RMSE recorded on its version, the drift of each model input and of the
predictions from the champion's training month to this one, and the month's data-quality
figures (checks.py) beside the training month's.

Drift is measured as Evidently measures it by default on samples of more than 1,000 rows:
the Jensen-Shannon distance between the two months' frequencies for a categorical column,
the Wasserstein distance divided by the training month's standard deviation for a numerical
one, each drifted at 0.1 or more. Evidently itself does not import with the project's pandas
(docs/monitoring.md), so the statistics come from SciPy, which the project has already.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from taxi_duration.choices import MAX_DEGRADATION
from taxi_duration.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# The model's inputs as a request gives them: the zones and the request-time fields are
# categories (passenger counts are a handful of small numbers: Evidently too treats a column
# of few values as categorical), the pickup hour and weekday categories of the week's
# rhythm, the distance a number.
CATEGORICAL_INPUTS = (
    "PULocationID",
    "DOLocationID",
    "pickup_hour",
    "pickup_weekday",
    "VendorID",
    "trip_type",
    "passenger_count",
)
NUMERICAL_INPUTS = ("trip_distance",)
PREDICTION = "prediction"
# Categories of a column with missing values: a missing value is a category of its own,
# so that a month whose field stops being filled drifts.
_MISSING = "missing"


@dataclass(frozen=True)
class MonitorThresholds:
    """When a month counts as degraded. Defaults in docs/monitoring.md, with the figures."""

    # RMSE on the month over the version's validation RMSE, minus 1.
    max_degradation: float = MAX_DEGRADATION
    # A column drifts at this distance or more (Evidently's default for both statistics).
    drift_threshold: float = 0.1
    # Degraded when more than this share of the inputs drift (Evidently's dataset drift
    # is a half of the columns).
    max_drifted_share: float = 0.5
    # Rows of each month the drift is measured on (a fixed-seed sample); RMSE uses all.
    sample_rows: int = 200_000
    seed: int = 42

    def __post_init__(self) -> None:
        if self.max_degradation < 0:
            raise InvalidInputError(
                f"max_degradation {self.max_degradation} is negative: 0 or more "
                "(a fraction of the validation RMSE)"
            )
        for name in ("drift_threshold", "max_drifted_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidInputError(f"{name} {value} is not between 0 and 1")
        if self.sample_rows < 1_000:
            raise InvalidInputError(f"sample_rows {self.sample_rows} is under 1000")


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    statistic: Literal["jensen_shannon", "wasserstein_normed"]
    value: float
    drifted: bool


@dataclass(frozen=True)
class MonitorReport:
    """A month's monitoring result; ``degraded`` with each reason when it is."""

    month: str
    model_version: str
    rows: int
    rmse: float
    mae: float
    validation_rmse: float
    degradation: float
    drift: tuple[ColumnDrift, ...]
    prediction_drift: ColumnDrift
    drifted_share: float
    figures: dict[str, float]
    training_figures: dict[str, float]
    thresholds: MonitorThresholds
    reasons: tuple[str, ...] = field(default=())

    @property
    def degraded(self) -> bool:
        return bool(self.reasons)

    def drifted_columns(self) -> list[str]:
        return [drift.column for drift in self.drift if drift.drifted]

    def lines(self) -> list[str]:
        """One line per check, as the command prints them."""
        limit = self.validation_rmse * (1 + self.thresholds.max_degradation)
        rmse_state = "degraded" if self.rmse > limit else "ok"
        share_state = "degraded" if self.drifted_share > self.thresholds.max_drifted_share else "ok"
        lines = [
            f"rmse {self.rmse:.4f} against validation {self.validation_rmse:.4f} "
            f"({self.degradation:+.1%}, at most {self.thresholds.max_degradation:+.0%}): "
            f"{rmse_state}",
            f"drifted inputs {len(self.drifted_columns())} of {len(self.drift)} "
            f"({self.drifted_share:.0%}, at most {self.thresholds.max_drifted_share:.0%}): "
            f"{share_state}",
        ]
        for drift in (*self.drift, self.prediction_drift):
            state = "drifted" if drift.drifted else "ok"
            lines.append(f"drift {drift.column} {drift.statistic} {drift.value:.3f}: {state}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "model_version": self.model_version,
            "rows": self.rows,
            "rmse": self.rmse,
            "mae": self.mae,
            "validation_rmse": self.validation_rmse,
            "degradation": self.degradation,
            "degraded": self.degraded,
            "reasons": list(self.reasons),
            "lines": self.lines(),
            "drifted_share": self.drifted_share,
            "drifted_columns": self.drifted_columns(),
            "drift": [asdict(drift) for drift in self.drift],
            "prediction_drift": asdict(self.prediction_drift),
            "figures": self.figures,
            "training_figures": self.training_figures,
            "thresholds": asdict(self.thresholds),
        }

    def metrics(self) -> dict[str, float]:
        """Flat figures for a tracking run: the same names every month."""
        metrics = {
            "rmse": self.rmse,
            "mae": self.mae,
            "validation_rmse": self.validation_rmse,
            "degradation": self.degradation,
            "drifted_share": self.drifted_share,
            "degraded": float(self.degraded),
            f"drift_{PREDICTION}": self.prediction_drift.value,
        }
        metrics.update({f"drift_{drift.column}": drift.value for drift in self.drift})
        metrics.update({f"check_{name}": value for name, value in self.figures.items()})
        return metrics


def model_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns drift is measured on, from a prepared month (``prepare.kept_trips``)."""
    import pandas as pd

    pickup = frame["pickup_datetime"].dt
    return pd.DataFrame(
        {
            "PULocationID": frame["PULocationID"],
            "DOLocationID": frame["DOLocationID"],
            "pickup_hour": pickup.hour,
            "pickup_weekday": pickup.dayofweek,
            "VendorID": frame["VendorID"],
            "trip_type": frame["trip_type"],
            "passenger_count": frame["passenger_count"],
            "trip_distance": frame["trip_distance"],
        },
        index=frame.index,
    )


def sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """A fixed-seed sample of ``rows`` rows (the frame itself when it has no more)."""
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed)


def jensen_shannon(reference: pd.Series, current: pd.Series) -> float:
    """Jensen-Shannon distance between two columns' category frequencies (natural log)."""
    import numpy as np
    from scipy.spatial.distance import jensenshannon

    ref = _frequencies(reference)
    cur = _frequencies(current)
    keys = sorted(set(ref) | set(cur), key=str)
    value = jensenshannon([ref.get(k, 0.0) for k in keys], [cur.get(k, 0.0) for k in keys])
    return float(np.nan_to_num(value))


def _frequencies(values: pd.Series) -> dict[object, float]:
    counts = values.astype("object").fillna(_MISSING).value_counts(normalize=True)
    return {key: float(share) for key, share in counts.items()}


def wasserstein_normed(reference: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein distance over the reference's standard deviation (at least 0.001), as
    Evidently's default numerical statistic; missing values left out."""
    import numpy as np
    from scipy.stats import wasserstein_distance

    ref = reference[~np.isnan(reference)]
    cur = current[~np.isnan(current)]
    if len(ref) == 0 or len(cur) == 0:
        return 0.0 if len(ref) == len(cur) else 1.0  # a column emptied or filled: drifted
    return float(wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001))


def column_drift(
    column: str, reference: pd.Series, current: pd.Series, threshold: float
) -> ColumnDrift:
    import numpy as np

    if column in CATEGORICAL_INPUTS:
        value = jensen_shannon(reference, current)
        return ColumnDrift(column, "jensen_shannon", value, value >= threshold)
    value = wasserstein_normed(
        reference.to_numpy(dtype=np.float64), current.to_numpy(dtype=np.float64)
    )
    return ColumnDrift(column, "wasserstein_normed", value, value >= threshold)


def assess(
    *,
    month: str,
    model_version: str,
    durations: np.ndarray,
    predictions: np.ndarray,
    validation_rmse: float,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    figures: dict[str, float],
    training_figures: dict[str, float],
    thresholds: MonitorThresholds,
) -> MonitorReport:
    """The month's report. ``reference`` and ``current`` are ``model_inputs`` samples of the
    training month and of this month, each with a ``prediction`` column of the champion's."""
    from taxi_duration.evaluate import mae, rmse

    if validation_rmse <= 0:
        raise InvalidInputError(f"validation rmse {validation_rmse} is not positive")
    month_rmse = rmse(durations, predictions)
    degradation = month_rmse / validation_rmse - 1
    drift = tuple(
        column_drift(column, reference[column], current[column], thresholds.drift_threshold)
        for column in (*CATEGORICAL_INPUTS, *NUMERICAL_INPUTS)
    )
    prediction_drift = column_drift(
        PREDICTION, reference[PREDICTION], current[PREDICTION], thresholds.drift_threshold
    )
    drifted_share = sum(d.drifted for d in drift) / len(drift)
    reasons = []
    if degradation > thresholds.max_degradation:
        reasons.append(
            f"rmse {month_rmse:.4f} is {degradation:.1%} above the validation rmse "
            f"{validation_rmse:.4f} (at most {thresholds.max_degradation:.0%})"
        )
    if drifted_share > thresholds.max_drifted_share:
        drifted = ", ".join(d.column for d in drift if d.drifted)
        reasons.append(
            f"{drifted_share:.0%} of the inputs drifted ({drifted}; at most "
            f"{thresholds.max_drifted_share:.0%})"
        )
    return MonitorReport(
        month=month,
        model_version=model_version,
        rows=len(durations),
        rmse=month_rmse,
        mae=mae(durations, predictions),
        validation_rmse=validation_rmse,
        degradation=degradation,
        drift=drift,
        prediction_drift=prediction_drift,
        drifted_share=drifted_share,
        figures=figures,
        training_figures=training_figures,
        thresholds=thresholds,
        reasons=tuple(reasons),
    )


def decay_chart(
    months: list[str],
    rmses: list[float],
    validation_rmse: float,
    max_degradation: float,
    title: str,
    path: Path,
) -> Path:
    """A PNG of the champion's RMSE by month, its validation RMSE and the degraded line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(max(6.0, 0.8 * len(months) + 3), 4))
    try:
        axes.plot(months, rmses, marker="o", label="RMSE on the month")
        axes.axhline(validation_rmse, linestyle="--", color="gray", label="validation RMSE")
        axes.axhline(
            validation_rmse * (1 + max_degradation),
            linestyle=":",
            color="red",
            label=f"degraded above (+{max_degradation:.0%})",
        )
        axes.set_xlabel("month")
        axes.set_ylabel("RMSE (minutes)")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend()
        figure.autofmt_xdate()
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png", dpi=100)
    finally:
        plt.close(figure)
    return path


def judge(
    *,
    month: str,
    model_version: str,
    predict: Callable[[pd.DataFrame], np.ndarray],
    training: pd.DataFrame,
    current: pd.DataFrame,
    validation_rmse: float,
    figures: dict[str, float],
    training_figures: dict[str, float],
    thresholds: MonitorThresholds,
) -> MonitorReport:
    """``assess`` a prepared month against the prepared training month: the model's
    predictions on every trip of the month, drift on a fixed-seed sample of each."""
    reference = model_inputs(sample(training, thresholds.sample_rows, thresholds.seed))
    reference[PREDICTION] = predict(training.loc[reference.index])
    predictions = predict(current)
    inputs = model_inputs(sample(current, thresholds.sample_rows, thresholds.seed))
    inputs[PREDICTION] = predictions[current.index.get_indexer(inputs.index)]
    return assess(
        month=month,
        model_version=model_version,
        durations=current["duration"].to_numpy(),
        predictions=predictions,
        validation_rmse=validation_rmse,
        reference=reference,
        current=inputs,
        figures=figures,
        training_figures=training_figures,
        thresholds=thresholds,
    )
