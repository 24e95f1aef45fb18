"""Fixtures of the fault tests: a fresh fault-injecting data server, a shared Prefect API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_support import FaultServer, start_fault_server


@pytest.fixture
def fault_server(synthetic_months: Path) -> Iterator[FaultServer]:
    """The generated months behind a server that fails on request (fresh per test)."""
    state, server = start_fault_server(synthetic_months)
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def prefect_api_url(prefect_api: None) -> str:
    """The URL of the session's temporary Prefect server, for CLI subprocesses to share.

    Sharing it spares every subprocess the start of its own ephemeral server.
    """
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "prefect_test_harness sets PREFECT_API_URL"
    return str(url)
