"""Tracking: log a training run to MLflow and register its model. The only MLflow import.

A version is registered only after the run has logged its params, metrics and model and
ended as FINISHED, so a failed run never leaves a model version behind.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import time
import warnings
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.pyfunc.model import PythonModel
from mlflow.tracking import MlflowClient

from taxi_duration.models import TripDurationModel
from taxi_duration.settings import Settings

_PYFUNC_ENTRY_POINT = Path(__file__).with_name("pyfunc_model.py")
# Listed explicitly: inferring them starts a subprocess and takes seconds.
_PIP_PACKAGES = ("mlflow", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy", "xgboost")


@dataclass(frozen=True)
class RegisteredModel:
    """Where a training run's model ended up."""

    run_id: str
    model_name: str
    model_version: str
    model_uri: str
    model_size_bytes: int | None


class TripDurationPyfunc(PythonModel):
    """Preprocessor and model as one pyfunc: ``predict`` takes raw TLC rows."""

    def load_context(self, context: Any) -> None:
        with open(context.artifacts["model"], "rb") as file:
            self.model: TripDurationModel = pickle.load(file)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        return self.model.predict_raw(model_input)


def _configure(settings: Settings) -> MlflowClient:
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def experiment_id(client: MlflowClient, settings: Settings) -> str:
    """The experiment's id, created on first use (safe when two runs race to create it)."""
    experiment = client.get_experiment_by_name(settings.experiment_name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(
            client.create_experiment(
                settings.experiment_name, artifact_location=settings.artifact_location
            )
        )
    except MlflowException:
        experiment = client.get_experiment_by_name(settings.experiment_name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def log_and_register(
    settings: Settings,
    *,
    run_name: str,
    model: TripDurationModel,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    history: dict[str, list[float]],
    input_example: pd.DataFrame,
    work_dir: Path,
    run_id: str | None = None,
) -> RegisteredModel:
    """Log everything about a training run, then register its model as a new version.

    With ``run_id``, log into that (already started) run, e.g. a tuning run's parent.
    """
    client = _configure(settings)
    model_file = work_dir / "model.pkl"
    with open(model_file, "wb") as file:
        pickle.dump(model, file, protocol=pickle.HIGHEST_PROTOCOL)
    with warnings.catch_warnings():
        # Zone ids are published as integers; MLflow hints that integers can't hold nulls.
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        signature = infer_signature(input_example, model.predict_raw(input_example))
    with mlflow.start_run(
        run_id=run_id,
        experiment_id=None if run_id else experiment_id(client, settings),
        run_name=None if run_id else run_name,
    ) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.set_tags(tags)
        now = int(time.time() * 1000)
        curve = [
            Metric(key, value, now, step)
            for key, values in history.items()
            for step, value in enumerate(values)
        ]
        for start in range(0, len(curve), 1000):
            client.log_batch(run.info.run_id, metrics=curve[start : start + 1000])
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(_PYFUNC_ENTRY_POINT),
            artifacts={"model": str(model_file)},
            signature=signature,
            input_example=input_example,
            pip_requirements=[f"{name}=={package_version(name)}" for name in _PIP_PACKAGES],
        )
    # ModelInfo lacks the size MLflow records in the MLmodel file.
    size = mlflow.models.Model.load(info.model_uri).model_size_bytes
    # register_model prints its progress on stderr; the caller reports the version instead.
    with contextlib.redirect_stderr(io.StringIO()):
        registered = mlflow.register_model(info.model_uri, settings.model_name)
    return RegisteredModel(
        run_id=run.info.run_id,
        model_name=settings.model_name,
        model_version=str(registered.version),
        model_uri=f"models:/{settings.model_name}/{registered.version}",
        model_size_bytes=size,
    )


def start_parent_run(settings: Settings, run_name: str, tags: dict[str, str]) -> str:
    """Start a run that nested runs (e.g. tuning trials) hang under; returns its id."""
    client = _configure(settings)
    run = client.create_run(experiment_id(client, settings), run_name=run_name, tags=tags)
    return str(run.info.run_id)


def log_nested_run(
    settings: Settings,
    parent_run_id: str,
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    status: str = "FINISHED",
) -> str:
    """A finished child run of ``parent_run_id`` (safe to call from several threads)."""
    client = _configure(settings)
    parent = client.get_run(parent_run_id)
    run = client.create_run(
        parent.info.experiment_id,
        run_name=run_name,
        tags={"mlflow.parentRunId": parent_run_id},
    )
    now = int(time.time() * 1000)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(key, value, now, 0) for key, value in metrics.items()],
        params=[Param(key, str(value)) for key, value in params.items()],
    )
    client.set_terminated(run.info.run_id, status=status)
    return str(run.info.run_id)


def end_run(settings: Settings, run_id: str, status: str) -> None:
    """Mark a run FINISHED or FAILED (e.g. a parent run whose flow failed)."""
    _configure(settings).set_terminated(run_id, status=status)
