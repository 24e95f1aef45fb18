"""The registry: the champion and what its run recorded, loading and scoring a registered
version, and the aliases (``record_promotion``, ``set_champion`` by hand).

The aliases are the truth about which version is the champion: no tag says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from taxi_duration.errors import InvalidInputError, RegistryError
from taxi_duration.models import TripDurationModel
from taxi_duration.prepare import raw_example
from taxi_duration.promote import CHALLENGER, CHAMPION, PromotionDecision
from taxi_duration.settings import Settings
from taxi_duration.tracking.errors import _unless_unreachable, translate_errors
from taxi_duration.tracking.store import _configure


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
