"""Champion/challenger promotion in the registry, and batch scoring with the champion."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from tlc_samples import make_trips

from taxi_duration.errors import InvalidInputError, RegistryError
from taxi_duration.flows.predict import predict
from taxi_duration.flows.train import train
from taxi_duration.months import Month
from taxi_duration.settings import Settings
from taxi_duration.specs import PredictSpec, TrainSpec
from taxi_duration.tracking.registry import set_champion

pytestmark = pytest.mark.slow
NAME = "nyc-taxi-duration-green"


def _alias(registry: MlflowClient, alias: str) -> str:
    return str(registry.get_model_version_by_alias(NAME, alias).version)


def test_a_worse_challenger_does_not_replace_the_champion(
    prefect_api: None, registry: MlflowClient
) -> None:
    first = train(TrainSpec.parse(year=2023, month=1))
    assert first.promoted
    assert first.champion_version == first.model_version == "1"
    assert "first version" in first.promotion_reason

    # One-hot zones with no distance: clearly worse than the default model.
    worse = train(TrainSpec.parse(year=2023, month=1, model="linear", features="separate"))
    assert not worse.promoted
    assert worse.champion_version == "1"
    assert worse.champion_rmse is not None
    assert worse.rmse is not None
    assert worse.rmse > worse.champion_rmse
    assert _alias(registry, "champion") == "1"
    assert _alias(registry, "challenger") == "2"
    version = registry.get_model_version(NAME, "2")
    tags = version.tags
    assert "promotion.decision" not in tags  # the aliases say who is champion
    assert "challenger: RMSE" in version.description
    assert float(tags["promotion.champion_rmse"]) == pytest.approx(worse.champion_rmse, rel=1e-5)
    assert tags["promotion.previous_champion"] == "1"


def test_a_better_version_becomes_champion_unless_short_of_min_improvement(
    prefect_api: None, registry: MlflowClient
) -> None:
    train(TrainSpec.parse(year=2023, month=1, model="linear", features="separate"))
    short = train(TrainSpec.parse(year=2023, month=1, min_improvement=1000.0))
    assert short.rmse is not None
    assert short.champion_rmse is not None
    assert short.rmse < short.champion_rmse  # better, but not by 1000 minutes
    assert not short.promoted
    # Another model (an identical one would not be registered again), also better than v1.
    better = train(TrainSpec.parse(year=2023, month=1, features="pu_do"))
    assert better.promoted
    assert _alias(registry, "champion") == better.model_version == "3"
    assert "beats champion v1" in better.promotion_reason


def test_promote_by_hand_rolls_back_and_rejects_unknown_versions(
    prefect_api: None, registry: MlflowClient
) -> None:
    train(TrainSpec.parse(year=2023, month=1))
    train(TrainSpec.parse(year=2023, month=1, model="linear", features="separate"))
    settings = Settings()
    promotion = set_champion(settings, "green", "2")
    assert (promotion.version, promotion.previous) == ("2", "1")
    runs = {v: registry.get_run(registry.get_model_version(NAME, v).run_id) for v in "12"}
    assert promotion.rmse == runs["2"].data.metrics["rmse"]
    assert promotion.previous_rmse == runs["1"].data.metrics["rmse"]
    assert promotion.val_month == "2023-02"
    assert _alias(registry, "champion") == "2"
    assert _alias(registry, "challenger") == "1"
    assert "champion: set by hand (was v1)" in registry.get_model_version(NAME, "2").description
    assert "challenger: replaced by hand" in registry.get_model_version(NAME, "1").description
    with pytest.raises(InvalidInputError, match="version 7 of model 'nyc-taxi-duration-green'"):
        set_champion(settings, "green", "7")
    # Another color's model: its own versions, its own champion.
    with pytest.raises(InvalidInputError, match="nyc-taxi-duration-yellow"):
        set_champion(settings, "yellow", "2")
    assert _alias(registry, "champion") == "2"


def test_each_color_has_its_own_champion(prefect_api: None, registry: MlflowClient) -> None:
    green = train(TrainSpec.parse(year=2023, month=1, model="linear", features="separate"))
    yellow = train(TrainSpec.parse(color="yellow", year=2023, month=1, model="linear"))
    assert (green.model_name, yellow.model_name) == (NAME, "nyc-taxi-duration-yellow")
    # The first yellow version is compared with no champion: the green one is not its kind.
    assert yellow.promoted
    assert "first version" in yellow.promotion_reason
    assert _alias(registry, "champion") == green.model_version
    yellow_champion = registry.get_model_version_by_alias("nyc-taxi-duration-yellow", "champion")
    assert str(yellow_champion.version) == yellow.model_version


def test_predict_scores_every_trip_with_the_champion_like_its_pyfunc(
    prefect_api: None, registry: MlflowClient, workspace: Path, synthetic_months: Path
) -> None:
    train(TrainSpec.parse(year=2023, month=1))
    output = workspace / "out" / "predictions.parquet"
    summary = predict(PredictSpec.parse(year=2023, month=3, output=str(output)))

    raw = pd.read_parquet(synthetic_months / "green_tripdata_2023-03.parquet")
    written = pd.read_parquet(output)
    assert summary.rows_scored == len(written) == len(raw)  # no duration filter
    assert summary.model_version == "1"
    assert list(written.columns) == [
        "ride_id",
        "PULocationID",
        "DOLocationID",
        "predicted_duration",
        "model_version",
    ]
    assert written["ride_id"].iloc[[0, 11]].tolist() == ["2023/03_0", "2023/03_11"]
    assert set(written["model_version"]) == {"1"}

    mlflow.set_tracking_uri(registry.tracking_uri)
    champion = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    expected = np.asarray(champion.predict(raw), dtype=np.float64)  # None: no prediction
    np.testing.assert_allclose(written["predicted_duration"], expected, rtol=1e-6)
    assert [p.name for p in output.parent.iterdir()] == ["predictions.parquet"]


def test_rows_without_zone_or_distance_get_a_null_prediction(
    prefect_api: None, registry: MlflowClient, workspace: Path
) -> None:
    train(TrainSpec.parse(year=2023, month=1, model="linear", features="pu_do"))
    raw = make_trips("yellow", Month(2023, 4), rows=50)
    raw["PULocationID"] = raw["PULocationID"].astype("float64")
    raw.loc[3, "PULocationID"] = np.nan
    raw.loc[5, "trip_distance"] = np.nan
    month_file = workspace / "yellow.parquet"
    raw.to_parquet(month_file, index=False)

    output = workspace / "predictions.parquet"
    summary = predict(
        PredictSpec.parse(
            color="yellow",
            year=2023,
            month=4,
            output=str(output),
            input_path=str(month_file),
            model_uri=f"models:/{NAME}@champion",  # a green model scores yellow rows too
        )
    )
    written = pd.read_parquet(output)
    assert summary.rows_without_prediction == 2
    assert written["predicted_duration"].isna().tolist() == [i in (3, 5) for i in range(50)]


def test_predict_without_a_champion_says_so(prefect_api: None, registry: MlflowClient) -> None:
    with pytest.raises(
        RegistryError, match="nyc-taxi-duration-green@champion is not in the registry"
    ):
        predict(PredictSpec.parse(year=2023, month=3, output="p.parquet"))
