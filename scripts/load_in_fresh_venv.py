"""Load a registered version in a fresh virtualenv built from its own requirements only.

    python scripts/load_in_fresh_venv.py --model-uri models:/nyc-taxi-duration-green@champion \
        --month data/green_tripdata_2023-02.parquet [--tracking-uri sqlite:///mlflow/mlflow.db]

Downloads the version's artifacts, makes a virtualenv in a temporary folder, installs the
version's ``requirements.txt`` there (needs the package registry), and scores the month's
rows in that environment, where ``taxi_duration`` is not installed; then compares with the
predictions of this environment. Exit 0 when they are equal.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

_SCORE = """
import importlib.util, json, sys
import mlflow, pandas as pd
assert importlib.util.find_spec("taxi_duration") is None, "taxi_duration is installed here"
model = mlflow.pyfunc.load_model(sys.argv[1])
predictions = model.predict(pd.read_parquet(sys.argv[2]))
print(json.dumps([None if p is None or p != p else float(p) for p in predictions]))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-uri", required=True)
    parser.add_argument("--month", required=True, type=Path, help="a TLC parquet file to score")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow/mlflow.db")
    args = parser.parse_args()

    mlflow.set_tracking_uri(args.tracking_uri)
    here = np.asarray(
        mlflow.pyfunc.load_model(args.model_uri).predict(pd.read_parquet(args.month)),
        dtype=np.float64,
    )
    with tempfile.TemporaryDirectory(prefix="fresh-venv-") as work:
        model_dir = Path(mlflow.artifacts.download_artifacts(args.model_uri, dst_path=work))
        requirements = model_dir / "requirements.txt"
        print(f"requirements: {requirements.read_text().split()}")
        env_dir = Path(work) / "venv"
        begun = time.perf_counter()
        venv.EnvBuilder(with_pip=True).create(env_dir)
        python = env_dir / "bin" / "python"
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)], check=True
        )
        print(f"fresh venv installed in {time.perf_counter() - begun:.0f} s")
        scored = subprocess.run(
            [str(python), "-c", _SCORE, str(model_dir), str(args.month.resolve())],
            cwd=work,
            capture_output=True,
            text=True,
        )
    if scored.returncode != 0:
        print(scored.stderr[-3000:], file=sys.stderr)
        return 1
    there = np.array(json.loads(scored.stdout.strip().splitlines()[-1]), dtype=np.float64)
    same = there.shape == here.shape and np.array_equal(there, here, equal_nan=True)
    print(f"{len(there):,} trips scored in the fresh venv: {'equal' if same else 'DIFFERENT'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
