"""High-volume for-hire months (``--color fhvhv``) and training windows, end to end in-process:
generated months downloaded from the loopback data server, trained, registered, scored."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from data_server import SERVED_REQUESTS
from mlflow.tracking import MlflowClient

from taxi_duration.flows.predict import predict
from taxi_duration.flows.train import train
from taxi_duration.specs import PredictSpec, TrainSpec

pytestmark = pytest.mark.slow
FHVHV = "nyc-taxi-duration-fhvhv"


def _requests(data_url: str, name: str) -> int:
    return SERVED_REQUESTS.get(data_url, []).count(f"GET /{name}")


def test_fhvhv_trains_through_the_download_code_and_its_champion_scores_a_month(
    prefect_api: None,
    data_url: str,
    registry: MlflowClient,
    workspace: Path,
    synthetic_months: Path,
) -> None:
    trained = train(TrainSpec.parse(color="fhvhv", year=2023, month=1))
    assert (trained.model_name, trained.promoted) == (FHVHV, True)
    assert trained.rows_loaded == 2_000
    assert trained.rmse is not None
    assert trained.rmse < 6.0  # the distance (trip_miles) is used: the generator's noise is 2
    for month in ("2023-01", "2023-02"):
        assert (workspace / "data" / f"fhvhv_tripdata_{month}.parquet").is_file()
    run = registry.get_run(trained.run_id)
    assert run.data.tags["color"] == "fhvhv"

    output = workspace / "fhvhv-predictions.parquet"
    scored = predict(PredictSpec.parse(color="fhvhv", year=2023, month=3, output=str(output)))
    raw = pd.read_parquet(synthetic_months / "fhvhv_tripdata_2023-03.parquet")
    written = pd.read_parquet(output)
    assert scored.rows_scored == len(written) == len(raw)
    assert scored.model_version == trained.model_version

    # The pyfunc takes fhvhv rows as published (every column), and its distance is trip_miles.
    mlflow.set_tracking_uri(registry.tracking_uri)
    champion = mlflow.pyfunc.load_model(f"models:/{FHVHV}@champion")
    expected = np.asarray(champion.predict(raw), dtype=np.float64)
    assert np.isfinite(expected).all()
    np.testing.assert_allclose(written["predicted_duration"], expected, rtol=1e-6)
    farther = np.asarray(
        champion.predict(raw.assign(trip_miles=raw["trip_miles"] + 10.0)), dtype=np.float64
    )
    assert farther.mean() > expected.mean() + 10.0


def test_a_window_trains_on_its_months_each_downloaded_once_and_validates_on_the_next(
    prefect_api: None, data_url: str, registry: MlflowClient, workspace: Path
) -> None:
    before = {
        month: _requests(data_url, f"green_tripdata_{month}.parquet")
        for month in ("2023-01", "2023-02", "2023-03")
    }
    one = train(TrainSpec.parse(year=2023, month=1, model="linear", features="pu_do"))
    two = train(TrainSpec.parse(year=2023, month=2, window=2, model="linear", features="pu_do"))

    assert (two.train_month, two.val_month) == ("2023-02", "2023-03")
    assert two.rows_loaded == 4_000  # both months of the window
    run = registry.get_run(two.run_id)
    assert run.data.params["window"] == "2"
    assert run.info.run_name.endswith("green-2023-01..2023-02")
    contexts = sorted(
        (
            next(tag.value for tag in data.tags if tag.key == "mlflow.data.context"),
            data.dataset.name,
        )
        for data in run.inputs.dataset_inputs
    )
    assert contexts == [
        ("training", "green_tripdata_2023-01"),
        ("training", "green_tripdata_2023-02"),
        ("validation", "green_tripdata_2023-03"),
    ]
    # 2023-01 and 2023-02 served the first run too: each month is downloaded once.
    after = {
        month: _requests(data_url, f"green_tripdata_{month}.parquet") - count
        for month, count in before.items()
    }
    assert after == {"2023-01": 1, "2023-02": 1, "2023-03": 1}
    assert one.rows_loaded == 2_000
