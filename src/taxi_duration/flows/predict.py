"""The ``predict`` flow: score a month's trips with a registered model (the champion)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from taxi_duration import predict as predict_step
from taxi_duration import prepare
from taxi_duration.flows.progress import timed
from taxi_duration.flows.tasks import ingest_month
from taxi_duration.settings import Settings
from taxi_duration.specs import PredictSpec
from taxi_duration.tracking import registry


@dataclass
class PredictSummary:
    color: str
    month: str
    model_uri: str
    model_version: str
    rows_scored: int
    rows_without_prediction: int
    output: str  # the absolute path written
    timings: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def markdown(self) -> str:
        return "\n".join(
            [
                f"# Predictions for {self.color} {self.month}",
                "",
                "| | |",
                "|---|---|",
                f"| file | `{self.output}` |",
                f"| rows | {self.rows_scored:,} ({self.rows_without_prediction:,} without a "
                "prediction) |",
                f"| model | `{self.model_uri}`, version {self.model_version} |",
            ]
        )


@task(name="score", cache_policy=NO_CACHE)
def score_task(settings: Settings, model_uri: str, trips: pd.DataFrame) -> np.ndarray:
    model = registry.load_model(settings, model_uri)
    return np.asarray(model.predict(trips), dtype=np.float64)


@task(name="write", cache_policy=NO_CACHE)
def write_task(frame: pd.DataFrame, output: Path) -> None:
    predict_step.write_parquet_atomically(frame, output)


@flow(name="predict", log_prints=True)
def predict(spec: PredictSpec) -> PredictSummary:
    """Predict the duration of every trip of a month; write ride id, zones, prediction."""
    settings = Settings()
    timings: dict[str, float] = {}
    # The model first: without one (no champion yet), fail before downloading the month.
    uri = spec.model_uri or f"models:/{settings.registered_model(spec.color)}@champion"
    version = registry.resolve_version(settings, uri)
    with timed(timings, "ingest", f"{spec.color} {spec.scored_month}"):
        path = spec.input_file or ingest_month(settings, spec.color, spec.scored_month)
        trips = prepare.read_trips_to_score(path, spec.color)
    with timed(timings, "score", f"version {version}"):
        predicted = score_task(settings, uri, trips)
    output = predict_step.output_path(spec.output, settings.output_dir)
    with timed(timings, "write"):
        frame = predict_step.predictions_frame(trips, predicted, spec.scored_month, version)
        write_task(frame, output)

    missing = int(np.isnan(predicted).sum())
    get_run_logger().info(
        "scored %d trips of %s %s with %s (version %s); %d without a prediction; wrote %s",
        len(trips),
        spec.color,
        spec.scored_month,
        uri,
        version,
        missing,
        output,
    )
    result = PredictSummary(
        color=spec.color,
        month=str(spec.scored_month),
        model_uri=uri,
        model_version=version,
        rows_scored=len(trips),
        rows_without_prediction=missing,
        output=str(output),
        timings=timings,
    )
    create_markdown_artifact(
        key="predict-output",
        markdown=result.markdown(),
        description=f"Predictions for {spec.color} {spec.scored_month}: {output}",
    )
    return result
