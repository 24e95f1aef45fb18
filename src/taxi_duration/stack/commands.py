"""The local stack: a Prefect server, an MLflow tracking server, a process worker and the
prediction service of each served color (``taxi-duration serve``, its champion over HTTP).

``taxi-duration stack up`` starts them in the background on 127.0.0.1, waits until each
answers its health check, and prints the addresses; ``taxi-duration stack down`` stops them;
``taxi-duration stack status`` tells what runs (``cli.py`` parses the command).

The colors served are ``TAXI_DURATION_SERVE_COLORS`` (``green`` unless set; ``none``: no
service); the first listens on ``TAXI_DURATION_SERVE_PORT``, the next on the ports after it,
or, unset, each on a free port chosen at the first ``up`` and kept with the stack. A service
starts without a champion and answers 503 until one is promoted; it follows the alias.

Everything lives in one folder, ``.stack/`` by default::

    logs/{prefect-server,mlflow-server,worker,serve-<color>}.log   one log per service
    run/{prefect-server,mlflow-server,worker,serve-<color>}.json   PID files, read by ``down``
    prefect/                                         PREFECT_HOME of the three (server database)
    mlflow/mlflow.db, mlflow/artifacts/              the registry and the served artifacts
    data/                                            the worker's download cache
    outputs/                                         where runs write a relative predict output
    env                                              ``source .stack/env`` points a shell at it

Each service runs in its own process group, so ``down`` stops it with its children.

Access: the servers bind to 127.0.0.1 (``TAXI_DURATION_STACK_HOST``). Bound to any other
address, or with ``TAXI_DURATION_STACK_AUTH`` on, both servers ask for credentials, their
own way: Prefect's API auth string and MLflow's basic-auth app. The credentials are the
clients' own settings (``PREFECT_API_AUTH_STRING``, ``MLFLOW_TRACKING_USERNAME`` and
``MLFLOW_TRACKING_PASSWORD``), so the CLI, ``prefect`` and ``mlflow`` pass them as they are;
``up`` refuses to start without them. The prediction services then ask for MLflow's user and
password (HTTP basic auth) on their predictions; their ``/ping`` and ``/health`` stay open.
"""

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
from taxi_duration.stack.config import (
    CREDENTIALS,
    LOOPBACK,
    SECRET_SETTINGS,
    SERVE_PREFIX,
    SERVICES,
    StackConfig,
    _record_stack,
    kept_settings,
    reuse_kept_settings,
    with_serve_ports,
)
from taxi_duration.stack.pool import (
    _apply_alerts,
    _configure_pool,
    _ensure_pool,
    _wanted_alerts,
    alerts_in_force,
    end_in_flight_runs,
    pool_environment,
    prefect_api,
)
from taxi_duration.stack.services import (
    commands,
    environments,
    run_environment,
)

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
    pid = _read_pid(config, service)
    record = _record(config, service)
    if pid is None and record is not None and _group_alive(record[0]):
        # The leader is gone but its children still run. Linux gives no new process the
        # number of a live process group, so that group is still the service's.
        pid = record[0]
    config.pid_file(service).unlink(missing_ok=True)
    if pid is None:
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid) and not _group_alive(pid):
            return True
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


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


# --- commands ----------------------------------------------------------------------------


def _prepare(config: StackConfig) -> None:
    for folder in (config.logs, config.run, config.prefect_home, config.directory / "mlflow"):
        folder.mkdir(parents=True, exist_ok=True)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    ignore = config.directory / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# created by taxi-duration stack: nothing here belongs in git\n*\n")
    if config.auth:
        _write_mlflow_auth_config(config)


def _write_mlflow_auth_config(config: StackConfig) -> None:
    """MLflow's basic-auth settings: its users in the stack's folder. The admin comes from
    MLFLOW_AUTH_ADMIN_USERNAME/PASSWORD (the server's environment), never from this file."""
    users = config.directory / "mlflow" / "basic_auth.db"
    config.mlflow_auth_config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{users}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )


def _write_env_file(config: StackConfig) -> Path:
    path = config.directory / "env"
    path.write_text(
        "# source this file to point the prefect, mlflow and taxi-duration commands at the stack\n"
        f"export PREFECT_API_URL={config.prefect_api_url}\n"
        f"export MLFLOW_TRACKING_URI={config.mlflow_url}\n"
        + (_CREDENTIALS_NOTE if config.auth else "")
    )
    return path


_CREDENTIALS_NOTE = (
    "# both servers ask for credentials: also export PREFECT_API_AUTH_STRING,\n"
    "# MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (the values the stack started with)\n"
)


def up(config: StackConfig, base_env: Mapping[str, str] | None = None) -> None:
    """Start what is not running yet, and wait until all of it answers."""
    base_env = dict(os.environ if base_env is None else base_env)
    config.check_access()  # no credentials where they are needed: nothing starts
    wanted_alerts = _wanted_alerts()  # bad settings: an error before anything starts
    _prepare(config)
    running = {service for service in config.services if _read_pid(config, service) is not None}
    config = with_serve_ports(config)
    all_commands = commands(config)
    envs = environments(config, base_env)
    ports = {"prefect-server": config.prefect_port, "mlflow-server": config.mlflow_port}
    ports |= {SERVE_PREFIX + color: port for color, port in config.serve_ports.items()}
    for service, port in ports.items():
        if service not in running and not _port_free(port, config.host):
            setting = "SERVE" if service.startswith(SERVE_PREFIX) else service.split("-")[0]
            raise StackError(
                f"port {port} on {config.host} is in use, so {service} cannot start there: "
                "stop what holds it or choose another port with "
                f"TAXI_DURATION_{setting.upper()}_PORT"
            )
    started: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for service in ("prefect-server", "mlflow-server"):
            if service not in running:
                started[service] = _start(config, service, all_commands[service], envs[service])
        _wait(config, ["prefect-server", "mlflow-server"], started)
        # The prediction services load while the pool and the alerts are set up.
        for service in config.serve_services:
            if service not in running:
                started[service] = _start(config, service, all_commands[service], envs[service])
        if _ensure_pool(config, envs["worker"]):
            print(f"created work pool {config.pool!r} (type process)")
        run_env = run_environment(config, base_env)
        _configure_pool(config, run_env)
        alert_lines = _apply_alerts(config, wanted_alerts)
        if "worker" not in running:
            started["worker"] = _start(config, "worker", all_commands["worker"], envs["worker"])
        _wait(config, ["worker", *config.serve_services], started)
    except BaseException:
        for service in reversed(list(started)):
            _stop(config, service)
        raise
    env_file = _write_env_file(config)
    _record_stack(config, base_env)
    for service in config.services:
        state = "already running" if service in running else "started"
        print(f"{service:<15} {state:<16} log {_display(config.log_file(service))}")
    print()
    print(f"Prefect UI      {config.prefect_ui_url}")
    print(f"MLflow UI       {config.mlflow_url}")
    _print_served(config)
    print(f"worker          pool {config.pool!r}, data cache {_display(config.data_dir)}")
    print(f"                data from {base_env.get('TAXI_DURATION_DATA_URL') or 'the TLC'}")
    _print_run_environment(run_env)
    _print_alerts(alert_lines)
    _print_access(config)
    print()
    print("Point the CLI at the stack (or: source " + _display(env_file) + "):")
    print(f"  export PREFECT_API_URL={config.prefect_api_url}")
    print(f"  export MLFLOW_TRACKING_URI={config.mlflow_url}")
    if config.auth:
        print("  and the credentials: " + ", ".join(CREDENTIALS))
    print("Deploy: prefect --no-prompt deploy --all    Stop: taxi-duration stack down")


def _print_run_environment(env: Mapping[str, str]) -> None:
    print("flow runs get   " + "\n                ".join(f"{k}={v}" for k, v in env.items()))


def _print_kept_settings(settings: Mapping[str, str]) -> None:
    shown = [f"{k}={'(set)' if k in SECRET_SETTINGS else v}" for k, v in settings.items()]
    print("started with    " + ("\n                ".join(shown) or "the defaults"))


def _print_served(config: StackConfig) -> None:
    """Each prediction service's address and the version it serves, from its ``/health``."""
    for color in config.serve_colors:
        report = serve_health(config, color)
        if report is None:
            served = "not answering"
        elif report.get("model_version"):
            served = f"{report['model_name']} version {report['model_version']}"
            if report.get("champion") != report["model_version"]:
                served += f" (champion {report['champion']} not served: see its log)"
        elif report.get("champion"):
            served = f"champion version {report['champion']} not served yet (answers 503)"
        else:
            served = f"no champion of {report.get('model_name')} yet (answers 503)"
        print(f"{'serve ' + color:<15} {config.serve_url(color)}  {served}")


def _print_access(config: StackConfig) -> None:
    if config.auth:
        print(
            f"access          bound to {config.host}; credentials required "
            "(Prefect API auth string, MLflow basic-auth; predictions: MLflow's user)"
        )
    else:
        print(f"access          bound to {config.host}; no credentials (loopback only)")


def _print_alerts(lines: Sequence[str]) -> None:
    if not lines:
        print("alerts          none (set TAXI_DURATION_NOTIFY_WEBHOOK_URL or _EMAIL_TO)")
        return
    print("alerts          " + "\n                ".join(lines))


def down(config: StackConfig) -> None:
    """End the in-flight runs, then stop the worker, then the servers."""
    if _read_pid(config, "prefect-server") is not None:
        ended = end_in_flight_runs(config)
        if ended:
            print("cancelled flow runs " + ", ".join(ended))
    # Every prediction service with a PID file, whichever colors are configured now.
    served = sorted(path.stem for path in config.run.glob(f"{SERVE_PREFIX}*.json"))
    stopped = [service for service in [*served, *reversed(SERVICES)] if _stop(config, service)]
    if stopped:
        print("stopped " + ", ".join(stopped))
    else:
        print(f"nothing was running (no live PID file in {_display(config.run)})")


def status(config: StackConfig) -> bool:
    """Print what runs; True if every service runs and answers (a prediction service
    without a champion answers)."""
    healthy = True
    for service in config.services:
        pid = _read_pid(config, service)
        if pid is None:
            state = "stopped"
            healthy = False
        elif _check(config, service):
            state = f"running (pid {pid})"
        else:
            state = f"not answering (pid {pid})"
            healthy = False
        print(f"{service:<15} {state}")
    print(f"Prefect UI      {config.prefect_ui_url}")
    print(f"MLflow UI       {config.mlflow_url}")
    _print_served(config)
    print(f"stack folder    {config.directory}")
    _print_kept_settings(kept_settings(config.directory))
    run_env = pool_environment(config)
    if run_env is not None:
        _print_run_environment(run_env)
    lines = alerts_in_force(config)
    if lines is not None:
        _print_alerts(lines)
    _print_access(config)
    return healthy


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run(action: str) -> int:
    """Run ``up``, ``down`` or ``status``; the exit code. A failure is raised as a
    TaxiDurationError, which the CLI prints (``cli.main``, the one error path)."""
    # The settings the stack was started with, unless this shell sets them (empty: back to
    # the default): the services `up` starts, and the alerts it applies, read them from this
    # process's environment.
    reuse_kept_settings(os.environ)
    config = StackConfig.from_env()
    if action == "up":
        up(config)
        return 0
    if action == "down":
        down(config)
        return 0
    return 0 if status(config) else 1
