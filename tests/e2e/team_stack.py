"""Helpers for the tests of a stack run as a team runs it: servers, worker, deployments, alerts.

The fixtures are in ``conftest.py``; this module holds what they and the tests share.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
from ports import free_port

from taxi_duration.environment import RUN_ENVIRONMENT_DEFAULTS
from taxi_duration.stack.config import StackConfig
from taxi_duration.stack.pool import prefect_api
from taxi_duration.stack.supervisor import _port_free

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RUN_TIMEOUT_SECONDS = 600
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
# What a test must not inherit from the developer's shell.
ISOLATED = (
    "MLFLOW_TRACKING_URI",
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_API_AUTH_STRING",
    "PREFECT_SERVER_API_AUTH_STRING",
    "PREFECT_PROFILE",
    "PREFECT_UI_URL",
    "PREFECT_UI_API_URL",
    "PREFECT_SERVER_UI_API_URL",
    "TAXI_DURATION_DATA_URL",
    "TAXI_DURATION_DATA_DIR",
    "TAXI_DURATION_OUTPUT_DIR",
    "TAXI_DURATION_MLFLOW_DIR",
    "TAXI_DURATION_MODEL_NAME",
    "TAXI_DURATION_EXPERIMENT_NAME",
    "TAXI_DURATION_STACK_DIR",
    "TAXI_DURATION_STACK_HOST",
    "TAXI_DURATION_STACK_AUTH",
    "TAXI_DURATION_SERVE_COLORS",
    "TAXI_DURATION_SERVE_PORT",
    "TAXI_DURATION_SERVE_AUTH",
    "TAXI_DURATION_SERVE_POLL_SECONDS",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_AUTH_CONFIG_PATH",
    "TAXI_DURATION_NOTIFY_WEBHOOK_URL",
    "TAXI_DURATION_NOTIFY_EMAIL_TO",
    "TAXI_DURATION_NOTIFY_ON_PROMOTION",
    "TAXI_DURATION_SMTP_HOST",
    "TAXI_DURATION_SMTP_PORT",
    "TAXI_DURATION_SMTP_USER",
    "TAXI_DURATION_SMTP_PASSWORD",
    "TAXI_DURATION_SMTP_TLS",
    "XDG_STATE_HOME",
)


def spec(**fields: object) -> tuple[str, str]:
    """``prefect deployment run`` arguments giving the flow its one parameter, the spec."""
    return "--param", f"spec={json.dumps(fields)}"


def clean_env() -> dict[str, str]:
    # RUN_ENVIRONMENT_DEFAULTS: tests/conftest.py sets them for the tests' own flows; the
    # stack must give them to its runs itself.
    isolated = {*ISOLATED, *RUN_ENVIRONMENT_DEFAULTS}
    return {key: value for key, value in os.environ.items() if key not in isolated}


def run(
    env: dict[str, str], *args: str, cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _as_a_background_job() -> None:
    """What a shell without job control gives its background jobs (``cmd &`` in a script,
    ``nohup``, some service managers): SIGINT and SIGQUIT ignored, inherited by what they
    start. The stack must not depend on how its caller was started."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)


def stack_command(
    env: dict[str, str], action: str, cwd: Path, timeout: float = 480
) -> subprocess.CompletedProcess[str]:
    """``taxi-duration stack ACTION``, run as a background job of a script."""
    return subprocess.run(
        [sys.executable, "-m", "taxi_duration.cli", "stack", action],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_as_a_background_job,
    )


def pid_groups(directory: Path) -> list[int]:
    groups = []
    for path in (directory / "run").glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            groups.append(int(json.loads(path.read_text())["pid"]))
    return groups


def group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (a zombie waiting for its parent does not)."""
    for process in psutil.process_iter(["status"]):
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            if os.getpgid(process.pid) == pgid and process.info["status"] != "zombie":
                return True
    return False


def kill_groups(groups: list[int]) -> None:
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


@dataclass
class Stack:
    root: Path
    directory: Path
    env: dict[str, str]  # the stack's settings, plus PREFECT_API_URL and MLFLOW_TRACKING_URI
    prefect_port: int
    mlflow_port: int
    # Each prediction service's port by color, as `up` recorded it (chosen free unless set).
    serve_ports: dict[str, int] = field(default_factory=dict)
    up_output: str = ""  # what `stack up` printed

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def ui(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}"

    @property
    def mlflow(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    def serve(self, color: str) -> str:
        """The address of the color's prediction service."""
        return f"http://127.0.0.1:{self.serve_ports[color]}"

    def worker_log(self) -> str:
        path = self.directory / "logs" / "worker.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else "(no worker log)"

    @property
    def headers(self) -> dict[str, str]:
        """The Prefect API's credentials, as its clients send them, if the stack has some."""
        auth_string = self.env.get("PREFECT_API_AUTH_STRING")
        if not auth_string:
            return {}
        return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The API's answer; a busy server (503, its database locked) is asked again."""
        response = prefect_api(StackConfig.from_env(self.env), method, path, body, timeout=30)
        response.raise_for_status()
        return response.json()

    def trigger(self, deployment: str, *args: str) -> str:
        """``prefect deployment run DEPLOYMENT ARGS``; the flow run's id."""
        result = run(
            self.env, str(BIN / "prefect"), "deployment", "run", deployment, *args, cwd=REPO_ROOT
        )
        assert result.returncode == 0, result.stdout + result.stderr
        match = re.search(r"UUID: ([0-9a-f-]{36})", result.stdout)
        assert match, result.stdout
        return match.group(1)

    def logs(self, flow_run_id: str) -> str:
        records = self.call(
            "POST",
            "/logs/filter",
            {
                "logs": {"flow_run_id": {"any_": [flow_run_id]}},
                "sort": "TIMESTAMP_ASC",
                "limit": 200,
            },
        )
        return "\n".join(f"{record['level']:>2} {record['message']}" for record in records)

    def wait_for_log(self, flow_run_id: str, text: str, timeout: float = 60) -> str:
        """The run's logs once they hold ``text``: they reach the API in batches, possibly
        after the run is final."""
        deadline = time.monotonic() + timeout
        while text not in (logs := self.logs(flow_run_id)):
            assert time.monotonic() < deadline, f"no {text!r} in the run's logs:\n{logs}"
            time.sleep(1)
        return logs

    def wait_final(self, flow_run_id: str, timeout: float = RUN_TIMEOUT_SECONDS) -> dict[str, Any]:
        """The flow run once it is in a final state (fails the test after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            flow_run = self.call("GET", f"/flow_runs/{flow_run_id}")
            if flow_run["state"]["type"] in FINAL_STATES:
                return dict(flow_run)
            assert time.monotonic() < deadline, (
                f"flow run {flow_run_id} still {flow_run['state']['type']} after {timeout}s\n"
                f"--- flow run logs\n{self.logs(flow_run_id)}\n--- worker\n{self.worker_log()}"
            )
            time.sleep(2)

    def wait_completed(self, flow_run_id: str) -> dict[str, Any]:
        flow_run = self.wait_final(flow_run_id)
        assert flow_run["state"]["type"] == "COMPLETED", (
            f"flow run {flow_run_id}: {flow_run['state']}\n--- flow run logs\n"
            f"{self.logs(flow_run_id)}\n--- worker log\n{self.worker_log()}"
        )
        return flow_run


@contextlib.contextmanager
def running_stack(root: Path, synthetic_data_url: str, **settings: str) -> Iterator[Stack]:
    """``stack up`` on free loopback ports in ``root``/stack, with these settings; then down,
    and any process group it left is killed."""
    directory = root / "stack"
    stack = Stack(root, directory, clean_env(), free_port(), free_port())
    stack.env.update(
        TAXI_DURATION_STACK_DIR=str(directory),
        TAXI_DURATION_PREFECT_PORT=str(stack.prefect_port),
        TAXI_DURATION_MLFLOW_PORT=str(stack.mlflow_port),
        TAXI_DURATION_STACK_TIMEOUT="300",
        TAXI_DURATION_DATA_URL=synthetic_data_url,
        XDG_STATE_HOME=str(root / "state"),  # where `up` records the stack's folder
        PREFECT_HOME=str(root / "prefect-client"),  # the CLI's; the stack has its own
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_CLI_PROMPT="false",
        **settings,
    )
    groups: list[int] = []
    try:
        started = stack_command(stack.env, "up", cwd=root)
        groups = pid_groups(directory)
        assert started.returncode == 0, started.stdout + started.stderr
        stack.up_output = started.stdout
        recorded = json.loads((directory / "stack.json").read_text())
        stack.serve_ports = {color: int(port) for color, port in recorded["serve_ports"].items()}
        stack.env.update(PREFECT_API_URL=stack.api, MLFLOW_TRACKING_URI=stack.mlflow)
        yield stack
    finally:
        groups = sorted(set(groups) | set(pid_groups(directory)))
        stopped = stack_command(stack.env, "down", cwd=root, timeout=120)
        left = [pgid for pgid in groups if group_alive(pgid)]
        kill_groups(groups)  # whatever `down` could not stop
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        # `down` leaves no process and no listening port behind.
        assert left == [], f"stack down left the process groups {left}"
        ports = (stack.prefect_port, stack.mlflow_port, *stack.serve_ports.values())
        assert all(_port_free(port) for port in ports), f"a port of {ports} still listens"


def deploy(stack: Stack) -> subprocess.CompletedProcess[str]:
    """``prefect deploy --all`` from the repository root, leaving the repository as it was."""
    prefect_yaml = REPO_ROOT / "prefect.yaml"
    before = prefect_yaml.read_bytes()
    had_dot_prefect = (REPO_ROOT / ".prefect").exists()
    result = run(stack.env, str(BIN / "prefect"), "--no-prompt", "deploy", "--all", cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert prefect_yaml.read_bytes() == before, "prefect deploy changed prefect.yaml"
    assert (REPO_ROOT / ".prefect").exists() == had_dot_prefect, "prefect deploy wrote .prefect/"
    return result


# --- what the alerts reach: an SMTP sink and a webhook receiver on loopback ---------------


@dataclass
class Inbox:
    """What a sink received, in order; safe to read while the sink's thread appends."""

    items: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, item: dict[str, Any]) -> None:
        with self.lock:
            self.items.append(item)

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.items)


class SMTPSink:
    """An aiosmtpd server on 127.0.0.1 that keeps every message it is given."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.inbox = Inbox()
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        body = message.get_body(preferencelist=("plain",))
        self.inbox.add(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "subject": str(message["subject"]),
                "body": body.get_content().replace("\r\n", "\n") if body is not None else "",
            }
        )
        return "250 OK"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that keeps the JSON of every POST it is sent."""

    def __init__(self) -> None:
        inbox = self.inbox = Inbox()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                inbox.add({"path": self.path, "json": json.loads(self.rfile.read(length))})
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/taxi"

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
