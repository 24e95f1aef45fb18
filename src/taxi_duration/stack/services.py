"""What the stack runs: each service's command line and environment (its addresses, and
each server's own way of asking for credentials), and the environment every flow run of the
stack's work pool gets."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from taxi_duration.environment import RUN_ENVIRONMENT_DEFAULTS
from taxi_duration.errors import StackError
from taxi_duration.stack.config import (
    CHECK_SETTINGS_PREFIX,
    CREDENTIALS,
    HEARTBEAT_SETTING,
    SERVE_PREFIX,
    StackConfig,
)


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
    serve = {
        SERVE_PREFIX + color: [
            _executable("taxi-duration"),
            *("serve", "--color", color, "--host", config.host),
            *("--port", str(config.serve_ports.get(color, 0))),
        ]
        for color in config.serve_colors
    }
    return serve | {
        "prefect-server": [
            _executable("prefect"),
            *("server", "start", "--host", config.host, "--port", str(config.prefect_port)),
        ],
        "mlflow-server": [
            _executable("mlflow"),
            *("server", "--host", config.host, "--port", str(config.mlflow_port)),
            *(("--app-name", "basic-auth") if config.auth else ()),
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
        # A run works in a temporary folder deleted after it: outputs go here instead.
        "TAXI_DURATION_OUTPUT_DIR": str(config.output_dir),
        "MLFLOW_TRACKING_URI": config.mlflow_url,
        **{name: base.get(name) or value for name, value in RUN_ENVIRONMENT_DEFAULTS.items()},
        HEARTBEAT_SETTING: str(config.heartbeat_seconds),
        # The data checks' thresholds decide whether a run may train: every run of the stack
        # gets those `up` was given, whichever worker starts it.
        **{
            name: value
            for name, value in base.items()
            if name.startswith(CHECK_SETTINGS_PREFIX) and value
        },
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
        "prefect-server": {**server, **_prefect_ui(config, base), **_prefect_server_auth(config)},
        "mlflow-server": {
            **{key: value for key, value in common.items() if key != "MLFLOW_TRACKING_URI"},
            # MLflow's job runner (huey consumers, for GenAI jobs this project has none of):
            # 8 idle processes and about 2 GB. A user's own setting wins.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": base.get(
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"
            ),
            **_mlflow_server_auth(config, base),
        },
        # Flow runs inherit the worker's environment: they log to the stack's servers, with
        # the credentials (kept out of the pool's job template, which `stack status` prints).
        "worker": {
            **common,
            **run_environment(config, base),
            **config.credentials,
            "PREFECT_API_URL": config.prefect_api_url,
        },
        # The prediction services read the champion from the stack's MLflow server, with its
        # credentials, and then ask for the same on their predictions.
        **{
            service: {
                **{key: value for key, value in common.items() if key != CREDENTIALS[0]},
                "MLFLOW_TRACKING_URI": config.mlflow_url,
                **{name: value for name, value in config.credentials.items() if "MLFLOW" in name},
                "TAXI_DURATION_SERVE_AUTH": "true" if config.auth else "false",
            }
            for service in config.serve_services
        },
    }


UI_API_URL_SETTINGS = ("PREFECT_SERVER_UI_API_URL", "PREFECT_UI_API_URL")


def _prefect_ui(config: StackConfig, base: Mapping[str, str]) -> dict[str, str]:
    """Where the server's UI finds its API. The UI asks its server (``GET /ui-settings``),
    and Prefect answers from PREFECT_SERVER_API_PORT, not ``--port``: without this, a stack
    on another port than 4200 has a UI that cannot connect. A team's own setting (a proxy,
    a public name for a stack bound to 0.0.0.0) wins."""
    if any(base.get(name) for name in UI_API_URL_SETTINGS):
        return {}
    return {UI_API_URL_SETTINGS[0]: config.prefect_api_url}


def _prefect_server_auth(config: StackConfig) -> dict[str, str]:
    if not config.auth:
        return {}
    return {"PREFECT_SERVER_API_AUTH_STRING": config.credentials["PREFECT_API_AUTH_STRING"]}


def _mlflow_server_auth(config: StackConfig, base: Mapping[str, str]) -> dict[str, str]:
    """MLflow's basic-auth app: its users in the stack's folder (a team's own config file
    wins), the admin created on first start with the clients' username and password."""
    if not config.auth:
        return {}
    return {
        "MLFLOW_AUTH_CONFIG_PATH": base.get("MLFLOW_AUTH_CONFIG_PATH")
        or str(config.mlflow_auth_config),
        # Signs its CSRF tokens; kept in the stack's folder so a restart keeps sessions valid.
        "MLFLOW_FLASK_SERVER_SECRET_KEY": base.get("MLFLOW_FLASK_SERVER_SECRET_KEY")
        or _secret_key(config.directory / "mlflow" / "flask-secret-key"),
        "MLFLOW_AUTH_ADMIN_USERNAME": config.credentials["MLFLOW_TRACKING_USERNAME"],
        "MLFLOW_AUTH_ADMIN_PASSWORD": config.credentials["MLFLOW_TRACKING_PASSWORD"],
    }


def _secret_key(path: Path) -> str:
    """The key in ``path``, made (random, readable by its owner only) the first time."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip()
