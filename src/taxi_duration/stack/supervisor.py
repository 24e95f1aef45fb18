"""The services' processes: each started in its own process group with a PID file in
``run/``, so ``down`` stops it with its children; whether each answers its health check, and
the wait until all of them do (a service that exits instead: the last lines of its log)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from taxi_duration.errors import StackError
from taxi_duration.processes import process_exists
from taxi_duration.stack.config import LOOPBACK, SERVE_PREFIX, StackConfig
from taxi_duration.stack.pool import prefect_api

STOP_GRACE_SECONDS = 20.0


# --- processes ---------------------------------------------------------------------------


def _record(config: StackConfig, service: str) -> tuple[int, str] | None:
    """The PID and program name in a service's PID file."""
    try:
        record = json.loads(config.pid_file(service).read_text())
        return int(record["pid"]), str(record["program"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _read_pid(config: StackConfig, service: str) -> int | None:
    """The PID recorded for a service if that process still runs, else None."""
    record = _record(config, service)
    if record is None:
        return None
    pid, program = record
    if not _alive(pid):
        return None
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # guard against a reused PID
        try:
            if program not in cmdline.read_bytes().decode(errors="replace"):
                return None
        except OSError:
            return None
    return pid


def _alive(pid: int) -> bool:
    if not process_exists(pid):
        return False
    # A zombie (our own exited child) counts as gone.
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return waited == 0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_free(port: int, host: str = LOOPBACK) -> bool:
    """Nothing listens on the port. SO_REUSEADDR, as the servers bind: a port left in
    TIME_WAIT by a stack just stopped is free; one that something listens on is not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _start(
    config: StackConfig, service: str, command: Sequence[str], env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    log = config.log_file(service)
    with log.open("ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
        out.flush()
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=config.directory,
            start_new_session=True,  # its own process group: `down` stops its children too
            preexec_fn=_default_signals,
        )
    record = {"pid": process.pid, "program": Path(command[0]).name, "command": list(command)}
    config.pid_file(service).write_text(json.dumps(record) + "\n")
    return process


def _default_signals() -> None:
    """In a service's process before it starts: signals as the system's defaults, whatever
    the caller had. A background job of a shell without job control ignores SIGINT and
    SIGQUIT, and Prefect's worker stops on SIGTERM by sending itself SIGINT: inherited, the
    worker and its runs would go on after a SIGTERM as if nothing happened."""
    for number in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _stop(config: StackConfig, service: str, grace: float = STOP_GRACE_SECONDS) -> bool:
    """Stop a service's process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
    return bool(_stop_together(config, [service], grace))


def _stop_together(
    config: StackConfig, services: Sequence[str], grace: float = STOP_GRACE_SECONDS
) -> list[str]:
    """Stop these services' process groups at once: SIGTERM to each, then SIGKILL to those
    still running after ``grace`` seconds; the services that were running. Each takes seconds
    to shut down, and one after the other those added up in every `down`."""
    groups: dict[str, int] = {}
    for service in services:
        pid = _read_pid(config, service)
        record = _record(config, service)
        if pid is None and record is not None and _group_alive(record[0]):
            # The leader is gone but its children still run. Linux gives no new process the
            # number of a live process group, so that group is still the service's.
            pid = record[0]
        config.pid_file(service).unlink(missing_ok=True)
        if pid is None:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        groups[service] = pid
    deadline = time.monotonic() + grace
    running = dict(groups)
    while running and time.monotonic() < deadline:
        running = {s: pid for s, pid in running.items() if _alive(pid) or _group_alive(pid)}
        if running:
            time.sleep(0.2)
    for pid in running.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return list(groups)


# --- health ------------------------------------------------------------------------------


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


def prefect_healthy(config: StackConfig) -> bool:
    return _answers(f"{config.prefect_api_url}/health")


def mlflow_healthy(config: StackConfig) -> bool:
    return _answers(f"{config.mlflow_url}/health")


def worker_online(config: StackConfig) -> bool:
    """A worker of the pool has reported to the server as ONLINE."""
    try:
        response = prefect_api(
            config,
            "POST",
            f"/work_pools/{config.pool}/workers/filter",
            {"workers": {"status": {"any_": ["ONLINE"]}}},
            timeout=5.0,
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and len(response.json()) > 0


def serve_health(config: StackConfig, color: str) -> dict[str, Any] | None:
    """A prediction service's ``/health``: the version it serves and the champion's (200
    serving, 503 not yet); None if it does not answer."""
    try:
        response = httpx.get(f"{config.serve_url(color)}/health", timeout=5.0)
        report = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    if response.status_code not in (200, 503) or not isinstance(report, dict):
        return None
    return report


CHECKS: dict[str, Callable[[StackConfig], bool]] = {
    "prefect-server": prefect_healthy,
    "mlflow-server": mlflow_healthy,
    "worker": worker_online,
}


def _check(config: StackConfig, service: str) -> bool:
    """Whether a service answers: a prediction service answers without a champion too."""
    if service.startswith(SERVE_PREFIX):
        return serve_health(config, service.removeprefix(SERVE_PREFIX)) is not None
    return CHECKS[service](config)


def _wait(
    config: StackConfig,
    services: Sequence[str],
    started: Mapping[str, subprocess.Popen[bytes]],
) -> None:
    """Wait until every service answers its check; fail early if one of them exits."""
    pending = list(services)
    deadline = time.monotonic() + config.timeout
    while pending:
        for service in list(pending):
            process = started.get(service)
            # A process just started may not have exec'd yet: ask it, not its PID file.
            exited = process.poll() is not None if process else _read_pid(config, service) is None
            if exited:
                raise StackError(f"{service} exited while starting:\n{_tail(config, service)}")
            if _check(config, service):
                pending.remove(service)
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(pending)
            raise StackError(
                f"{names} did not answer within {config.timeout:g} seconds "
                f"(TAXI_DURATION_STACK_TIMEOUT):\n"
                + "\n".join(_tail(config, service) for service in pending)
            )
        time.sleep(0.5)


def _tail(config: StackConfig, service: str, lines: int = 20) -> str:
    path = config.log_file(service)
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"  (no log at {path})"
    return f"--- last lines of {path}\n" + "\n".join(text)
