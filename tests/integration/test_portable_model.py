"""A registered version carries its own code: it loads and predicts where the package is not
installed (a colleague's notebook, a scoring service), exactly as in the training process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from ports import free_port
from tlc_samples import make_trips

from taxi_duration.flows.train import train
from taxi_duration.months import Month
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
print(json.dumps([None if p is None or p != p else float(p) for p in predictions]))
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


def _reject_nan(constant: str) -> None:
    raise AssertionError(f"{constant} is not valid JSON")


def test_the_scoring_server_answers_valid_json_with_null_for_a_trip_without_a_prediction(
    prefect_api: None, registry: MlflowClient, workspace: Path, tmp_path: Path
) -> None:
    train(TrainSpec.parse(year=2023, month=1, model="linear", features="pu_do"))
    port = free_port()
    bin_dir = Path(sys.executable).parent  # as in an activated environment: uvicorn on PATH
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{workspace / 'mlflow' / 'mlflow.db'}",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(bin_dir / "mlflow"), "models", "serve", "-m",
         "models:/nyc-taxi-duration-green@champion", "-h", "127.0.0.1", "-p", str(port),
         "--env-manager", "local"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/ping", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the scoring server did not answer"
            time.sleep(1)
        trips = make_trips("green", Month(2023, 2), rows=3)
        trips["PULocationID"] = trips["PULocationID"].astype("float64")
        trips.loc[1, "PULocationID"] = np.nan
        body = json.loads(trips.to_json(orient="split", date_format="iso", index=False))
        response = httpx.post(f"{url}/invocations", json={"dataframe_split": body}, timeout=60)
        assert response.status_code == 200, response.text
        predictions = json.loads(response.text, parse_constant=_reject_nan)["predictions"]
        assert predictions[1] is None
        assert all(isinstance(value, float) for value in (predictions[0], predictions[2]))
        # Every column of a published row is in the signature: nothing "extra" to warn about.
        assert "extra inputs" not in (tmp_path / "serve.log").read_text()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
