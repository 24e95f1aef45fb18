"""What a training run did: printed by the CLI, given as JSON, shown as a Prefect artifact."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


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
    model_name: str
    model_version: str
    model_uri: str
    model_size_bytes: int | None
    tracking_uri: str
    timings: dict[str, float]
    promoted: bool = False
    champion_version: str | None = None  # the champion after this run
    champion_rmse: float | None = None  # the previous champion's, on this validation month
    promotion_reason: str = ""
    best_params: dict[str, Any] | None = None  # tune only
    n_trials: int | None = None  # tune only

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def markdown(self) -> str:
        val = f"{self.val_month} ({self.val_rows:,} trips)" if self.val_month else "none"
        rmse = f"{self.rmse:.4f}" if self.rmse is not None else "n/a (no validation month)"
        rows = [
            ("Color", self.color),
            (
                "Training month",
                f"{self.train_month}: {self.rows_loaded:,} rows, {self.rows_kept:,} kept",
            ),
            ("Validation month", val),
            ("Model", f"{self.model} on `{self.features}` features ({self.n_features:,})"),
            ("Validation RMSE (min)", rmse),
            ("Training RMSE (min)", f"{self.rmse_train:.4f}"),
            ("MLflow run", f"`{self.run_id}`"),
            ("Registered model", f"`{self.model_name}` version {self.model_version}"),
            (
                "Promotion",
                f"{'champion' if self.promoted else 'challenger'}: {self.promotion_reason}",
            ),
        ]
        table = "\n".join(f"| {name} | {value} |" for name, value in rows)
        steps = " · ".join(f"{step} {seconds:.1f}s" for step, seconds in self.timings.items())
        return f"# Trip-duration training\n\n| | |\n|---|---|\n{table}\n\nSteps: {steps}\n"
