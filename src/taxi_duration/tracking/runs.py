"""Tracking: log a training run to MLflow and register its model. The only MLflow import
but pyfunc_model.py, the registered model's entry file.

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
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient
from mlflow.types.schema import AnyType, ColSpec, Schema

from taxi_duration.errors import (
    InvalidInputError,
    RegistryError,
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
    raw_example,
)
from taxi_duration.promote import CHALLENGER, CHAMPION, PromotionDecision
from taxi_duration.settings import Settings
from taxi_duration.summary import MonthData, RegisteredModel, RunRecord
from taxi_duration.tracking.errors import _unless_unreachable, translate_errors
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


# ---- the champion -----------------------------------------------------------------------


@translate_errors
def champion_version(settings: Settings, color: str) -> str | None:
    """The version the ``champion`` alias of ``color``'s model points to, if any."""
    client = _configure(settings)
    try:
        name = settings.registered_model(color)
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException as error:
        _unless_unreachable(settings, error)  # a server that fails is not "no champion yet"
        return None


@dataclass(frozen=True)
class ChampionRecord:
    """The champion's version and what its run recorded: the months it was trained on (the
    window's last and its length), the month it was validated on, its validation RMSE."""

    version: str
    train_month: str
    window: int
    val_month: str | None
    validation_rmse: float | None


@translate_errors
def champion_record(settings: Settings, color: str) -> ChampionRecord | None:
    """The color's champion and its run's months and validation RMSE; None without one."""
    client = _configure(settings)
    try:
        version = client.get_model_version_by_alias(settings.registered_model(color), CHAMPION)
    except MlflowException as error:
        _unless_unreachable(settings, error)
        return None
    if version.run_id is None:
        raise RegistryError(
            f"{version.name} version {version.version} has no run: it records no months"
        )
    data = client.get_run(version.run_id).data
    val_month = data.params.get("val_month", "none")
    return ChampionRecord(
        version=str(version.version),
        train_month=data.params["train_month"],
        window=int(data.params.get("window", "1")),
        val_month=None if val_month == "none" else val_month,
        validation_rmse=data.metrics.get("rmse"),
    )


@translate_errors
def load_model(settings: Settings, uri: str) -> Any:
    """The pyfunc at ``uri`` (e.g. ``models:/nyc-taxi-duration@champion``)."""
    _configure(settings)
    return mlflow.pyfunc.load_model(uri)


@translate_errors
def resolve_version(settings: Settings, uri: str) -> str:
    """The registry version a ``models:/name/N`` or ``models:/name@alias`` URI stands for."""
    client = _configure(settings)
    reference = uri.removeprefix("models:/")
    if reference == uri:
        return uri  # not a registry URI (e.g. runs:/...): the URI is the version
    try:
        if "@" in reference:
            name, alias = reference.split("@", 1)
            return str(client.get_model_version_by_alias(name, alias).version)
        name, version = reference.rsplit("/", 1)
        return str(client.get_model_version(name, version).version)
    except (MlflowException, ValueError) as error:
        if isinstance(error, MlflowException):
            _unless_unreachable(settings, error)
        raise RegistryError(
            f"model {uri} is not in the registry at {settings.tracking_uri}: "
            "train one first or give another --model-uri"
        ) from None


def load_version(settings: Settings, version: str, color: str) -> Any:
    """The pyfunc of a registered version of the color's model."""
    return load_model(settings, f"models:/{settings.registered_model(color)}/{version}")


def version_model(settings: Settings, version: str, color: str) -> TripDurationModel:
    """The model inside a registered version's pyfunc: ours, so it pickles (to Dask workers),
    where the pyfunc's class lives in a module MLflow makes on load."""
    model: TripDurationModel = load_version(settings, version, color).unwrap_python_model().model
    return model


@translate_errors
def score_version(settings: Settings, version: str, trips: pd.DataFrame, color: str) -> np.ndarray:
    """Predictions of a registered version for prepared trips (e.g. the validation month)."""
    model = load_version(settings, version, color)
    return np.asarray(model.predict(raw_example(trips, color, rows=None)), dtype=np.float64)


@translate_errors
def record_promotion(
    settings: Settings, color: str, version: str, decision: PromotionDecision
) -> None:
    """Point the decision's alias at ``version``; add the decision to the version's record.

    The aliases are the truth about which version is the champion: no tag says so (it would
    go stale); each version keeps the decisions about it in its description and tags.
    """
    client = _configure(settings)
    name = settings.registered_model(color)
    tags = {
        "promotion.reason": decision.reason,
        "promotion.rmse": "" if decision.new_rmse is None else f"{decision.new_rmse:.6f}",
        "promotion.champion_rmse": ""
        if decision.champion_rmse is None
        else f"{decision.champion_rmse:.6f}",
        "promotion.previous_champion": decision.previous_champion or "",
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, decision.alias, version)
    _add_to_description(client, name, version, f"{decision.alias}: {decision.reason}")


def _add_to_description(client: MlflowClient, name: str, version: str, line: str) -> None:
    described = client.get_model_version(name, version).description or ""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    client.update_model_version(name, version, description=f"{described}\n\n{stamp} {line}")


@dataclass(frozen=True)
class ManualPromotion:
    """A champion set by hand, and what it replaced: each version's validation RMSE."""

    model_name: str
    version: str
    rmse: float | None
    val_month: str | None
    previous: str | None
    previous_rmse: float | None
    previous_val_month: str | None


@translate_errors
def set_champion(settings: Settings, color: str, version: str) -> ManualPromotion:
    """Make ``version`` of ``color``'s model the champion by hand (e.g. a rollback)."""
    client = _configure(settings)
    name = settings.registered_model(color)
    try:
        chosen = client.get_model_version(name, version)
    except MlflowException as error:
        _unless_unreachable(settings, error)
        raise InvalidInputError(
            f"version {version} of model {name!r} does not exist: "
            f"{color} versions are registered under {name}"
        ) from None
    previous = champion_version(settings, color)
    client.set_registered_model_alias(name, CHAMPION, version)
    _add_to_description(client, name, version, f"champion: set by hand (was v{previous})")
    if previous is not None and previous != version:
        # The replaced champion stays reachable as the challenger.
        client.set_registered_model_alias(name, CHALLENGER, previous)
        _add_to_description(client, name, previous, f"challenger: replaced by hand with v{version}")
    rmse, val_month = _validation_rmse(client, chosen.run_id)
    previous_rmse, previous_month = (None, None)
    if previous is not None:
        previous_rmse, previous_month = _validation_rmse(
            client, client.get_model_version(name, previous).run_id
        )
    return ManualPromotion(name, version, rmse, val_month, previous, previous_rmse, previous_month)


def _validation_rmse(client: MlflowClient, run_id: str | None) -> tuple[float | None, str | None]:
    """A version's run's validation RMSE and month, as it recorded them."""
    if run_id is None:
        return None, None
    data = client.get_run(run_id).data
    return data.metrics.get("rmse"), data.params.get("val_month")


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
