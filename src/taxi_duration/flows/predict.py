"""The ``predict`` flow: score a month's trips with a registered model (the champion)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from taxi_duration import ingest, prepare, tracking
from taxi_duration import predict as predict_step
from taxi_duration.errors import InvalidInputError
from taxi_duration.flows.tasks import ingest_with_settings
from taxi_duration.flows.train import timed
from taxi_duration.months import Month
from taxi_duration.settings import Settings


@dataclass
class PredictSummary:
    color: str
    month: str
    model_uri: str
    model_version: str
    rows_scored: int
    rows_without_prediction: int
    output: str
    timings: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@task(name="score", cache_policy=NO_CACHE)
def score_task(model_uri: str, trips: pd.DataFrame) -> np.ndarray:
    model = tracking.load_model(model_uri)
    return np.asarray(model.predict(trips), dtype=np.float64)


@task(name="write", cache_policy=NO_CACHE)
def write_task(frame: pd.DataFrame, output: Path) -> None:
    predict_step.write_parquet_atomically(frame, output)


@flow(name="predict", log_prints=True)
def predict(
    color: str = "green",
    year: int | None = None,
    month: int | None = None,
    output: str | None = None,
    input_path: str | None = None,
    model_uri: str | None = None,
) -> PredictSummary:
    """Predict the duration of every trip of a month; write ride id, zones, prediction."""
    if year is None or month is None:
        raise InvalidInputError("the month to score is required: give year and month")
    if not output:
        raise InvalidInputError("an output path is required")
    scored_month = Month(year, month)
    ingest.check_color_and_month(color, scored_month)
    local = ingest.check_local_file(Path(input_path), "input") if input_path else None
    settings = Settings()
    timings: dict[str, float] = {}
    with timed(timings, "ingest"):
        path = local or ingest_with_settings(settings)(
            color,
            str(scored_month),
            settings.data_url,
            str(settings.data_dir),
            settings.download_timeout_seconds,
        )
        trips = prepare.read_trips_to_score(path, color)
    with timed(timings, "score"):
        uri = model_uri or f"models:/{settings.model_name}@champion"
        version = tracking.resolve_version(settings, uri)
        predicted = score_task(uri, trips)
    with timed(timings, "write"):
        frame = predict_step.predictions_frame(trips, predicted, scored_month, version)
        write_task(frame, Path(output))

    missing = int(np.isnan(predicted).sum())
    get_run_logger().info(
        "scored %d trips of %s %s with %s (version %s); %d without a prediction",
        len(trips),
        color,
        scored_month,
        uri,
        version,
        missing,
    )
    return PredictSummary(
        color=color,
        month=str(scored_month),
        model_uri=uri,
        model_version=version,
        rows_scored=len(trips),
        rows_without_prediction=missing,
        output=str(output),
        timings=timings,
    )
