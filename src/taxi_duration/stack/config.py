"""The stack's settings: where it lives and listens (StackConfig, from ``TAXI_DURATION_*``
variables and what ``up`` recorded), and the settings ``up`` keeps with the stack.

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
    stack.json                                       what ``up`` recorded: ports, pool, settings

Access: the servers bind to 127.0.0.1 (``TAXI_DURATION_STACK_HOST``). Bound to any other
address, or with ``TAXI_DURATION_STACK_AUTH`` on, both servers ask for credentials, their
own way: Prefect's API auth string and MLflow's basic-auth app. The credentials are the
clients' own settings (``PREFECT_API_AUTH_STRING``, ``MLFLOW_TRACKING_USERNAME`` and
``MLFLOW_TRACKING_PASSWORD``), so the CLI, ``prefect`` and ``mlflow`` pass them as they are;
``up`` refuses to start without them. The prediction services then ask for MLflow's user and
password (HTTP basic auth) on their predictions; their ``/ping`` and ``/health`` stay open.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import socket
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from taxi_duration.choices import COLORS
from taxi_duration.environment import RUN_ENVIRONMENT_DEFAULTS
from taxi_duration.errors import InvalidInputError, StackError
from taxi_duration.settings import TLC_DATA_URL

LOOPBACK = "127.0.0.1"
# Bound to one of these, the stack is reached (by itself, the worker, the CLI) on LOOPBACK.
WILDCARD_HOSTS = ("0.0.0.0", "::")
# MLflow's basic-auth app refuses a shorter admin password (its own rule, checked before start).
MLFLOW_MIN_PASSWORD = 12
CREDENTIALS = ("PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
DEFAULT_PREFECT_PORT = 4200
DEFAULT_MLFLOW_PORT = 5000
DEFAULT_POOL = "taxi-duration"
DEFAULT_TIMEOUT_SECONDS = 180.0
SERVICES = ("prefect-server", "mlflow-server", "worker")
# The prediction service of a color is the service SERVE_PREFIX + color ("serve-green").
SERVE_PREFIX = "serve-"
DEFAULT_SERVE_COLORS = ("green",)
NO_SERVE_COLORS = "none"

# A heartbeat every 30 s unless set: a run whose process dies is marked Crashed (alerts.py).
HEARTBEAT_SETTING = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
DEFAULT_HEARTBEAT_SECONDS = 30
# Prefect's own lower bound for the setting: a run's process refuses a smaller one.
MIN_HEARTBEAT_SECONDS = 30


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
    output_dir: Path
    host: str = LOOPBACK
    # Both servers ask for credentials (on whenever the host is not a loopback address).
    auth: bool = False
    # The clients' credentials, from their own variables (CREDENTIALS); never printed.
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    # The colors whose champion the stack serves, and each one's port (0: not chosen yet).
    serve_colors: tuple[str, ...] = DEFAULT_SERVE_COLORS
    serve_ports: Mapping[str, int] = field(default_factory=dict)
    # Seconds between a flow run's heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY): the
    # heartbeat automation waits three of them before it marks a silent run Crashed.
    heartbeat_seconds: int = DEFAULT_HEARTBEAT_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackConfig:
        env = os.environ if env is None else env
        directory = find_directory(env)
        mlflow_dir = directory / "mlflow"
        # What `up` recorded: ports and pool of the stack in that folder, unless set again.
        recorded = _recorded(directory)
        host = env.get("TAXI_DURATION_STACK_HOST") or recorded.get("host") or LOOPBACK
        serve_colors = _serve_colors(env)
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
            output_dir=Path(env.get("TAXI_DURATION_OUTPUT_DIR") or directory / "outputs").resolve(),
            host=host,
            auth=_flag(env, "TAXI_DURATION_STACK_AUTH", bool(recorded.get("auth")))
            or not is_loopback(host),
            credentials={name: env[name] for name in CREDENTIALS if env.get(name)},
            serve_colors=serve_colors,
            serve_ports=_serve_ports(env, serve_colors, recorded.get("serve_ports")),
            heartbeat_seconds=_heartbeat_seconds(env),
        )

    @property
    def address(self) -> str:
        """Where the stack is reached from this machine: its host, or loopback for a wildcard."""
        address = LOOPBACK if self.host in WILDCARD_HOSTS else self.host
        return f"[{address}]" if ":" in address else address

    @property
    def prefect_ui_url(self) -> str:
        return f"http://{self.address}:{self.prefect_port}"

    @property
    def prefect_api_url(self) -> str:
        return f"{self.prefect_ui_url}/api"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.address}:{self.mlflow_port}"

    def serve_url(self, color: str) -> str:
        return f"http://{self.address}:{self.serve_ports.get(color, 0)}"

    @property
    def serve_services(self) -> tuple[str, ...]:
        return tuple(SERVE_PREFIX + color for color in self.serve_colors)

    @property
    def services(self) -> tuple[str, ...]:
        """Every service of the stack, in the order ``up`` starts them."""
        return SERVICES + self.serve_services

    @property
    def prefect_headers(self) -> dict[str, str]:
        """The stack's own calls to the Prefect API: basic auth with the auth string, as
        Prefect's clients send it."""
        auth_string = self.credentials.get("PREFECT_API_AUTH_STRING")
        if not auth_string:
            return {}
        return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}

    def check_access(self) -> None:
        """Refuse a stack that asks for credentials when they are not all set."""
        if not self.auth:
            return
        why = (
            "TAXI_DURATION_STACK_AUTH is on"
            if is_loopback(self.host)
            else f"TAXI_DURATION_STACK_HOST {self.host!r} is not a loopback address"
        )
        missing = [name for name in CREDENTIALS if name not in self.credentials]
        if missing:
            raise InvalidInputError(
                f"{why}, so both servers ask for credentials: set {', '.join(missing)} "
                "(PREFECT_API_AUTH_STRING as user:password; MLflow's password "
                f"{MLFLOW_MIN_PASSWORD} characters or more)"
            )
        if len(self.credentials["MLFLOW_TRACKING_PASSWORD"]) < MLFLOW_MIN_PASSWORD:
            raise InvalidInputError(
                "MLFLOW_TRACKING_PASSWORD is too short for MLflow's basic-auth: "
                f"{MLFLOW_MIN_PASSWORD} characters or more"
            )

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

    @property
    def mlflow_auth_config(self) -> Path:
        return self.directory / "mlflow" / "basic_auth.ini"


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


# The data checks' thresholds (settings.py): they reach every flow run of the stack.
CHECK_SETTINGS_PREFIX = "TAXI_DURATION_CHECK_"
# Kept settings shown by `status` without their value.
SECRET_SETTINGS = frozenset({"TAXI_DURATION_SMTP_PASSWORD", "TAXI_DURATION_NOTIFY_WEBHOOK_URL"})


def is_kept_setting(name: str) -> bool:
    """A setting that reaches the stack's runs or alerts: `up` keeps it with the stack."""
    if name.startswith("TAXI_DURATION_"):
        return name != "TAXI_DURATION_STACK_DIR"  # names the folder the record is in
    return name in RUN_ENVIRONMENT_DEFAULTS or name == HEARTBEAT_SETTING


def kept_settings(directory: Path) -> dict[str, str]:
    """The settings the stack in ``directory`` was started with (its last `up`)."""
    settings = _recorded(directory).get("settings")
    if not isinstance(settings, dict):
        return {}
    return {str(name): str(value) for name, value in settings.items() if is_kept_setting(name)}


def reuse_kept_settings(env: MutableMapping[str, str]) -> None:
    """Add to ``env`` the kept settings of the stack it finds that it does not set: a stack
    restarted from a shell without them (after a reboot, a crash) keeps its data address,
    folders and alerts. A setting set again wins; set empty, it is dropped (its default)."""
    for name, value in kept_settings(find_directory(env)).items():
        env.setdefault(name, value)
    for name in [name for name, value in env.items() if not value and is_kept_setting(name)]:
        del env[name]


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


def _heartbeat_seconds(env: Mapping[str, str]) -> int:
    text = env.get(HEARTBEAT_SETTING)
    if not text:
        return DEFAULT_HEARTBEAT_SECONDS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < MIN_HEARTBEAT_SECONDS:
        raise InvalidInputError(
            f"{HEARTBEAT_SETTING} {text!r} is not allowed: a whole number of seconds, "
            f"at least {MIN_HEARTBEAT_SECONDS} (Prefect's minimum)"
        )
    return value


def _serve_colors(env: Mapping[str, str]) -> tuple[str, ...]:
    """TAXI_DURATION_SERVE_COLORS: comma-separated colors, or ``none``."""
    text = env.get("TAXI_DURATION_SERVE_COLORS", "").strip().lower()
    if not text:
        return DEFAULT_SERVE_COLORS
    if text == NO_SERVE_COLORS:
        return ()
    colors = [color.strip() for color in text.split(",")]
    for color in colors:
        if color not in COLORS:
            raise InvalidInputError(
                f"TAXI_DURATION_SERVE_COLORS {color!r} is not a color: allowed "
                f"{', '.join(COLORS)} (comma-separated), or {NO_SERVE_COLORS}"
            )
    return tuple(dict.fromkeys(colors))


def _serve_ports(env: Mapping[str, str], colors: Sequence[str], recorded: Any) -> dict[str, int]:
    """Each served color's port: TAXI_DURATION_SERVE_PORT for the first and the ports after
    it for the next, else the port `up` recorded, else 0 (`up` chooses a free one)."""
    if env.get("TAXI_DURATION_SERVE_PORT"):
        first = _port(env, "TAXI_DURATION_SERVE_PORT", 0)
        if first + len(colors) - 1 > 65535:
            raise StackError(
                f"TAXI_DURATION_SERVE_PORT {first} leaves no port for the {len(colors)} colors "
                "served: allowed up to " + str(65536 - len(colors))
            )
        return {color: first + number for number, color in enumerate(colors)}
    kept = recorded if isinstance(recorded, dict) else {}
    ports = {}
    for color in colors:
        try:
            ports[color] = int(kept.get(color, 0))
        except (TypeError, ValueError):
            ports[color] = 0
    return ports


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def with_serve_ports(config: StackConfig) -> StackConfig:
    """``config`` with a free port for each served color that has none yet."""
    ports = {
        color: config.serve_ports.get(color) or _free_port(config.host)
        for color in config.serve_colors
    }
    return replace(config, serve_ports=ports)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = env.get(name, "").strip().lower()
    if not text:
        return default
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InvalidInputError(f"{name} {text!r} is not a switch: allowed true or false")


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


def _record_stack(config: StackConfig, env: Mapping[str, str]) -> None:
    """Remember the ports, pool and settings in the folder, and the folder per user: `status`,
    `down` and a later `up` find the stack, as it was started, from any directory."""
    record: dict[str, Any] = {"prefect_port": config.prefect_port}
    record |= {"mlflow_port": config.mlflow_port, "pool": config.pool}
    record |= {"host": config.host, "auth": config.auth}
    record["serve_ports"] = dict(config.serve_ports)
    record["settings"] = {name: value for name, value in env.items() if is_kept_setting(name)}
    # Readable by its owner only (an SMTP password may be among the settings); whole or not at all.
    partial = config.state_file.with_name(config.state_file.name + ".tmp")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(json.dumps(record, indent=1) + "\n")
    partial.replace(config.state_file)
    with contextlib.suppress(OSError):
        last = last_stack_file(env)
        last.parent.mkdir(parents=True, exist_ok=True)
        last.write_text(f"{config.directory}\n")
