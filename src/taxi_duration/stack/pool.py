"""What the stack asks of its Prefect server: the API call (with the stack's credentials,
asked again while the server is busy), the work pool and its base job template, the pool's
in-flight runs (ended by ``down``), and the alerts (``alerts.py``) applied and in force."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from taxi_duration.errors import StackError
from taxi_duration.stack.config import StackConfig
from taxi_duration.stack.services import _executable

if TYPE_CHECKING:
    from taxi_duration.alerts import Alerts

# Answers of a busy Prefect server worth asking again after a pause (as its own client does).
API_RETRY_STATUSES = frozenset({429, 502, 503})
API_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)


def prefect_api(
    config: StackConfig, method: str, path: str, body: Any = None, timeout: float = 10.0
) -> httpx.Response:
    """A request to the stack's Prefect API, with its credentials when it has some.

    A busy server answers 503 (its SQLite database locked by another writer) or 429; like
    Prefect's own client, wait and ask again (``Retry-After`` when it gives one) before
    handing that answer back.
    """
    for delay in (*API_RETRY_DELAYS, None):
        response = httpx.request(
            method,
            f"{config.prefect_api_url}{path}",
            json=body,
            headers=config.prefect_headers,
            timeout=timeout,
        )
        if response.status_code not in API_RETRY_STATUSES or delay is None:
            return response
        time.sleep(_retry_after(response) or delay)
    raise AssertionError("unreachable")


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return min(float(response.headers["Retry-After"]), max(API_RETRY_DELAYS))
    except (KeyError, ValueError):
        return None


def _ensure_pool(config: StackConfig, env: Mapping[str, str]) -> bool:
    """Create the work pool (type process) unless it exists; True if it was created."""
    response = prefect_api(config, "GET", f"/work_pools/{config.pool}")
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
    """Write the flow runs' environment into the pool's base job template (its ``env``), and
    their output to Prefect's logs only."""
    path = f"/work_pools/{config.pool}"
    template = prefect_api(config, "GET", path).json()["base_job_template"]
    variables = template.get("variables", {}).get("properties", {})
    if "env" not in variables or "stream_output" not in variables:
        raise StackError(f"work pool {config.pool!r} has no env or stream_output in its template")
    variables["env"]["default"] = dict(run_env)
    # A run's output goes to its logs in Prefect only, not through a pipe to the worker: a
    # run whose worker is killed goes on to its end instead of failing on a broken pipe.
    variables["stream_output"]["default"] = False
    response = prefect_api(config, "PATCH", path, {"base_job_template": template})
    if response.status_code >= 300:
        raise StackError(f"could not update work pool {config.pool!r}: HTTP {response.status_code}")


def pool_environment(config: StackConfig) -> dict[str, str] | None:
    """The environment the pool gives every flow run, as the server has it."""
    try:
        response = prefect_api(config, "GET", f"/work_pools/{config.pool}")
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

    return alerts.apply(
        wanted, config.prefect_api_url, config.pool, config.mlflow_url, config.heartbeat_seconds
    )


# The names of the project's automations start with this (alerts.py's _PREFIX, which makes
# them; not imported from there: it loads Prefect).
AUTOMATION_PREFIX = "taxi-duration: "


def alerts_in_force(config: StackConfig) -> list[str] | None:
    """The project's automations on the server, described; None if it cannot be asked."""
    automations = _our_automations(config)
    if automations is None:
        return None
    lines = []
    for automation in automations:
        state = "on" if automation.get("enabled") else "off"
        actions = ", ".join(_action(config, action) for action in automation["actions"])
        lines.append(f"{automation['name']} ({state}) -> {actions or 'nothing'}")
    return lines


def _our_automations(config: StackConfig) -> list[dict[str, Any]] | None:
    """Every automation of the project on the server; None if it cannot be asked. Page by
    page: the server answers at most its default limit (200) a call, so one of ours sorted
    after 200 others would be missed."""
    ours: list[dict[str, Any]] = []
    offset = 0
    while True:
        body = {"sort": "NAME_ASC", "offset": offset}
        try:
            response = prefect_api(config, "POST", "/automations/filter", body)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        page = list(response.json())
        if not page:
            return ours
        ours += [a for a in page if str(a["name"]).startswith(AUTOMATION_PREFIX)]
        offset += len(page)


def _action(config: StackConfig, action: Mapping[str, Any]) -> str:
    """What an automation's action does, as `up` tells it: a notification names its block
    (``missing`` if that block is gone), a change of state names the state."""
    kind = action.get("type")
    if kind == "send-notification":
        block = prefect_api(config, "GET", f"/block_documents/{action.get('block_document_id')}")
        return str(block.json().get("name", "?")) if block.status_code == 200 else "missing"
    if kind == "change-flow-run-state":
        return f"mark it {action.get('name') or str(action.get('state')).title()}"
    return str(kind)


IN_FLIGHT = ("PENDING", "RUNNING", "CANCELLING")
CANCEL_GRACE_SECONDS = 30.0


def _in_flight(config: StackConfig) -> list[dict[str, Any]]:
    """The pool's flow runs that have started and not ended."""
    try:
        response = prefect_api(
            config,
            "POST",
            "/flow_runs/filter",
            {
                "flow_runs": {"state": {"type": {"any_": list(IN_FLIGHT)}}},
                "work_pools": {"name": {"any_": [config.pool]}},
            },
        )
    except httpx.HTTPError:
        return []
    return list(response.json()) if response.status_code == 200 else []


def _set_state(config: StackConfig, flow_run_id: str, state: str, message: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        prefect_api(
            config,
            "POST",
            f"/flow_runs/{flow_run_id}/set_state",
            {"state": {"type": state, "message": message}, "force": True},
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
