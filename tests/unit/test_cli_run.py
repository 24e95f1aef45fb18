"""What the CLI does once the arguments are checked, before and around the flow."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, temporary_settings

from taxi_duration import cli
from taxi_duration.specs import Spec, TrainSpec


@pytest.mark.parametrize("api_url", [None, "http://127.0.0.1:9/api"])
def test_the_temporary_server_starts_while_the_flow_loads(
    api_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefect's temporary server took 7.5 s to start after 10 s of imports (issue #13): now
    it starts first, in the background, and the flow runs once both are done. With a
    configured server there is nothing to start."""
    events: list[str] = []
    loaded = threading.Event()

    def start(self: SubprocessASGIServer, timeout: int | None = None) -> None:
        # Ends only once the flow has loaded: started in the background, it waits no time;
        # started before the flow loads on the same thread, it waits 10 s in vain and the
        # order below is wrong.
        loaded.wait(timeout=10)
        events.append("server started")

    def flow_call(spec: Spec) -> Callable[[], dict[str, Any]]:
        events.append("flow loaded")
        loaded.set()
        return lambda: events.append("flow runs") or {}

    monkeypatch.setattr(SubprocessASGIServer, "start", start)
    monkeypatch.setattr(cli, "_flow_call", flow_call)
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        cli._run(TrainSpec.parse(year=2023, month=1))
    if api_url is None:
        assert events == ["flow loaded", "server started", "flow runs"]
    else:
        assert events == ["flow loaded", "flow runs"]


def test_prefect_services_draining_at_exit_add_no_line_after_the_error() -> None:
    """On a busy machine Prefect's events and logs workers warn "Still processing items" as
    they drain at exit: after a failed run's one error line, a second line (seen in CI)."""
    import subprocess
    import sys

    script = (
        "import argparse, logging\n"
        "from taxi_duration import cli\n"
        "cli._configure_runtime(argparse.Namespace(verbose=False, quiet=False))\n"
        "for name in ('EventsWorker', 'APILogWorker'):\n"
        "    logging.getLogger(name).warning('Still processing items: 4 items remaining...')\n"
        "logging.getLogger('prefect.flow_runs').warning('a warning the user sees')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert "Still processing items" not in result.stderr
    assert "a warning the user sees" in result.stderr
