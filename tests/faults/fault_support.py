"""Fault injection helpers: a loopback data server that misbehaves on request, CLI runners.

``FaultServer`` serves a folder but can be told, per path, to answer 5xx a number of
times, drop the connection, send fewer bytes than its Content-Length, or answer 404. It
counts the requests it got for each path, and notes when each came.
"""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from taxi_duration.environment import RUN_ENVIRONMENT_DEFAULTS


@dataclass
class Fault:
    """What to do for the next ``times`` requests of a path (then serve it normally)."""

    kind: str  # "status" | "drop" | "short" | "not_found"
    times: int = 1  # -1: forever
    status: int = 503


@dataclass
class FaultServer:
    directory: Path
    url: str = ""
    faults: dict[str, Fault] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    arrivals: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, name: str, kind: str, times: int = 1, status: int = 503) -> None:
        """Misbehave for the next ``times`` GETs of ``/name``."""
        with self.lock:
            self.faults["/" + name] = Fault(kind, times, status)

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            self.requests[path] += 1
            self.arrivals[path].append(time.monotonic())
            fault = self.faults.get(path)
            if fault is None or fault.times == 0:
                return None
            if fault.times > 0:
                fault.times -= 1
            return fault


def _handler(server_state: FaultServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            fault = server_state.take_fault(path)
            file = server_state.directory / path.lstrip("/")
            if fault is not None and fault.kind == "drop":
                # Close without any answer: the client sees the connection dropped.
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            if (fault is not None and fault.kind == "not_found") or not file.is_file():
                self._send_status(404)
                return
            if fault is not None and fault.kind == "status":
                self._send_status(fault.status)
                return
            body = file.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if fault is not None and fault.kind == "short":
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(body)

        def _send_status(self, status: int) -> None:
            body = f"status {status}\n".encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def start_fault_server(directory: Path) -> tuple[FaultServer, http.server.ThreadingHTTPServer]:
    state = FaultServer(directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    return state, server


def closed_port_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def cli_env(workspace: Path, data_url: str, prefect_url: str, **extra: str) -> dict[str, str]:
    # Not what tests/conftest.py gives the tests' own flows: the CLI must set it itself.
    inherited = {k: v for k, v in os.environ.items() if k not in RUN_ENVIRONMENT_DEFAULTS}
    return {
        **inherited,
        "TAXI_DURATION_DATA_URL": data_url,
        "TAXI_DURATION_DATA_DIR": str(workspace / "data"),
        "TAXI_DURATION_MLFLOW_DIR": str(workspace / "mlflow"),
        "TAXI_DURATION_DOWNLOAD_BACKOFF_SECONDS": "0.2",
        "PREFECT_HOME": str(workspace / "prefect-home"),
        "PREFECT_API_URL": prefect_url,
        **extra,
    }


def start_cli(
    workspace: Path, data_url: str, prefect_url: str, *args: str, **extra: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "taxi_duration.cli", *args],
        cwd=workspace,
        env=cli_env(workspace, data_url, prefect_url, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def run_cli(
    workspace: Path, data_url: str, prefect_url: str, *args: str, timeout: float = 300, **extra: str
) -> subprocess.CompletedProcess[str]:
    process = start_cli(workspace, data_url, prefect_url, *args, **extra)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise AssertionError(f"CLI did not finish in {timeout} s: {stderr[-2000:]}") from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
