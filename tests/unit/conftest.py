"""Fixtures shared by the unit tests: prepared generated months, one with unseen zones."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from tlc_samples import make_trips

from taxi_duration.months import Month
from taxi_duration.prepare import prepare_trips

# Generated trips use zones 1..59; these never occur in a generated training month.
UNSEEN_ZONES = (201, 202, 203)


@pytest.fixture(scope="session")
def unseen_zones() -> tuple[int, ...]:
    """Zone ids that appear in ``month_with_unseen_zones`` but in no generated month."""
    return UNSEEN_ZONES


@pytest.fixture(scope="session")
def green_train(synthetic_months: Path) -> pd.DataFrame:
    """Prepared generated green 2023-01 (the training month)."""
    return prepare_trips(synthetic_months / "green_tripdata_2023-01.parquet", "green").frame


@pytest.fixture(scope="session")
def green_val(synthetic_months: Path) -> pd.DataFrame:
    """Prepared generated green 2023-02 (the validation month)."""
    return prepare_trips(synthetic_months / "green_tripdata_2023-02.parquet", "green").frame


@pytest.fixture(scope="session")
def month_with_unseen_zones(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Prepared generated green 2023-03 where some rows use zones absent from 2023-01.

    Rows 0..99: unseen pickup zone; 100..199: unseen dropoff zone; 200..299: both unseen;
    the rest keep generated zones (so also pairs unseen in training).
    """
    raw = make_trips("green", Month(2023, 3), rows=2_000, seed=7)
    raw.loc[0:99, "PULocationID"] = UNSEEN_ZONES[0]
    raw.loc[100:199, "DOLocationID"] = UNSEEN_ZONES[1]
    raw.loc[200:299, ["PULocationID", "DOLocationID"]] = UNSEEN_ZONES[2]
    path = tmp_path_factory.mktemp("unseen") / "green_tripdata_2023-03.parquet"
    raw.to_parquet(path, index=False)
    return prepare_trips(path, "green").frame
