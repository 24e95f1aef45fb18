"""A real Dask cluster for tests: ``dask scheduler`` and ``dask worker`` processes on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ports import free_port


@contextmanager
def running_dask_cluster(logs: Path, workers: int = 1, memory_limit: str = "1GiB") -> Iterator[str]:
    """A scheduler and ``workers`` single-threaded worker processes; yields the address.

    Their output goes to ``logs``: ``scheduler.log``, ``worker.log`` (``worker-N.log`` for
    more than one).
    """
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    commands = {
        "scheduler": [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                      "127.0.0.1", "--port", str(port), "--dashboard-address", ":0", "--no-show"],
    }  # fmt: skip
    for number in range(workers):
        name = "worker" if workers == 1 else f"worker-{number}"
        commands[name] = [
            sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1",
            "--nthreads", "1", "--memory-limit", memory_limit, "--no-dashboard",
            "--host", "127.0.0.1", "--local-directory", str(logs),
        ]  # fmt: skip
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name, command in commands.items():
            with open(logs / f"{name}.log", "wb") as log:
                processes.append(
                    subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
                )
            if name == "scheduler":
                _wait_for_port(port)
        _wait_for_workers(address, workers)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"dask scheduler did not listen on {port}")


def _wait_for_workers(address: str, count: int) -> None:
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(count, timeout=60)
