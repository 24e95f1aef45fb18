"""Champion/challenger and batch scoring on real months, fetched through the project's ingest."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from taxi_duration.flows.predict import predict
from taxi_duration.flows.train import train
from taxi_duration.specs import PredictSpec, TrainSpec

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_worse_challenger_keeps_the_champion_and_predict_matches_the_pyfunc(
    prefect_api: None,
    workspace: Path,
    real_data_url: str,
    real_data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TAXI_DURATION_DATA_URL", real_data_url)
    champion = train(TrainSpec.parse(year=2023, month=1))
    challenger = train(TrainSpec.parse(year=2023, month=1, model="linear", features="separate"))
    assert champion.promoted
    assert not challenger.promoted
    assert challenger.champion_version == champion.model_version

    output = workspace / "predictions.parquet"
    summary = predict(PredictSpec.parse(year=2023, month=2, output=str(output)))
    raw = pd.read_parquet(real_data_dir / "green_tripdata_2023-02.parquet")
    written = pd.read_parquet(output)
    assert summary.model_version == champion.model_version
    assert summary.rows_scored == len(raw) == 64_809

    mlflow.set_tracking_uri(f"sqlite:///{workspace / 'mlflow' / 'mlflow.db'}")
    pyfunc = mlflow.pyfunc.load_model("models:/nyc-taxi-duration-green@champion")
    expected = np.asarray(pyfunc.predict(raw), dtype=np.float64)  # None: no prediction
    np.testing.assert_allclose(written["predicted_duration"], expected, rtol=1e-6)
