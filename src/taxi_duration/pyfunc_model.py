"""MLflow models-from-code entry point, run by MLflow when it loads a logged model.

Never imported by the package: ``tracking.runs.log_and_register`` passes this file to MLflow,
which copies it into the model, with the package's own code (``code_paths``), and executes
it on load. So a version loads wherever its requirements are installed, ``taxi_duration``
or not: MLflow puts the copied package on the path first.
"""

from __future__ import annotations

import pickle
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel


class TripDurationPyfunc(PythonModel):
    """Preprocessor and model as one pyfunc: ``predict`` takes raw TLC rows."""

    def load_context(self, context: Any) -> None:
        with open(context.artifacts["model"], "rb") as file:
            self.model = pickle.load(file)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        """Minutes for each row; None where the trip lacks what the model needs, so that a
        scoring server answers JSON ``null`` (a float NaN would be written as ``NaN``).
        ``np.asarray(..., dtype=float)`` turns the Nones back into NaN."""
        minutes = np.asarray(self.model.predict_raw(model_input), dtype=np.float64)
        answer = minutes.astype(object)
        answer[~np.isfinite(minutes)] = None
        return answer


mlflow.models.set_model(TripDurationPyfunc())
