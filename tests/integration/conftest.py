"""Fixtures for flows run in-process: generated months served over HTTP, the embedded store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dask_cluster import running_dask_cluster
from mlflow.tracking import MlflowClient


@pytest.fixture
def data_url(workspace: Path, synthetic_data_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The generated months' server, as the download base URL."""
    monkeypatch.setenv("TAXI_DURATION_DATA_URL", synthetic_data_url)
    return synthetic_data_url


@pytest.fixture
def registry(workspace: Path, data_url: str) -> MlflowClient:
    """A client of the workspace's embedded MLflow store (tracking and registry)."""
    uri = f"sqlite:///{workspace / 'mlflow' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture(scope="module")
def two_dask_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``dask scheduler`` and two ``dask worker`` processes of 1 thread and 1 GiB each."""
    with running_dask_cluster(tmp_path_factory.mktemp("dask"), workers=2) as address:
        yield address
