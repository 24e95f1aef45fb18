"""Fixtures for flows run in-process: generated months served over HTTP, the embedded store."""

from __future__ import annotations

from pathlib import Path

import pytest
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
