"""Fixtures of the fault tests: a fresh fault-injecting data server."""

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
