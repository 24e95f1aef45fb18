"""``train`` on a real Dask cluster (a scheduler and two worker processes): the window read and
boosted there matches a local run of the same window, and its registered model serves."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from data_server import SERVED_REQUESTS
from tlc_samples import write_month

from taxi_duration import evaluate, prepare, promote
from taxi_duration.flows.train import train
from taxi_duration.months import Month
from taxi_duration.settings import Settings
from taxi_duration.specs import TrainSpec
from taxi_duration.tracking import registry

pytestmark = pytest.mark.slow

# Large enough that two fits of the same window land within 1% of each other.
ROWS = 20_000
WINDOW = (Month(2023, 1), Month(2023, 2))
VALIDATION = Month(2023, 3)


@pytest.fixture(scope="module")
def larger_months(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tlc-larger")
    for month in (*WINDOW, VALIDATION):
        write_month(directory, "green", month, rows=ROWS)
    return directory


@pytest.fixture
def larger_data_url(
    workspace: Path,
    http_server: functools.partial[str],
    larger_months: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    url = http_server(larger_months)
    monkeypatch.setenv("TAXI_DURATION_DATA_URL", url)
    return url


def test_a_window_trained_on_the_cluster_matches_a_local_run_serves_and_faces_the_champion(
    prefect_api: None,
    larger_data_url: str,
    larger_months: Path,
    workspace: Path,
    two_dask_workers: str,
) -> None:
    result = train(TrainSpec.parse(year=2023, month=2, window=2, dask_address=two_dask_workers))
    local = train(TrainSpec.parse(year=2023, month=2, window=2))
    assert result.rows_kept == local.rows_kept
    assert result.rows_loaded == ROWS * len(WINDOW)
    assert result.val_month == str(VALIDATION)
    assert result.rmse is not None
    assert local.rmse is not None
    assert result.rmse == pytest.approx(local.rmse, rel=0.01)
    assert (result.model_version, result.promoted) == ("1", True)  # no champion yet
    assert [step in result.timings for step in ("prepare", "features", "train")] == [True] * 3
    # Like a local run's, the model has no column for what the months hold no value of (the
    # generated green months have no trip type): the cluster counted them.
    assert registry.version_model(Settings(), "1", "green").preprocessor.absent == ("trip_type",)

    # The registered version loads by itself and scores the raw validation month as the run did.
    pyfunc = registry.load_model(Settings(), result.model_uri)
    raw = pd.read_parquet(larger_months / f"green_tripdata_{VALIDATION}.parquet")
    kept = prepare.prepare_trips(larger_months / f"green_tripdata_{VALIDATION}.parquet", "green")
    pickup = raw["lpep_pickup_datetime"]
    minutes = (raw["lpep_dropoff_datetime"] - pickup).dt.total_seconds() / 60
    in_range = ((minutes >= 1) & (minutes <= 60)).to_numpy()
    predicted = np.asarray(pyfunc.predict(raw[in_range].drop(columns="lpep_dropoff_datetime")))
    assert len(predicted) == kept.rows_kept
    served_rmse = evaluate.rmse(kept.frame["duration"].to_numpy(), predicted.astype(float))
    assert served_rmse == pytest.approx(result.rmse, rel=1e-5)
    # The months were downloaded once each (the local run took them from the cache).
    downloads = [r for r in SERVED_REQUESTS[larger_data_url] if r.startswith("GET")]
    assert len(downloads) == 3

    # The next cluster run is compared with the champion as a local run is, the workers
    # scoring the validation month through both versions: the same RMSEs as the local
    # comparison (promote_task's) gives on the same trips.
    settings = Settings()
    champion = registry.champion_version(settings, "green")
    assert champion is not None
    assert local.model_version is not None
    third = train(TrainSpec.parse(year=2023, month=2, dask_address=two_dask_workers))
    version = str(int(local.model_version) + 1)  # a new version (local may have reused one)
    assert third.model_version == version
    assert f"champion v{champion}" in third.promotion_reason, third.promotion_reason
    truth = kept.frame["duration"].to_numpy()
    new_rmse, champion_rmse = promote.compare_on(
        truth,
        registry.score_version(settings, version, kept.frame, "green"),
        registry.score_version(settings, champion, kept.frame, "green"),
    )
    assert third.champion_rmse == pytest.approx(champion_rmse, rel=1e-6)
    assert third.rmse == pytest.approx(new_rmse, rel=1e-5)
    assert third.promoted == (new_rmse < champion_rmse)
    assert registry.champion_version(settings, "green") == (version if third.promoted else champion)
