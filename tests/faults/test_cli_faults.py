"""The ``taxi-duration`` command under faults: real subprocesses, loopback servers only.

The subprocesses share the session's temporary Prefect server (``prefect_api_url``) so
that none starts an ephemeral one of its own; everything else is as a user runs it.
"""

from __future__ import annotations

import http.server
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
from cli_output import non_progress_lines
from fault_support import FaultServer, closed_port_url, run_cli, start_cli, start_fault_server
from mlflow.tracking import MlflowClient
from tlc_samples import make_trips

from taxi_duration.environment import RUN_ENVIRONMENT_DEFAULTS
from taxi_duration.months import Month

pytestmark = pytest.mark.slow

JAN, FEB = Month(2023, 1), Month(2023, 2)
TRAIN_JAN = ("train", "--year", "2023", "--month", "1", "--model", "linear")


def _client(workspace: Path) -> MlflowClient:
    uri = f"sqlite:///{workspace / 'mlflow' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def registry(workspace: Path) -> tuple[list[str], str | None]:
    """The registered versions and the champion's version (None: no store or no champion)."""
    if not (workspace / "mlflow" / "mlflow.db").exists():
        return [], None
    client = _client(workspace)
    versions = sorted(str(v.version) for v in client.search_model_versions())
    if not versions:
        return [], None
    # Read from the model's aliases: any other failure of the registry fails the test.
    champion = client.get_registered_model("nyc-taxi-duration-green").aliases.get("champion")
    return versions, None if champion is None else str(champion)


def one_error_line(result: object) -> str:
    stderr = result.stderr  # type: ignore[attr-defined]
    lines = non_progress_lines(stderr)  # a run that had started shows its steps first
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("taxi-duration: error: ")
    return str(lines[0])


# --- bad data: a clear error naming the column or month, nothing registered -----------


def _bad_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    good = make_trips("green", JAN, rows=500)
    files = {}
    files["missing"] = folder / "missing-column.parquet"
    good.drop(columns=["trip_distance"]).to_parquet(files["missing"], index=False)
    files["wrong_type"] = folder / "wrong-type.parquet"
    good.assign(PULocationID=good["PULocationID"].astype(str)).to_parquet(
        files["wrong_type"], index=False
    )
    # Served under the TLC name of 2023-01: every trip lasts over an hour.
    no_rows = good.assign(lpep_dropoff_datetime=good["lpep_pickup_datetime"] + pd.Timedelta("2h"))
    files["no_rows"] = folder / "green_tripdata_2023-01.parquet"
    no_rows.to_parquet(files["no_rows"], index=False)
    return files


def test_bad_data_is_one_clear_line_and_changes_no_champion(
    workspace: Path, fault_server: FaultServer, prefect_api_url: str
) -> None:
    url = fault_server.url
    first = run_cli(workspace, url, prefect_api_url, *TRAIN_JAN)
    assert first.returncode == 0, first.stderr
    assert registry(workspace) == (["1"], "1")

    bad = _bad_files(workspace / "bad")
    served, server = start_fault_server(workspace / "bad")
    try:
        cases = [
            ((*TRAIN_JAN, "--train-path", str(bad["missing"])), url, "'trip_distance' is missing"),
            # The download path: the server's January keeps no trip after the 1-60 min filter.
            ((*TRAIN_JAN, "--no-validation"), served.url, "no trips kept"),
        ]
        for number, (args, data_url, expected) in enumerate(cases):
            data_dir = str(workspace / f"data-{number}")  # nothing cached: fetched afresh
            result = run_cli(
                workspace, data_url, prefect_api_url, *args, TAXI_DURATION_DATA_DIR=data_dir
            )
            assert result.returncode == 1, result.stderr
            line = one_error_line(result)
            assert expected in line, line
            assert result.stdout == ""
            assert registry(workspace) == (["1"], "1"), args
    finally:
        server.shutdown()
        server.server_close()
    assert "2023-01" in line  # the month's file is named


def test_a_month_failing_the_data_checks_is_one_line_exit_1_and_registers_nothing(
    workspace: Path, bad_months: Path, prefect_api_url: str
) -> None:
    """The one line, the exit code and the empty registry as a user sees them; the flows'
    side (tune, backtest, --skip-checks) is in tests/integration/test_checks_in_flows.py."""
    served, server = start_fault_server(bad_months)  # its 2023-02 has 90% zero distances
    try:
        result = run_cli(workspace, served.url, prefect_api_url, *TRAIN_JAN)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1, result.stderr
    line = one_error_line(result)
    assert re.fullmatch(
        r"taxi-duration: error: green 2023-02: share of trips with zero distance 0\.\d+ "
        r"is over the allowed 0\.15",
        line,
    ), line
    assert result.stdout == ""
    assert registry(workspace) == ([], None)


# --- MLflow unreachable or failing ---------------------------------------------------


@pytest.fixture
def hanging_up_tracking() -> Iterator[tuple[str, list[float]]]:
    """A tracking address that accepts each connection and closes it at once, unanswered:
    the times it was connected to."""
    listener = socket.create_server(("127.0.0.1", 0))
    connected: list[float] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            connected.append(time.monotonic())
            connection.close()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", connected
    listener.close()


def test_unreachable_tracking_server_is_one_line_in_bounded_time(
    workspace: Path,
    fault_server: FaultServer,
    prefect_api_url: str,
    hanging_up_tracking: tuple[str, list[float]],
) -> None:
    for tracking in (closed_port_url(), hanging_up_tracking[0]):
        start = time.monotonic()
        result = run_cli(
            workspace, fault_server.url, prefect_api_url, *TRAIN_JAN, MLFLOW_TRACKING_URI=tracking
        )
        elapsed = time.monotonic() - start
        assert result.returncode == 1, result.stderr
        line = one_error_line(result)
        assert f"MLflow tracking server {tracking} is unreachable" in line
        assert elapsed < 120
    # Counted where it hung up: the first call and MLflow's 3 retries, then nothing more.
    connected = hanging_up_tracking[1]
    assert len(connected) == 1 + int(RUN_ENVIRONMENT_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])


class _FailingTracking(http.server.BaseHTTPRequestHandler):
    """A tracking server that answers 503 to everything, and notes when each request came."""

    protocol_version = "HTTP/1.1"
    requests: ClassVar[list[tuple[float, str]]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _fail(self) -> None:
        self.requests.append((time.monotonic(), self.path))
        body = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "down"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = _fail


@pytest.fixture
def failing_tracking() -> Iterator[str]:
    _FailingTracking.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FailingTracking)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_failing_tracking_server_is_retried_a_bounded_time_then_one_line(
    workspace: Path, fault_server: FaultServer, prefect_api_url: str, failing_tracking: str
) -> None:
    start = time.monotonic()
    result = run_cli(
        workspace,
        fault_server.url,
        prefect_api_url,
        *TRAIN_JAN,
        MLFLOW_TRACKING_URI=failing_tracking,
    )
    assert result.returncode == 1, result.stderr
    line = one_error_line(result)
    assert f"MLflow tracking server {failing_tracking} is unreachable or failing" in line
    assert time.monotonic() - start < 120
    # The first request and MLFLOW_HTTP_REQUEST_MAX_RETRIES (3) retries, backing off (factor
    # 1: about 2 s, then 4 s), then no other request: the run gave up on the first call.
    times = [moment for moment, _ in _FailingTracking.requests]
    assert len({path for _, path in _FailingTracking.requests}) == 1, _FailingTracking.requests
    assert len(times) == 1 + int(RUN_ENVIRONMENT_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert sum(gaps) >= 2 + 4 - 1, gaps


# --- two runs at once on the embedded store --------------------------------------------


@pytest.mark.fresh_store  # races to create the store
def test_two_concurrent_runs_are_both_recorded_with_one_champion(
    workspace: Path, fault_server: FaultServer, prefect_api_url: str
) -> None:
    # Both start on an empty workspace: they race to create the store, the experiment,
    # the registered model, the versions and the champion alias. Two different models: an
    # identical one would not be registered again.
    processes = [
        start_cli(workspace, fault_server.url, prefect_api_url, *TRAIN_JAN, *features, "--json")
        for features in ([], ["--features", "separate"])
    ]
    results = [process.communicate(timeout=300) for process in processes]
    for process, (_, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr
    versions, champion = registry(workspace)
    assert versions == ["1", "2"]
    assert champion in versions
    client = _client(workspace)
    tags = [client.get_model_version("nyc-taxi-duration-green", v).tags for v in versions]
    # The promotions took turns: exactly one run found no champion; the other compared
    # itself with that one's version.
    previous = sorted(tag["promotion.previous_champion"] for tag in tags)
    assert previous[0] == ""
    assert previous[1] in versions
    assert "promotion.decision" not in tags[0]  # the alias is the truth: no tag to go stale
    experiment = client.get_experiment_by_name("nyc-taxi-duration")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    assert all(run.info.status == "FINISHED" for run in runs)
    assert list(workspace.rglob("*.part")) == []


def test_two_identical_runs_at_once_register_one_version(
    workspace: Path, fault_server: FaultServer, prefect_api_url: str
) -> None:
    # The look-up of an identical version and the registration hold the store's lock: the
    # second run finds the first one's version instead of registering its twin.
    processes = [
        start_cli(workspace, fault_server.url, prefect_api_url, *TRAIN_JAN, "--json")
        for _ in range(2)
    ]
    results = [process.communicate(timeout=300) for process in processes]
    for process, (_, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr
    payloads = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in results]
    assert sorted(payload["reused"] for payload in payloads) == [False, True]
    assert [payload["model_version"] for payload in payloads] == ["1", "1"]
    assert registry(workspace) == (["1"], "1")


# --- killed with SIGKILL, then run again -------------------------------------------------


def test_a_run_killed_mid_way_completes_when_run_again(
    workspace: Path, fault_server: FaultServer, prefect_api_url: str
) -> None:
    validation = workspace / "data" / "green_tripdata_2023-02.parquet"
    process = start_cli(workspace, fault_server.url, prefect_api_url, *TRAIN_JAN)
    deadline = time.monotonic() + 240
    while not validation.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # both months downloaded; prepare under way
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    fetched = {name: fault_server.requests[name] for name in fault_server.requests}

    again = run_cli(workspace, fault_server.url, prefect_api_url, *TRAIN_JAN, "--json")
    assert again.returncode == 0, again.stderr
    # The cached months were reused, not fetched again.
    assert dict(fault_server.requests) == fetched
    assert list(workspace.rglob("*.part")) == []
    assert sorted(p.name for p in (workspace / "data").iterdir() if p.is_file()) == [
        "green_tripdata_2023-01.parquet",
        "green_tripdata_2023-02.parquet",
    ]
    versions, champion = registry(workspace)
    assert champion == versions[-1]


# --- a data folder that cannot be written: one line, at once, not retried ----------------


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """An empty folder on a read-only file system (root writes through mode bits)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs as root here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.parametrize("below", ["", "data"], ids=["the folder", "a folder to create in it"])
def test_a_read_only_data_folder_is_one_line_at_once_without_retries(
    below: str,
    read_only_folder: Path,
    workspace: Path,
    fault_server: FaultServer,
    prefect_api_url: str,
) -> None:
    data_dir = read_only_folder / below
    begun = time.monotonic()
    # A retry would wait at least 30 s (a 60 s backoff, jitter 50%).
    result = run_cli(
        workspace,
        fault_server.url,
        prefect_api_url,
        *TRAIN_JAN,
        TAXI_DURATION_DATA_DIR=str(data_dir),
        TAXI_DURATION_DOWNLOAD_BACKOFF_SECONDS="60",
    )
    elapsed = time.monotonic() - begun
    line = one_error_line(result)
    assert result.returncode == 1
    assert f"data directory {data_dir} cannot be written" in line
    assert "TAXI_DURATION_DATA_DIR" in line
    assert elapsed < 30, f"took {elapsed:.0f} s: retried?"
    assert sum(fault_server.requests.values()) == 0
    assert registry(workspace) == ([], None)


@pytest.mark.parametrize(
    ("setting", "what"),
    [("TAXI_DURATION_DATA_DIR", "data directory"), ("TAXI_DURATION_MLFLOW_DIR", "MLflow folder")],
)
def test_a_folder_that_cannot_be_created_is_one_line_however_the_system_says_it(
    setting: str, what: str, workspace: Path, fault_server: FaultServer, prefect_api_url: str
) -> None:
    # Not even root can make a folder under /proc: mkdir's parents fail with ENOENT.
    folder = Path("/proc/taxi-duration-test/folder")
    result = run_cli(
        workspace, fault_server.url, prefect_api_url, *TRAIN_JAN, **{setting: str(folder)}
    )
    line = one_error_line(result)
    assert result.returncode == 1
    assert f"{what} {folder} cannot be written" in line, line
    assert setting in line
    assert registry(workspace) == ([], None)


# --- a month after the current one: bad input, refused before anything runs --------------


@pytest.mark.fresh_store  # asserts that no store is made
def test_a_future_month_exits_2_at_once(workspace: Path, fault_server: FaultServer) -> None:
    result = run_cli(
        workspace,
        fault_server.url,
        "http://127.0.0.1:9/api",
        "train",
        "--year",
        "2030",
        "--month",
        "1",
    )
    line = one_error_line(result)
    assert result.returncode == 2
    assert "training month 2030-01 is in the future" in line
    assert sum(fault_server.requests.values()) == 0
    assert not (workspace / "data").exists()
    assert not (workspace / "mlflow").exists()


# --- a Dask scheduler nobody runs: bad input, reported within seconds, nothing downloaded --


@pytest.mark.fresh_store  # asserts that no store is made
def test_an_unreachable_dask_scheduler_exits_2_within_seconds(
    workspace: Path, fault_server: FaultServer, prefect_api_url: str
) -> None:
    address = closed_port_url().replace("http://", "tcp://")
    begun = time.monotonic()
    result = run_cli(
        workspace,
        fault_server.url,
        prefect_api_url,
        "train",
        "--year",
        "2023",
        "--month",
        "1",
        "--dask-address",
        address,
        timeout=120,
    )
    seconds = time.monotonic() - begun
    line = one_error_line(result)
    assert result.returncode == 2
    assert f"dask address {address!r} is unreachable" in line
    assert seconds < 60  # the CLI's start and the flow's included; the connect gives up at 5 s
    assert sum(fault_server.requests.values()) == 0
    assert not (workspace / "mlflow").exists()
