"""The MLflow store: a client configured for it, the lock on the embedded (sqlite) store,
and the experiment the runs go in."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from taxi_duration.errors import create_folder
from taxi_duration.settings import Settings


def _configure(settings: Settings) -> MlflowClient:
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    uri = settings.tracking_uri
    if settings.mlflow_tracking_uri is not None or uri in _READY_STORES:
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    # Two processes creating the sqlite store at once race in its schema migrations
    # ("Online migration expected to match one row"): create it under a file lock.
    with embedded_store_lock(settings):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    _READY_STORES.add(settings.tracking_uri)
    return client


_READY_STORES: set[str] = set()


@contextlib.contextmanager
def embedded_store_lock(settings: Settings) -> Iterator[None]:
    """An exclusive lock on the embedded (sqlite) store across processes; none for a server.

    Held while the store is created, and while a new version is compared with the champion
    and promoted, so that two runs at once never both take the champion from the same one.
    """
    if settings.mlflow_tracking_uri is not None:
        yield
        return
    create_folder(settings.mlflow_dir, "MLflow folder", "TAXI_DURATION_MLFLOW_DIR")
    with open(settings.mlflow_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


_EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
_MODEL_TRAINING_KIND = "custom_model_development"


def experiment_id(client: MlflowClient, settings: Settings) -> str:
    """The experiment's id, created on first use (safe when two runs race to create it).

    MLflow 3 opens an experiment without a kind in its GenAI view: one created without it
    (e.g. by an older version of this project) gets the model-training kind; a kind chosen
    in the UI is kept.
    """
    experiment = client.get_experiment_by_name(settings.experiment_name)
    if experiment is not None:
        if _EXPERIMENT_KIND_TAG not in experiment.tags:
            client.set_experiment_tag(
                experiment.experiment_id, _EXPERIMENT_KIND_TAG, _MODEL_TRAINING_KIND
            )
        return str(experiment.experiment_id)
    try:
        return str(
            client.create_experiment(
                settings.experiment_name,
                artifact_location=settings.artifact_location,
                tags={_EXPERIMENT_KIND_TAG: _MODEL_TRAINING_KIND},
            )
        )
    except MlflowException:
        experiment = client.get_experiment_by_name(settings.experiment_name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)
