"""Predict: score every trip of a month and write the predictions as parquet.

No duration filter: at prediction time the dropoff is unknown. A trip with a missing zone
or distance gets a null prediction. A relative output path is taken in the outputs folder
(``TAXI_DURATION_OUTPUT_DIR``), never in the folder the run happens to work in.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from taxi_duration.errors import create_folder
from taxi_duration.months import Month
from taxi_duration.prepare import ZONE_COLUMNS


def ride_ids(month: Month, rows: int) -> np.ndarray:
    """``{year}/{month:02d}_{row}`` for each row, as in the course."""
    prefix = f"{month.year:04d}/{month.month:02d}_"
    return np.char.add(prefix, np.arange(rows).astype(str)).astype(object)


def predictions_frame(
    trips: pd.DataFrame, predicted: np.ndarray, month: Month, model_version: str
) -> pd.DataFrame:
    """Ride id, zones, predicted duration (minutes, NaN = null) and the model version."""
    return pd.DataFrame(
        {
            "ride_id": ride_ids(month, len(trips)),
            **{zone: trips[zone].to_numpy() for zone in ZONE_COLUMNS},
            "predicted_duration": np.asarray(predicted, dtype=np.float64),
            "model_version": model_version,
        }
    )


def output_path(output: str, output_dir: Path) -> Path:
    """The absolute file ``output`` names: as given if absolute (or ``~/...``), else inside
    ``output_dir``."""
    return (output_dir / Path(output).expanduser()).resolve()


def write_parquet_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Write to a temporary file beside ``path`` and rename it: never a partial file."""
    create_folder(path.parent, "output folder", "TAXI_DURATION_OUTPUT_DIR or --output")
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    temp = Path(temp_name)
    try:
        frame.to_parquet(temp, index=False)  # NaN predictions are written as nulls
        temp.chmod(0o644)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
