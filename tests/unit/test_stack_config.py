"""The stack's own logic, without servers: port probe, where the stack is, alert settings."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest

from taxi_duration import alerts
from taxi_duration.errors import InvalidInputError, StackError
from taxi_duration.settings import Settings
from taxi_duration.stack import commands, pool, services
from taxi_duration.stack.commands import _print_kept_settings
from taxi_duration.stack.config import (
    StackConfig,
    _record_stack,
    find_directory,
    kept_settings,
    last_stack_file,
    reuse_kept_settings,
    with_serve_ports,
)
from taxi_duration.stack.supervisor import _port_free


def _stack_up(env: dict[str, str], folder: Path) -> subprocess.CompletedProcess[str]:
    """``python -m taxi_duration.cli stack up`` in ``folder`` with only ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "taxi_duration.cli", "stack", "up"],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_port_left_in_time_wait_is_free_and_a_listening_one_is_not() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    assert not _port_free(port)
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server side closes first: its end of the port goes to TIME_WAIT
    client.close()
    listener.close()
    assert _port_free(port)  # as `up` right after `down` finds it


def test_the_stack_is_found_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere, there = tmp_path / "elsewhere", tmp_path / "project" / ".stack"
    elsewhere.mkdir()
    (there / "run").mkdir(parents=True)
    (there / "stack.json").write_text(json.dumps({"prefect_port": 4321, "mlflow_port": 5432}))
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    monkeypatch.chdir(elsewhere)
    assert find_directory(env) == elsewhere / ".stack"  # nothing recorded yet

    last_stack_file(env).parent.mkdir(parents=True)
    last_stack_file(env).write_text(f"{there}\n")  # as `up` records it
    config = StackConfig.from_env(env)
    assert config.directory == there
    assert (config.prefect_port, config.mlflow_port) == (4321, 5432)
    # A setting wins over what was recorded.
    assert StackConfig.from_env({**env, "TAXI_DURATION_PREFECT_PORT": "4200"}).prefect_port == 4200
    assert find_directory({**env, "TAXI_DURATION_STACK_DIR": str(tmp_path)}) == tmp_path
    # A .stack of the current folder comes first.
    (elsewhere / ".stack" / "run").mkdir(parents=True)
    assert find_directory(env) == elsewhere / ".stack"


def test_flow_runs_get_the_data_url_outputs_bounded_mlflow_retries_and_heartbeats(
    tmp_path: Path,
) -> None:
    env = {"TAXI_DURATION_STACK_DIR": str(tmp_path), "TAXI_DURATION_DATA_URL": "http://mirror"}
    run_env = services.run_environment(StackConfig.from_env(env), env)
    assert run_env == {
        "TAXI_DURATION_DATA_URL": "http://mirror",
        "TAXI_DURATION_DATA_DIR": str(tmp_path / "data"),
        "TAXI_DURATION_OUTPUT_DIR": str(tmp_path / "outputs"),
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
        "OMP_WAIT_POLICY": "PASSIVE",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
    }


def test_flow_runs_get_the_data_checks_thresholds_up_was_given(tmp_path: Path) -> None:
    env = {
        "TAXI_DURATION_STACK_DIR": str(tmp_path),
        "TAXI_DURATION_CHECK_MIN_KEPT_ROWS": "500",
        "TAXI_DURATION_CHECK_MAX_ZERO_DISTANCE_SHARE": "0.3",
        "TAXI_DURATION_CHECK_MAX_NULL_SHARE": "",  # set empty: its default
    }
    run_env = services.run_environment(StackConfig.from_env(env), env)
    assert {name: value for name, value in run_env.items() if "_CHECK_" in name} == {
        "TAXI_DURATION_CHECK_MIN_KEPT_ROWS": "500",
        "TAXI_DURATION_CHECK_MAX_ZERO_DISTANCE_SHARE": "0.3",
    }


def test_the_settings_up_was_given_are_kept_private_and_reused_unless_set_again(
    tmp_path: Path,
) -> None:
    env = {
        "TAXI_DURATION_STACK_DIR": str(tmp_path),
        "TAXI_DURATION_DATA_URL": "http://mirror",
        "TAXI_DURATION_SMTP_PASSWORD": "s3cret",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "60",
        "HOME": "/home/someone",  # not a setting of the stack's
    }
    config = StackConfig.from_env(env)
    config.directory.mkdir(exist_ok=True)
    _record_stack(config, env)
    assert config.state_file.stat().st_mode & 0o777 == 0o600
    assert kept_settings(tmp_path) == {
        "TAXI_DURATION_DATA_URL": "http://mirror",
        "TAXI_DURATION_SMTP_PASSWORD": "s3cret",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "60",
    }
    again = {
        "TAXI_DURATION_STACK_DIR": str(tmp_path),
        "TAXI_DURATION_SMTP_PASSWORD": "new",
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "",
    }
    reuse_kept_settings(again)
    assert again == {
        "TAXI_DURATION_STACK_DIR": str(tmp_path),
        "TAXI_DURATION_DATA_URL": "http://mirror",  # kept
        "TAXI_DURATION_SMTP_PASSWORD": "new",  # set again: it wins
        # set empty: dropped, its default again
    }
    assert StackConfig.from_env(again).data_url == "http://mirror"


def test_status_names_the_kept_settings_and_hides_the_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _print_kept_settings(
        {"TAXI_DURATION_DATA_URL": "http://mirror", "TAXI_DURATION_SMTP_PASSWORD": "s3cret"}
    )
    out = capsys.readouterr().out
    assert "TAXI_DURATION_DATA_URL=http://mirror" in out
    assert "TAXI_DURATION_SMTP_PASSWORD=(set)" in out
    assert "s3cret" not in out


def test_a_service_starts_with_default_signals_whatever_its_caller_ignores(
    tmp_path: Path,
) -> None:
    """A background job of a script ignores SIGINT and SIGQUIT; what the stack starts must
    not (Prefect's worker stops on SIGTERM by sending itself SIGINT)."""
    config = StackConfig.from_env({"TAXI_DURATION_STACK_DIR": str(tmp_path)})
    for folder in (config.logs, config.run):
        folder.mkdir(parents=True)
    command = [sys.executable, "-c", "print(open('/proc/self/status').read())"]
    script = (
        "import signal, sys\n"
        "from taxi_duration.stack.config import StackConfig\n"
        "from taxi_duration.stack.supervisor import _start\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGQUIT, signal.SIG_IGN)\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})\n"
        f"config = StackConfig.from_env({{'TAXI_DURATION_STACK_DIR': {str(tmp_path)!r}}})\n"
        f"_start(config, 'worker', {command!r}, {{}}).wait()\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    masks = dict(
        line.split(":\t")
        for line in config.log_file("worker").read_text().splitlines()
        if line.startswith("Sig")
    )
    sigint_and_sigquit = 1 << (signal.SIGINT - 1) | 1 << (signal.SIGQUIT - 1)
    assert int(masks["SigIgn"], 16) & sigint_and_sigquit == 0, masks
    assert int(masks["SigCgt"], 16) & 1 << (signal.SIGINT - 1), masks  # KeyboardInterrupt
    assert int(masks["SigBlk"], 16) == 0, masks


class _BusyThenReady(BaseHTTPRequestHandler):
    """A Prefect API that answers 503 (database locked) to its first ``busy`` requests."""

    busy: ClassVar[int] = 0
    seen: ClassVar[list[str]] = []

    def do_PATCH(self) -> None:
        self.seen.append(self.command)
        status = 503 if len(self.seen) <= self.busy else 204
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def busy_api(tmp_path: Path) -> Iterator[StackConfig]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BusyThenReady)
    _BusyThenReady.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "TAXI_DURATION_STACK_DIR": str(tmp_path),
        "TAXI_DURATION_PREFECT_PORT": str(server.server_address[1]),
    }
    yield StackConfig.from_env(env)
    server.shutdown()
    server.server_close()


def test_a_busy_prefect_server_is_asked_again_and_its_last_answer_kept(
    busy_api: StackConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "API_RETRY_DELAYS", (0.01, 0.01, 0.01))
    _BusyThenReady.busy = 2  # as `stack up` met it under load in CI: HTTP 503, then fine
    assert pool.prefect_api(busy_api, "PATCH", "/work_pools/p", {}).status_code == 204
    assert len(_BusyThenReady.seen) == 3

    _BusyThenReady.seen, _BusyThenReady.busy = [], 10  # still busy after every retry
    assert pool.prefect_api(busy_api, "PATCH", "/work_pools/p", {}).status_code == 503
    assert len(_BusyThenReady.seen) == 4


def test_alert_settings_make_the_channels() -> None:
    wanted = alerts.alerts_from(
        Settings(
            notify_webhook_url="https://hooks.slack.com/services/A/B/C",
            notify_email_to="a@example.com, b@example.com",
            smtp_host="smtp.example.com",
            smtp_tls="ssl",
        )
    )
    assert wanted.webhook_url == "https://hooks.slack.com/services/A/B/C"
    assert wanted.email is not None
    assert (wanted.email.to, wanted.email.port) == (["a@example.com", "b@example.com"], 465)
    assert not wanted.on_promotion
    none = alerts.alerts_from(Settings())
    assert (none.webhook_url, none.email) == (None, None)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"notify_webhook_url": "hooks.slack.com/x"}, "TAXI_DURATION_NOTIFY_WEBHOOK_URL"),
        ({"notify_email_to": "team", "smtp_host": "h"}, "'team' is not an email address"),
        ({"notify_email_to": "a@example.com"}, "set TAXI_DURATION_SMTP_HOST"),
    ],
)
def test_bad_alert_settings_are_named(settings: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        alerts.alerts_from(Settings(**settings))  # type: ignore[arg-type]


def test_stack_up_with_a_bad_alert_setting_exits_2_and_starts_nothing(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TAXI_DURATION_STACK_DIR": str(tmp_path / "stack"),
        "TAXI_DURATION_SMTP_TLS": "maybe",
    }
    result = _stack_up(env, tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("taxi-duration: error: "), "not the CLI's one error path"
    assert "TAXI_DURATION_SMTP_TLS 'maybe'" in result.stderr
    assert "'starttls', 'ssl' or 'none'" in result.stderr
    assert not (tmp_path / "stack").exists()


def test_the_webhook_url_is_kept_as_a_secret_and_posted_to_as_slack_and_teams_take_it() -> None:
    url = "https://hooks.slack.com/services/T000/B000/XXXX"
    block = alerts._webhook_block(url)
    assert url not in block.model_dump_json()  # masked wherever the block is shown
    request = block._build_request_args(body="the message", subject="the subject")
    assert request["url"] == url
    assert request["method"] == "POST"
    assert request["json"] == {"text": "the subject\n\nthe message"}


CREDENTIALS = {
    "PREFECT_API_AUTH_STRING": "team:prefect-secret",
    "MLFLOW_TRACKING_USERNAME": "team",
    "MLFLOW_TRACKING_PASSWORD": "mlflow-secret-1",
}


def test_stack_up_off_loopback_without_credentials_exits_2_and_starts_nothing(
    tmp_path: Path,
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TAXI_DURATION_STACK_DIR": str(tmp_path / "stack"),
        "TAXI_DURATION_STACK_HOST": "0.0.0.0",
        "MLFLOW_TRACKING_USERNAME": "team",  # one of three: still refused
    }
    result = _stack_up(env, tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "TAXI_DURATION_STACK_HOST '0.0.0.0' is not a loopback address" in result.stderr
    assert "set PREFECT_API_AUTH_STRING, MLFLOW_TRACKING_PASSWORD" in result.stderr
    assert not (tmp_path / "stack").exists()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"TAXI_DURATION_STACK_AUTH": "on"}, "TAXI_DURATION_STACK_AUTH is on, so both servers"),
        (
            {"TAXI_DURATION_STACK_AUTH": "yes", **CREDENTIALS, "MLFLOW_TRACKING_PASSWORD": "short"},
            "MLFLOW_TRACKING_PASSWORD is too short for MLflow's basic-auth: 12 characters",
        ),
        ({"TAXI_DURATION_STACK_AUTH": "maybe"}, "TAXI_DURATION_STACK_AUTH 'maybe' is not a switch"),
    ],
)
def test_bad_access_settings_are_named(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        StackConfig.from_env({"TAXI_DURATION_STACK_DIR": str(tmp_path), **settings}).check_access()


def test_loopback_needs_no_credentials_and_starts_both_servers_without_auth(
    tmp_path: Path,
) -> None:
    for host in ("127.0.0.1", "localhost", "::1"):
        env = {"TAXI_DURATION_STACK_DIR": str(tmp_path), "TAXI_DURATION_STACK_HOST": host}
        config = StackConfig.from_env(env)
        config.check_access()
        assert not config.auth
    config = StackConfig.from_env({"TAXI_DURATION_STACK_DIR": str(tmp_path)})
    envs = services.environments(config, {})
    assert "--app-name" not in services.commands(config)["mlflow-server"]
    assert "PREFECT_SERVER_API_AUTH_STRING" not in envs["prefect-server"]
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" not in envs["mlflow-server"]
    assert config.prefect_headers == {}


def test_off_loopback_both_servers_ask_for_the_clients_credentials(tmp_path: Path) -> None:
    env = {"TAXI_DURATION_STACK_DIR": str(tmp_path), "TAXI_DURATION_STACK_HOST": "0.0.0.0"}
    config = StackConfig.from_env({**env, **CREDENTIALS})
    config.check_access()
    assert config.auth
    assert config.prefect_api_url == f"http://127.0.0.1:{config.prefect_port}/api"
    assert "team:prefect-secret" not in repr(config)
    commands = services.commands(config)
    assert commands["prefect-server"][-4:-2] == ["--host", "0.0.0.0"]
    assert commands["mlflow-server"][commands["mlflow-server"].index("--app-name") + 1] == (
        "basic-auth"
    )
    envs = services.environments(config, {**env, **CREDENTIALS})
    assert envs["prefect-server"]["PREFECT_SERVER_API_AUTH_STRING"] == "team:prefect-secret"
    assert envs["mlflow-server"]["MLFLOW_AUTH_ADMIN_USERNAME"] == "team"
    assert envs["mlflow-server"]["MLFLOW_AUTH_ADMIN_PASSWORD"] == "mlflow-secret-1"
    assert envs["mlflow-server"]["MLFLOW_AUTH_CONFIG_PATH"] == str(config.mlflow_auth_config)
    # The key of its CSRF tokens: made once, kept (a restart keeps sessions), owner-only.
    key = envs["mlflow-server"]["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    assert len(key) == 64
    assert (
        services.environments(config, env)["mlflow-server"]["MLFLOW_FLASK_SERVER_SECRET_KEY"] == key
    )
    assert (tmp_path / "mlflow" / "flask-secret-key").stat().st_mode & 0o077 == 0
    # The worker (hence its flow runs) gets the credentials from the stack's settings ...
    assert {name: envs["worker"][name] for name in CREDENTIALS} == CREDENTIALS
    # ... and the pool's job template, which `stack status` prints, does not.
    run_env = services.run_environment(config, {**env, **CREDENTIALS})
    assert not set(CREDENTIALS) & set(run_env)
    assert config.prefect_headers == {"Authorization": "Basic dGVhbTpwcmVmZWN0LXNlY3JldA=="}


def test_the_prefect_servers_ui_is_told_its_own_api_on_the_stacks_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The UI asks its server where the API is; Prefect answers from its settings, which
    ``--port`` does not change: read here as the server's process reads them."""
    from prefect.settings import Settings as PrefectSettings

    env = {"TAXI_DURATION_STACK_DIR": str(tmp_path), "TAXI_DURATION_PREFECT_PORT": "14200"}
    config = StackConfig.from_env(env)
    server_env = services.environments(config, env)["prefect-server"]
    for name in [name for name in os.environ if name.startswith("PREFECT_")]:
        monkeypatch.delenv(name)
    for name, value in server_env.items():
        if name.startswith("PREFECT_"):
            monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no prefect.toml or pyproject.toml of the repository
    settings = PrefectSettings()
    assert settings.server.ui.api_url == "http://127.0.0.1:14200/api"
    assert settings.ui_url == "http://127.0.0.1:14200"  # links in alerts and logs

    # A team's own address for it (a proxy, a public name) is kept.
    own = {**env, "PREFECT_UI_API_URL": "https://prefect.example.com/api"}
    assert "PREFECT_SERVER_UI_API_URL" not in services.environments(config, own)["prefect-server"]


PAGE = 200  # the most a Prefect server answers a call (PREFECT_SERVER_API_DEFAULT_LIMIT)
# A team's own automations, sorted before the project's: ours are on the second page.
OTHERS = [{"name": f"a-team-alert-{i:03}", "enabled": True, "actions": []} for i in range(250)]
OURS = [
    {
        "name": alerts.FAILED_AUTOMATION,
        "enabled": True,
        "actions": [{"type": "send-notification", "block_document_id": "webhook-id"}],
    },
    {
        "name": alerts.HEARTBEAT_AUTOMATION,
        "enabled": True,
        "actions": [{"type": "change-flow-run-state", "name": "Crashed", "state": "CRASHED"}],
    },
]


class _Automations(BaseHTTPRequestHandler):
    """Prefect's automations API: pages of at most PAGE, sorted by name; one block."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        offset = body.get("offset") or 0
        self._answer(200, sorted(OTHERS + OURS, key=lambda a: a["name"])[offset : offset + PAGE])

    def do_GET(self) -> None:
        found = self.path == "/api/block_documents/webhook-id"
        self._answer(200 if found else 404, {"name": alerts.WEBHOOK_BLOCK} if found else {})

    def _answer(self, status: int, content: object) -> None:
        data = json.dumps(content).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_status_tells_every_automation_of_ours_in_force_beyond_a_page_and_what_it_does(
    tmp_path: Path,
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Automations)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "TAXI_DURATION_STACK_DIR": str(tmp_path),
        "TAXI_DURATION_PREFECT_PORT": str(server.server_address[1]),
    }
    try:
        lines = pool.alerts_in_force(StackConfig.from_env(env))
    finally:
        server.shutdown()
        server.server_close()
    assert lines == [
        f"{alerts.FAILED_AUTOMATION} (on) -> {alerts.WEBHOOK_BLOCK}",
        # No block: it changes the run's state, as `up` tells it.
        f"{alerts.HEARTBEAT_AUTOMATION} (on) -> mark it Crashed",
    ]


def test_up_finds_its_automations_beyond_a_page_so_it_updates_them_not_makes_them_again() -> None:
    class Client:
        def read_automations(self, *, sort: object, offset: int) -> list[SimpleNamespace]:
            automations = sorted(OTHERS + OURS, key=lambda a: a["name"])[offset : offset + PAGE]
            return [SimpleNamespace(name=a["name"]) for a in automations]

    assert set(alerts._ours(Client())) == {alerts.FAILED_AUTOMATION, alerts.HEARTBEAT_AUTOMATION}


def test_off_loopback_the_prediction_service_asks_for_mlflows_user_and_password(
    tmp_path: Path,
) -> None:
    env = {"TAXI_DURATION_STACK_DIR": str(tmp_path), "TAXI_DURATION_STACK_HOST": "0.0.0.0"}
    config = with_serve_ports(StackConfig.from_env({**env, **CREDENTIALS}))
    command = services.commands(config)["serve-green"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    served = services.environments(config, {**env, **CREDENTIALS})["serve-green"]
    assert served["TAXI_DURATION_SERVE_AUTH"] == "true"
    assert served["MLFLOW_TRACKING_URI"] == config.mlflow_url
    assert served["MLFLOW_TRACKING_USERNAME"] == "team"
    assert served["MLFLOW_TRACKING_PASSWORD"] == "mlflow-secret-1"
    assert "PREFECT_API_AUTH_STRING" not in served
    # On loopback, no credentials asked.
    loopback = with_serve_ports(StackConfig.from_env({"TAXI_DURATION_STACK_DIR": "x"}))
    assert services.environments(loopback, {})["serve-green"]["TAXI_DURATION_SERVE_AUTH"] == "false"


def test_the_served_colors_get_the_set_ports_or_the_recorded_ones_or_free_ones(
    tmp_path: Path,
) -> None:
    base = {"TAXI_DURATION_STACK_DIR": str(tmp_path)}
    config = StackConfig.from_env(base)
    assert config.serve_colors == ("green",)
    assert config.services == ("prefect-server", "mlflow-server", "worker", "serve-green")
    chosen = with_serve_ports(config)  # none set or recorded: a free port each
    assert chosen.serve_ports["green"] > 0
    assert _port_free(chosen.serve_ports["green"])
    two = StackConfig.from_env(
        {**base, "TAXI_DURATION_SERVE_COLORS": "yellow, green", "TAXI_DURATION_SERVE_PORT": "8100"}
    )
    assert two.serve_ports == {"yellow": 8100, "green": 8101}
    assert services.commands(two)["serve-green"][-2:] == ["--port", "8101"]
    assert two.serve_url("yellow") == "http://127.0.0.1:8100"
    (tmp_path / "stack.json").write_text(json.dumps({"serve_ports": {"green": 8123}}))
    assert StackConfig.from_env(base).serve_ports == {"green": 8123}
    none = StackConfig.from_env({**base, "TAXI_DURATION_SERVE_COLORS": "none"})
    assert none.serve_services == ()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"TAXI_DURATION_SERVE_COLORS": "green,purple"},
            "TAXI_DURATION_SERVE_COLORS 'purple' is not a color: allowed yellow, green, fhvhv",
        ),
        ({"TAXI_DURATION_SERVE_PORT": "http"}, "TAXI_DURATION_SERVE_PORT 'http' is not a port"),
        ({"TAXI_DURATION_SERVE_PORT": "70000"}, "TAXI_DURATION_SERVE_PORT 70000 is out of range"),
        (
            {"TAXI_DURATION_SERVE_COLORS": "green,yellow", "TAXI_DURATION_SERVE_PORT": "65535"},
            "TAXI_DURATION_SERVE_PORT 65535 leaves no port for the 2 colors served",
        ),
    ],
)
def test_bad_serve_settings_are_named(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    with pytest.raises((InvalidInputError, StackError), match=message):
        StackConfig.from_env({"TAXI_DURATION_STACK_DIR": str(tmp_path), **settings})


def test_off_loopback_serve_asks_for_credentials_unless_told_not_to() -> None:
    from taxi_duration.serve import Credentials

    assert Credentials.of(Settings(), "127.0.0.1") is None
    assert Credentials.of(Settings(), "localhost") is None
    with pytest.raises(
        InvalidInputError, match=r"--host 0\.0\.0\.0 is off loopback .*, so the service asks"
    ):
        Credentials.of(Settings(), "0.0.0.0")
    named = Settings(MLFLOW_TRACKING_USERNAME="team", MLFLOW_TRACKING_PASSWORD="s3cret")
    assert Credentials.of(named, "10.1.2.3") is not None
    assert Credentials.of(Settings(serve_auth=False), "0.0.0.0") is None  # said in so many words


def test_the_prediction_service_asks_for_the_mlflow_users_credentials() -> None:
    from taxi_duration.serve import Credentials

    assert Credentials.of(Settings(serve_auth=False)) is None
    with pytest.raises(InvalidInputError, match="TAXI_DURATION_SERVE_AUTH is on, so the service"):
        Credentials.of(Settings(serve_auth=True, MLFLOW_TRACKING_USERNAME="team"))
    credentials = Credentials.of(
        Settings(
            serve_auth=True, MLFLOW_TRACKING_USERNAME="team", MLFLOW_TRACKING_PASSWORD="s3cret"
        )
    )
    assert credentials is not None
    assert "s3cret" not in repr(credentials)
    assert credentials.admit("Basic dGVhbTpzM2NyZXQ=")  # team:s3cret
    for refused in (None, "", "Basic dGVhbTp3cm9uZw==", "Bearer dGVhbTpzM2NyZXQ=", "Basic !!"):
        assert not credentials.admit(refused)


def test_serve_asking_for_credentials_without_them_is_one_line_and_exit_2(
    tmp_path: Path,
) -> None:
    home, workspace = tmp_path / "home", tmp_path / "workspace"
    home.mkdir()
    workspace.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "taxi_duration.cli", "serve", "--port", "1"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "TAXI_DURATION_SERVE_AUTH": "on"},
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "TAXI_DURATION_SERVE_AUTH is on, so the service asks for credentials: set" in (
        result.stderr
    )
    assert list(workspace.iterdir()) == []  # nothing written, no MLflow store made


@pytest.mark.parametrize(("frequency", "silent_for"), [("", 90), ("30", 90), ("120", 360)])
def test_a_run_is_marked_crashed_after_three_missed_heartbeats_of_the_stacks_frequency(
    tmp_path: Path, frequency: str, silent_for: int
) -> None:
    env = {"TAXI_DURATION_STACK_DIR": str(tmp_path), "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": frequency}
    config = StackConfig.from_env(env)
    sent_every = services.run_environment(config, env)["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]
    automation = alerts.heartbeat_automation(config.heartbeat_seconds)
    assert int(sent_every) * 3 == silent_for
    assert automation.trigger.within == timedelta(seconds=silent_for)  # type: ignore[union-attr]
    assert f"no heartbeat for {silent_for} s" in automation.actions[0].message  # type: ignore[union-attr]


@pytest.mark.parametrize("frequency", ["10", "thirty", "-30", "30.5"])
def test_a_heartbeat_frequency_prefect_refuses_is_named(tmp_path: Path, frequency: str) -> None:
    with pytest.raises(
        InvalidInputError,
        match=f"PREFECT_FLOWS_HEARTBEAT_FREQUENCY '{frequency}' is not allowed: "
        "a whole number of seconds, at least 30",
    ):
        StackConfig.from_env(
            {
                "TAXI_DURATION_STACK_DIR": str(tmp_path),
                "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": frequency,
            }
        )


_SLOW_TO_STOP = """
import pathlib, signal, sys, time
out = pathlib.Path(sys.argv[1])
def stop(*_):
    out.with_suffix('.term').write_text(repr(time.time()))
    time.sleep(1.0)  # a server finishing its requests
    out.with_suffix('.exit').write_text(repr(time.time()))
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
out.with_suffix('.ready').write_text('')
while True:
    time.sleep(0.1)
"""


def test_down_stops_the_worker_and_the_services_together_then_both_servers_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each service is sent SIGTERM before any other has finished stopping, within its
    group; the servers only once the worker and the prediction services are gone."""
    config = StackConfig.from_env({"TAXI_DURATION_STACK_DIR": str(tmp_path)})
    config.run.mkdir(parents=True)
    names = ["serve-green", "worker", "mlflow-server", "prefect-server"]
    for service in names:
        process = subprocess.Popen(
            [sys.executable, "-c", _SLOW_TO_STOP, str(tmp_path / service)],
            start_new_session=True,
        )
        config.pid_file(service).write_text(json.dumps({"pid": process.pid, "program": "python"}))
    for service in names:
        while not (tmp_path / f"{service}.ready").exists():
            time.sleep(0.05)

    monkeypatch.setattr(commands, "end_in_flight_runs", lambda config: [])  # no server here
    commands.down(config)

    def at(service: str, event: str) -> float:
        return float((tmp_path / f"{service}.{event}").read_text())

    for first, second in (("serve-green", "worker"), ("mlflow-server", "prefect-server")):
        assert at(second, "term") < at(first, "exit")
        assert at(first, "term") < at(second, "exit")
    assert min(at(s, "term") for s in names[2:]) >= max(at(s, "exit") for s in names[:2])
    assert list(config.run.glob("*.json")) == []
