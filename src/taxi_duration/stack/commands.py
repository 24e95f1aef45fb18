"""``taxi-duration stack up|down|status`` (``cli.py`` parses the command).

``up`` starts the services in the background on 127.0.0.1, waits until each answers its
health check, and prints the addresses; ``down`` ends the pool's in-flight runs and stops
them; ``status`` tells what runs.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from taxi_duration.errors import StackError
from taxi_duration.stack.config import (
    CREDENTIALS,
    SECRET_SETTINGS,
    SERVE_PREFIX,
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
)
from taxi_duration.stack.services import commands, environments, run_environment
from taxi_duration.stack.supervisor import (
    _check,
    _port_free,
    _read_pid,
    _start,
    _stop,
    _stop_together,
    _wait,
    serve_health,
)


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
    # The worker (which reports to the servers as it stops) and the prediction services
    # first, then both servers.
    stopped = _stop_together(config, [*served, "worker"])
    stopped += _stop_together(config, ["mlflow-server", "prefect-server"])
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
