"""A registered version carries its own code: it loads and predicts where the package is not
installed (a colleague's notebook, a scoring service), exactly as in the training process."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from taxi_duration.flows.train import train
from taxi_duration.specs import TrainSpec

pytestmark = pytest.mark.slow

# Run with -I -S: no PYTHONPATH, no user site, no site-packages .pth files (the editable
# install is one), no current folder; only the environment's installed libraries.
_CLEAN_LOAD = """
import importlib.util, json, sys
sys.path.append({site!r})
assert importlib.util.find_spec("taxi_duration") is None, "taxi_duration is importable"
import mlflow, pandas as pd
mlflow.set_tracking_uri({uri!r})
model = mlflow.pyfunc.load_model("models:/nyc-taxi-duration-green@champion")
predictions = model.predict(pd.read_parquet({month!r}))
print(json.dumps([None if p != p else float(p) for p in predictions]))
"""


@pytest.mark.parametrize("model", ["xgboost", "linear"])
def test_a_version_predicts_the_same_where_taxi_duration_cannot_be_imported(
    model: str,
    prefect_api: None,
    registry: MlflowClient,
    workspace: Path,
    synthetic_months: Path,
    tmp_path: Path,
) -> None:
    train(TrainSpec.parse(year=2023, month=1, model=model))
    month = synthetic_months / "green_tripdata_2023-03.parquet"
    uri = f"sqlite:///{workspace / 'mlflow' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    here = mlflow.pyfunc.load_model("models:/nyc-taxi-duration-green@champion").predict(
        pd.read_parquet(month)
    )

    script = _CLEAN_LOAD.format(site=sysconfig.get_paths()["purelib"], uri=uri, month=str(month))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    loaded = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    there = np.array(json.loads(loaded.stdout.strip().splitlines()[-1]), dtype=np.float64)
    np.testing.assert_array_equal(there, np.asarray(here, dtype=np.float64))
    assert np.isfinite(there).all()
