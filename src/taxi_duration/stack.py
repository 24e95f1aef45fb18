"""The local stack: a Prefect server, an MLflow tracking server and a process worker.

``taxi-duration stack up`` starts the three in the background on 127.0.0.1, waits until each
answers its health check, and prints the addresses; ``taxi-duration stack down`` stops them;
``taxi-duration stack status`` tells what runs. (``python -m taxi_duration.stack up`` too.)

Everything lives in one folder, ``.stack/`` by default::

    logs/{prefect-server,mlflow-server,worker}.log   one log per service
    run/{prefect-server,mlflow-server,worker}.json   PID files, read by ``down``
    prefect/                                         PREFECT_HOME of the three (server database)
    mlflow/mlflow.db, mlflow/artifacts/              the registry and the served artifacts
    data/                                            the worker's download cache
    env                                              ``source .stack/env`` points a shell at it

Each service runs in its own process group, so ``down`` stops it with its children.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from taxi_duration.environment import RUN_ENVIRONMENT_DEFAULTS
from taxi_duration.errors import StackError, TaxiDurationError
from taxi_duration.settings import TLC_DATA_URL

if TYPE_CHECKING:
    from taxi_duration.alerts import Alerts

HOST = "127.0.0.1"
DEFAULT_PREFECT_PORT = 4200
DEFAULT_MLFLOW_PORT = 5000
DEFAULT_POOL = "taxi-duration"
DEFAULT_TIMEOUT_SECONDS = 180.0
STOP_GRACE_SECONDS = 20.0
SERVICES = ("prefect-server", "mlflow-server", "worker")


@dataclass(frozen=True)
class StackConfig:
    """Where the stack lives and listens; from ``TAXI_DURATION_*`` variables."""

    directory: Path
    prefect_port: int
    mlflow_port: int
    pool: str
    timeout: float
    mlflow_backend_store_uri: str
    mlflow_artifacts_destination: str
    data_dir: Path
    data_url: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackConfig:
        env = os.environ if env is None else env
        directory = find_directory(env)
        mlflow_dir = directory / "mlflow"
        # What `up` recorded: ports and pool of the stack in that folder, unless set again.
        recorded = _recorded(directory)
        return cls(
            directory=directory,
            prefect_port=_port(
                env,
                "TAXI_DURATION_PREFECT_PORT",
                recorded.get("prefect_port", DEFAULT_PREFECT_PORT),
            ),
            mlflow_port=_port(
                env, "TAXI_DURATION_MLFLOW_PORT", recorded.get("mlflow_port", DEFAULT_MLFLOW_PORT)
            ),
            pool=env.get("TAXI_DURATION_WORK_POOL") or recorded.get("pool") or DEFAULT_POOL,
            timeout=_seconds(env, "TAXI_DURATION_STACK_TIMEOUT", DEFAULT_TIMEOUT_SECONDS),
            mlflow_backend_store_uri=env.get("TAXI_DURATION_MLFLOW_BACKEND_STORE_URI")
            or f"sqlite:///{mlflow_dir / 'mlflow.db'}",
            mlflow_artifacts_destination=env.get("TAXI_DURATION_MLFLOW_ARTIFACTS_DESTINATION")
            or (mlflow_dir / "artifacts").as_uri(),
            data_dir=Path(env.get("TAXI_DURATION_DATA_DIR") or directory / "data").resolve(),
            data_url=env.get("TAXI_DURATION_DATA_URL") or TLC_DATA_URL,
        )

    @property
    def prefect_ui_url(self) -> str:
        return f"http://{HOST}:{self.prefect_port}"

    @property
    def prefect_api_url(self) -> str:
        return f"{self.prefect_ui_url}/api"

    @property
    def mlflow_url(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    @property
    def run(self) -> Path:
        return self.directory / "run"

    @property
    def prefect_home(self) -> Path:
        return self.directory / "prefect"

    def log_file(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    def pid_file(self, service: str) -> Path:
        return self.run / f"{service}.json"

    @property
    def state_file(self) -> Path:
        return self.directory / "stack.json"


def _state_home(env: Mapping[str, str]) -> Path:
    return Path(env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "taxi-duration"


def last_stack_file(env: Mapping[str, str]) -> Path:
    """The per-user file where `up` records the folder of the stack it started."""
    return _state_home(env) / "stack-dir"


def find_directory(env: Mapping[str, str]) -> Path:
    """The stack's folder: TAXI_DURATION_STACK_DIR, else ./.stack if there is one, else the
    folder of the last stack `up` started (recorded per user), else ./.stack."""
    if env.get("TAXI_DURATION_STACK_DIR"):
        return Path(env["TAXI_DURATION_STACK_DIR"]).resolve()
    here = Path(".stack").resolve()
    if (here / "run").is_dir():
        return here
    with contextlib.suppress(OSError):
        last = Path(last_stack_file(env).read_text().strip())
        if last.is_absolute() and (last / "run").is_dir():
            return last
    return here


def _recorded(directory: Path) -> dict[str, Any]:
    try:
        record = json.loads((directory / "stack.json").read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _port(env: Mapping[str, str], name: str, default: Any) -> int:
    text = env.get(name)
    if not text:
        return int(default)
    try:
        value = int(text)
    except ValueError:
        raise StackError(f"{name} {text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise StackError(f"{name} {value} is out of range: allowed 1-65535")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise StackError(f"{name} {text!r} is not a number of seconds") from None
    if not value > 0:
        raise StackError(f"{name} {text} is out of range: more than 0 seconds")
    return value


def _executable(name: str) -> str:
    """A console script of this environment (beside the interpreter), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"{name} is not installed: pip install -e . installs it")
    return found


def commands(config: StackConfig) -> dict[str, list[str]]:
    """The command line of each service."""
    return {
        "prefect-server": [
            _executable("prefect"),
            *("server", "start", "--host", HOST, "--port", str(config.prefect_port)),
        ],
        "mlflow-server": [
            _executable("mlflow"),
            *("server", "--host", HOST, "--port", str(config.mlflow_port)),
            *("--backend-store-uri", config.mlflow_backend_store_uri),
            *("--serve-artifacts", "--artifacts-destination", config.mlflow_artifacts_destination),
            *("--workers", "1"),
        ],
        "worker": [
            _executable("prefect"),
            *("worker", "start", "--pool", config.pool, "--type", "process"),
            *("--install-policy", "never"),
        ],
    }


def run_environment(config: StackConfig, base: Mapping[str, str]) -> dict[str, str]:
    """What every flow run of the stack's pool gets, whoever started its worker.

    Written into the work pool's base job template (``env``), so a worker restarted from a
    clean environment still runs flows on the stack's data and MLflow server.
    """
    return {
        "TAXI_DURATION_DATA_URL": config.data_url,
        "TAXI_DURATION_DATA_DIR": str(config.data_dir),
        "MLFLOW_TRACKING_URI": config.mlflow_url,
        **{name: base.get(name) or value for name, value in RUN_ENVIRONMENT_DEFAULTS.items()},
        # A heartbeat every 30 s: a run whose process dies is marked Crashed (taxi_duration.alerts).
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": base.get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY") or "30",
    }


def environments(config: StackConfig, base: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """The environment of each service: the caller's, with the stack's addresses."""
    common = {
        **base,
        "PREFECT_UI_URL": config.prefect_ui_url,  # links in alerts and logs
        "PREFECT_HOME": str(config.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": base.get("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
        "PYTHONUNBUFFERED": "1",
    }
    server = {key: value for key, value in common.items() if key != "PREFECT_API_URL"}
    return {
        "prefect-server": server,
        "mlflow-server": {
            **{key: value for key, value in common.items() if key != "MLFLOW_TRACKING_URI"},
            # MLflow's job runner (huey consumers, for GenAI jobs this project has none of):
            # 8 idle processes and about 2 GB. A user's own setting wins.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": base.get(
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"
            ),
        },
        # Flow runs inherit the worker's environment: they log to the stack's servers.
        "worker": {
            **common,
            **run_environment(config, base),
            "PREFECT_API_URL": config.prefect_api_url,
        },
    }


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
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
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


def _port_free(port: int) -> bool:
    """Nothing listens on the port. SO_REUSEADDR, as the servers bind: a port left in
    TIME_WAIT by a stack just stopped is free; one that something listens on is not."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
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
        )
    record = {"pid": process.pid, "program": Path(command[0]).name, "command": list(command)}
    config.pid_file(service).write_text(json.dumps(record) + "\n")
    return process


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
        response = httpx.post(
            f"{config.prefect_api_url}/work_pools/{config.pool}/workers/filter",
            json={"workers": {"status": {"any_": ["ONLINE"]}}},
            timeout=5.0,
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and len(response.json()) > 0


CHECKS: dict[str, Callable[[StackConfig], bool]] = {
    "prefect-server": prefect_healthy,
    "mlflow-server": mlflow_healthy,
    "worker": worker_online,
}


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
            if CHECKS[service](config):
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


def _ensure_pool(config: StackConfig, env: Mapping[str, str]) -> bool:
    """Create the work pool (type process) unless it exists; True if it was created."""
    response = httpx.get(f"{config.prefect_api_url}/work_pools/{config.pool}", timeout=10.0)
    if response.status_code == 200:
        pool_type = response.json().get("type")
        if pool_type != "process":
            raise StackError(
                f"work pool {config.pool!r} exists with type {pool_type!r}, not process"
            )
        return False
    if response.status_code != 404:
        raise StackError(f"could not read work pool {config.pool!r}: HTTP {response.status_code}")
    result = subprocess.run(
        [
            _executable("prefect"),
            "--no-prompt",
            "work-pool",
            "create",
            config.pool,
            "-t",
            "process",
        ],
        env=dict(env),
        cwd=config.directory,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise StackError(
            f"could not create work pool {config.pool!r}: {result.stdout}{result.stderr}"
        )
    return True


def _configure_pool(config: StackConfig, run_env: Mapping[str, str]) -> None:
    """Write the flow runs' environment into the pool's base job template (its ``env``)."""
    url = f"{config.prefect_api_url}/work_pools/{config.pool}"
    template = httpx.get(url, timeout=10.0).json()["base_job_template"]
    env = template.get("variables", {}).get("properties", {}).get("env")
    if env is None:
        raise StackError(f"work pool {config.pool!r} has no env variable in its job template")
    env["default"] = dict(run_env)
    response = httpx.patch(url, json={"base_job_template": template}, timeout=10.0)
    if response.status_code >= 300:
        raise StackError(f"could not update work pool {config.pool!r}: HTTP {response.status_code}")


def pool_environment(config: StackConfig) -> dict[str, str] | None:
    """The environment the pool gives every flow run, as the server has it."""
    try:
        response = httpx.get(f"{config.prefect_api_url}/work_pools/{config.pool}", timeout=10.0)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    template = response.json()["base_job_template"]
    env = template.get("variables", {}).get("properties", {}).get("env", {}).get("default")
    return dict(env) if isinstance(env, dict) else {}


def _wanted_alerts() -> Alerts:
    from taxi_duration import alerts

    return alerts.alerts_from(alerts.read_settings())


def _apply_alerts(config: StackConfig, wanted: Alerts) -> list[str]:
    from taxi_duration import alerts

    return alerts.apply(wanted, config.prefect_api_url, config.pool, config.mlflow_url)


def alerts_in_force(config: StackConfig) -> list[str] | None:
    """The project's automations on the server, described; None if it cannot be asked."""
    try:
        response = httpx.post(f"{config.prefect_api_url}/automations/filter", json={}, timeout=10.0)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    lines = []
    for automation in response.json():
        if not str(automation["name"]).startswith("taxi-duration: "):
            continue
        blocks = []
        for action in automation["actions"]:
            block_id = action.get("block_document_id")
            block = httpx.get(f"{config.prefect_api_url}/block_documents/{block_id}", timeout=10.0)
            blocks.append(block.json().get("name", "?") if block.status_code == 200 else "missing")
        state = "on" if automation.get("enabled") else "off"
        lines.append(f"{automation['name']} ({state}) -> {', '.join(blocks) or 'nothing'}")
    return lines


# --- commands ----------------------------------------------------------------------------


def _prepare(config: StackConfig) -> None:
    for folder in (config.logs, config.run, config.prefect_home, config.directory / "mlflow"):
        folder.mkdir(parents=True, exist_ok=True)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    ignore = config.directory / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# created by taxi-duration stack: nothing here belongs in git\n*\n")


def _write_env_file(config: StackConfig) -> Path:
    path = config.directory / "env"
    path.write_text(
        "# source this file to point the prefect, mlflow and taxi-duration commands at the stack\n"
        f"export PREFECT_API_URL={config.prefect_api_url}\n"
        f"export MLFLOW_TRACKING_URI={config.mlflow_url}\n"
    )
    return path


def up(config: StackConfig, base_env: Mapping[str, str] | None = None) -> None:
    """Start what is not running yet, and wait until all of it answers."""
    base_env = dict(os.environ if base_env is None else base_env)
    wanted_alerts = _wanted_alerts()  # bad settings: an error before anything starts
    _prepare(config)
    all_commands = commands(config)
    envs = environments(config, base_env)
    running = {service for service in SERVICES if _read_pid(config, service) is not None}
    ports = {"prefect-server": config.prefect_port, "mlflow-server": config.mlflow_port}
    for service, port in ports.items():
        if service not in running and not _port_free(port):
            raise StackError(
                f"port {port} on {HOST} is in use, so {service} cannot start there: stop what "
                f"holds it or choose another port with "
                f"TAXI_DURATION_{service.split('-')[0].upper()}_PORT"
            )
    started: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for service in ("prefect-server", "mlflow-server"):
            if service not in running:
                started[service] = _start(config, service, all_commands[service], envs[service])
        _wait(config, ["prefect-server", "mlflow-server"], started)
        if _ensure_pool(config, envs["worker"]):
            print(f"created work pool {config.pool!r} (type process)")
        run_env = run_environment(config, base_env)
        _configure_pool(config, run_env)
        alert_lines = _apply_alerts(config, wanted_alerts)
        if "worker" not in running:
            started["worker"] = _start(config, "worker", all_commands["worker"], envs["worker"])
        _wait(config, ["worker"], started)
    except BaseException:
        for service in reversed(list(started)):
            _stop(config, service)
        raise
    env_file = _write_env_file(config)
    _record_stack(config, base_env)
    for service in SERVICES:
        state = "already running" if service in running else "started"
        print(f"{service:<15} {state:<16} log {_display(config.log_file(service))}")
    print()
    print(f"Prefect UI      {config.prefect_ui_url}")
    print(f"MLflow UI       {config.mlflow_url}")
    print(f"worker          pool {config.pool!r}, data cache {_display(config.data_dir)}")
    print(f"                data from {base_env.get('TAXI_DURATION_DATA_URL') or 'the TLC'}")
    _print_run_environment(run_env)
    _print_alerts(alert_lines)
    print()
    print("Point the CLI at the stack (or: source " + _display(env_file) + "):")
    print(f"  export PREFECT_API_URL={config.prefect_api_url}")
    print(f"  export MLFLOW_TRACKING_URI={config.mlflow_url}")
    print("Deploy: prefect --no-prompt deploy --all    Stop: taxi-duration stack down")


def _record_stack(config: StackConfig, env: Mapping[str, str]) -> None:
    """Remember the ports and pool in the folder, and the folder per user: `status` and
    `down` find the stack from any directory."""
    record = {"prefect_port": config.prefect_port, "mlflow_port": config.mlflow_port}
    config.state_file.write_text(json.dumps({**record, "pool": config.pool}) + "\n")
    with contextlib.suppress(OSError):
        last = last_stack_file(env)
        last.parent.mkdir(parents=True, exist_ok=True)
        last.write_text(f"{config.directory}\n")


def _print_run_environment(env: Mapping[str, str]) -> None:
    print("flow runs get   " + "\n                ".join(f"{k}={v}" for k, v in env.items()))


def _print_alerts(lines: Sequence[str]) -> None:
    if not lines:
        print("alerts          none (set TAXI_DURATION_NOTIFY_WEBHOOK_URL or _EMAIL_TO)")
        return
    print("alerts          " + "\n                ".join(lines))


IN_FLIGHT = ("PENDING", "RUNNING", "CANCELLING")
CANCEL_GRACE_SECONDS = 30.0


def _in_flight(config: StackConfig) -> list[dict[str, Any]]:
    """The pool's flow runs that have started and not ended."""
    try:
        response = httpx.post(
            f"{config.prefect_api_url}/flow_runs/filter",
            json={
                "flow_runs": {"state": {"type": {"any_": list(IN_FLIGHT)}}},
                "work_pools": {"name": {"any_": [config.pool]}},
            },
            timeout=10.0,
        )
    except httpx.HTTPError:
        return []
    return list(response.json()) if response.status_code == 200 else []


def _set_state(config: StackConfig, flow_run_id: str, state: str, message: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(
            f"{config.prefect_api_url}/flow_runs/{flow_run_id}/set_state",
            json={"state": {"type": state, "message": message}, "force": True},
            timeout=10.0,
        )


def end_in_flight_runs(config: StackConfig, grace: float = CANCEL_GRACE_SECONDS) -> list[str]:
    """Cancel the pool's in-flight runs through Prefect, while the worker still runs: it stops
    their processes and marks them Cancelled. Any not ended after ``grace`` seconds is marked
    Crashed. So no run is left Running on a stopped stack. Their names."""
    runs = _in_flight(config)
    for flow_run in runs:
        _set_state(config, flow_run["id"], "CANCELLING", "the stack is stopping (stack down)")
    deadline = time.monotonic() + grace
    while runs and _in_flight(config) and time.monotonic() < deadline:
        time.sleep(1.0)
    for flow_run in _in_flight(config):
        _set_state(
            config, flow_run["id"], "CRASHED", "still running when the stack stopped (stack down)"
        )
    return [str(flow_run["name"]) for flow_run in runs]


def down(config: StackConfig) -> None:
    """End the in-flight runs, then stop the worker, then the servers."""
    if _read_pid(config, "prefect-server") is not None:
        ended = end_in_flight_runs(config)
        if ended:
            print("cancelled flow runs " + ", ".join(ended))
    stopped = [service for service in reversed(SERVICES) if _stop(config, service)]
    if stopped:
        print("stopped " + ", ".join(stopped))
    else:
        print(f"nothing was running (no live PID file in {_display(config.run)})")


def status(config: StackConfig) -> bool:
    """Print what runs; True if all three run and answer."""
    healthy = True
    for service in SERVICES:
        pid = _read_pid(config, service)
        if pid is None:
            state = "stopped"
            healthy = False
        elif CHECKS[service](config):
            state = f"running (pid {pid})"
        else:
            state = f"not answering (pid {pid})"
            healthy = False
        print(f"{service:<15} {state}")
    print(f"Prefect UI      {config.prefect_ui_url}")
    print(f"MLflow UI       {config.mlflow_url}")
    print(f"stack folder    {config.directory}")
    run_env = pool_environment(config)
    if run_env is not None:
        _print_run_environment(run_env)
    lines = alerts_in_force(config)
    if lines is not None:
        _print_alerts(lines)
    return healthy


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run(action: str) -> int:
    """Run ``up``, ``down`` or ``status``; the exit code."""
    try:
        config = StackConfig.from_env()
        if action == "up":
            up(config)
            return 0
        if action == "down":
            down(config)
            return 0
        return 0 if status(config) else 1
    except TaxiDurationError as error:
        print(f"taxi-duration stack: error: {error}", file=sys.stderr)
        return error.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taxi_duration.stack")
    parser.add_argument("action", choices=["up", "down", "status"])
    return run(parser.parse_args(argv).action)


if __name__ == "__main__":
    raise SystemExit(main())
