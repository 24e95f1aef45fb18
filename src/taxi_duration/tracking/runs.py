"""Runs: log a training run to MLflow and register its model; parent runs and the nested
runs under them (tuning trials, backtest months).

A version is registered only after the run has logged its params, metrics and model and
ended as FINISHED, so a failed run never leaves a model version behind.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import subprocess
import time
import warnings
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import mlflow
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Metric, Param
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient
from mlflow.types.schema import AnyType, ColSpec, Schema

from taxi_duration.errors import (
    TrackingError,
)
from taxi_duration.fingerprint import code_version, model_fingerprint
from taxi_duration.ingest import file_digest
from taxi_duration.models import TripDurationModel
from taxi_duration.prepare import (
    IGNORED_TLC_COLUMNS,
    RAW_DISTANCE_COLUMNS,
    RAW_PICKUP_COLUMNS,
    REQUEST_COLUMNS,
    ZONE_COLUMNS,
)
from taxi_duration.settings import Settings
from taxi_duration.summary import MonthData, RegisteredModel, RunRecord
from taxi_duration.tracking.errors import translate_errors
from taxi_duration.tracking.store import (
    _configure,
    embedded_store_lock,
    experiment_id,
)

_PYFUNC_ENTRY_POINT = Path(__file__).parents[1] / "pyfunc_model.py"
# The package itself travels with each version (MLflow's code_paths): the pickled model's
# classes load from it where taxi_duration is not installed.
_PACKAGE_DIR = Path(__file__).parents[1]
# Listed explicitly: inferring them starts a subprocess and takes seconds.
# Each a distribution name, or the names one module ships under: the installed one is named.
_PIP_PACKAGES = (
    ("mlflow",),
    ("numpy",),
    ("pandas",),
    ("pyarrow",),
    ("scikit-learn",),
    ("scipy",),
    ("xgboost-cpu", "xgboost"),  # the same module, CPU-only or with CUDA
)


def pip_requirements() -> list[str]:
    """``name==version`` of each library the model loads with, as installed here."""
    pinned = []
    for names in _PIP_PACKAGES:
        for name in names:
            try:
                pinned.append(f"{name}=={package_version(name)}")
                break
            except PackageNotFoundError:
                continue
    return pinned


def _raw_trip_signature() -> ModelSignature:
    """Raw TLC rows of any color: one of the pickup columns, zones, one of the distances.

    Zones are of any type: published as integers, they become floats in months with nulls.
    The request-time fields are optional and of any numeric type (missing: NaN); the other
    published columns are accepted and ignored, so a row as published raises no warning.
    """
    pickups = [ColSpec("datetime", name, required=False) for name in RAW_PICKUP_COLUMNS]
    zones = [ColSpec(AnyType(), name) for name in ZONE_COLUMNS]  # type: ignore[no-untyped-call]
    distances = [ColSpec("double", name, required=False) for name in RAW_DISTANCE_COLUMNS]
    optional = [
        ColSpec(AnyType(), name, required=False)  # type: ignore[no-untyped-call]
        for name in (*REQUEST_COLUMNS, *IGNORED_TLC_COLUMNS)
    ]
    return ModelSignature(
        inputs=Schema([*pickups, *zones, *distances, *optional]),
        outputs=Schema([ColSpec("double", "predicted_duration")]),
    )


@translate_errors
def log_and_register(
    settings: Settings,
    model: TripDurationModel,
    record: RunRecord,
    work_dir: Path,
    register: bool = True,
) -> RegisteredModel:
    """Log everything about a training run, then (``register``) register its model as a new
    version; without it, no version or alias is touched.

    A model identical to a registered version of its color (same fingerprint: data digests,
    parameters, code) is not registered again: the run names that version and logs no model.
    With ``record.run_id``, log into that (already started) run, e.g. a tuning run's parent.
    """
    client = _configure(settings)
    digests = {data.context: file_digest(data.path) for data in record.datasets}
    fingerprint = model_fingerprint(digests, record.params, code_version())
    name = settings.registered_model(record.tags["color"]) if register else None
    # Held from the look-up to the registration (embedded store): of two identical runs at
    # once, one registers and the other finds its version.
    with embedded_store_lock(settings) if register else contextlib.nullcontext():
        twin = None if name is None else _version_with_fingerprint(client, name, fingerprint)
        run_id, info = _log_run(
            client, settings, model, record, work_dir, digests, fingerprint, twin
        )
        if name is not None and twin is not None:
            twin_uri = f"models:/{name}/{twin}"
            size = mlflow.models.Model.load(twin_uri).model_size_bytes
            return RegisteredModel(run_id, name, twin, twin_uri, size, reused=True)
        assert info is not None  # logged: no twin
        # ModelInfo lacks the size MLflow records in the MLmodel file.
        size = mlflow.models.Model.load(info.model_uri).model_size_bytes
        if name is None:
            return RegisteredModel(run_id, None, None, info.model_uri, size)
        # register_model prints its progress on stderr; the caller reports the version instead.
        with contextlib.redirect_stderr(io.StringIO()):
            registered = mlflow.register_model(
                info.model_uri, name, tags={FINGERPRINT_TAG: fingerprint}
            )
    version = str(registered.version)
    client.update_model_version(name, version, description=record.description())
    return RegisteredModel(run_id, name, version, f"models:/{name}/{version}", size)


# On each version (and its run): what makes two models the same (fingerprint.py).
FINGERPRINT_TAG = "taxi_duration.fingerprint"
# On a run whose model was identical to a registered version: that version.
REUSED_VERSION_TAG = "taxi_duration.reused_version"
# On a training run: "true" if its months were not held to the data checks (--skip-checks).
SKIP_CHECKS_TAG = "taxi_duration.skip_checks"


def _version_with_fingerprint(client: MlflowClient, name: str, fingerprint: str) -> str | None:
    """The oldest version of ``name`` with this fingerprint, if any."""
    versions = client.search_model_versions(
        f"name = '{name}' and tags.`{FINGERPRINT_TAG}` = '{fingerprint}'"
    )
    return str(min(int(v.version) for v in versions)) if versions else None


def _log_run(
    client: MlflowClient,
    settings: Settings,
    model: TripDurationModel,
    record: RunRecord,
    work_dir: Path,
    digests: dict[str, str],
    fingerprint: str,
    twin: str | None,
) -> tuple[str, ModelInfo | None]:
    """The run's params, metrics, tags, months, charts and learning curve, and its model
    unless an identical version (``twin``) is registered already; ended FINISHED."""
    run_id = record.run_id
    with mlflow.start_run(
        run_id=run_id,
        experiment_id=None if run_id else experiment_id(client, settings),
        run_name=None if run_id else record.run_name,
    ) as run:
        mlflow.log_params(record.params)
        mlflow.log_metrics(record.metrics)
        tags = {
            **record.tags,
            **_code_version_tags(),
            FINGERPRINT_TAG: fingerprint,
            # The run page's description: months, rows, validation RMSE.
            "mlflow.note.content": record.description(),
        }
        if twin is not None:
            tags[REUSED_VERSION_TAG] = twin
        mlflow.set_tags(tags)
        for data in record.datasets:
            _log_month(data, digests[data.context])
        for name, png in record.charts.items():
            (work_dir / name).write_bytes(png)
            mlflow.log_artifact(str(work_dir / name), artifact_path="charts")
        now = int(time.time() * 1000)
        curve = [
            Metric(key, value, now, step)
            for key, values in record.history.items()
            for step, value in enumerate(values)
        ]
        for start in range(0, len(curve), 1000):
            client.log_batch(run.info.run_id, metrics=curve[start : start + 1000])
        if twin is not None:
            return str(run.info.run_id), None
        model_file = work_dir / "model.pkl"
        with open(model_file, "wb") as file:
            pickle.dump(model, file, protocol=pickle.HIGHEST_PROTOCOL)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(_PYFUNC_ENTRY_POINT),
            code_paths=[str(_PACKAGE_DIR)],
            artifacts={"model": str(model_file)},
            signature=_raw_trip_signature(),
            input_example=record.input_example,
            pip_requirements=pip_requirements(),
        )
    return str(run.info.run_id), info


def _log_month(data: MonthData, digest: str) -> None:
    """A month as an MLflow dataset of the run: its source, digest and rows."""
    with warnings.catch_warnings():  # a local path "can be interpreted in multiple ways"
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(data.source)
    # MLflow's own concrete class (its annotations still call ``profile`` abstract); the
    # digest column holds 36 characters: the full sha256 goes in the input's tags.
    dataset = MetaDataset(source=source, name=data.name, digest=digest[:32])  # type: ignore[abstract]
    mlflow.log_input(dataset, context=data.context, tags={"sha256": digest, "rows": str(data.rows)})


def _code_version_tags() -> dict[str, str]:
    """The git commit of the code that trained, when it runs from a checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=_PACKAGE_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}  # an installed wheel, or no git
    return {"mlflow.source.git.commit": commit} if commit else {}


@translate_errors
def log_text(settings: Settings, run_id: str, text: str, name: str) -> None:
    """A text file (e.g. the run's summary in markdown) among a run's artifacts."""
    _configure(settings).log_text(run_id, text, name)


@translate_errors
def start_parent_run(settings: Settings, run_name: str, tags: dict[str, str]) -> str:
    """Start a run that nested runs (e.g. tuning trials) hang under; returns its id."""
    client = _configure(settings)
    run = client.create_run(experiment_id(client, settings), run_name=run_name, tags=tags)
    return str(run.info.run_id)


@contextlib.contextmanager
def parent_run(settings: Settings, run_name: str, tags: dict[str, str]) -> Iterator[str]:
    """A started parent run's id; marked FAILED if the block raises (the block ends it
    otherwise). The block's error is the one that propagates, even if marking fails."""
    run_id = start_parent_run(settings, run_name, tags)
    try:
        yield run_id
    except BaseException:
        with contextlib.suppress(TrackingError):
            end_run(settings, run_id, "FAILED")
        raise


@translate_errors
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


@translate_errors
def end_run(settings: Settings, run_id: str, status: str) -> None:
    """Mark a run FINISHED or FAILED (e.g. a parent run whose flow failed)."""
    _configure(settings).set_terminated(run_id, status=status)


# ---- backtests ----------------------------------------------------------------------------


@translate_errors
def log_parent_results(
    settings: Settings,
    run_id: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    artifact: Path | None = None,
) -> None:
    """Params, metrics and a file (e.g. a chart) on an already started run, such as a parent."""
    client = _configure(settings)
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(key, value, now, 0) for key, value in metrics.items()],
        params=[Param(key, str(value)) for key, value in params.items()],
    )
    if artifact is not None:
        client.log_artifact(run_id, str(artifact))
