"""Shared fixtures: generated TLC months, a loopback HTTP data server, isolated settings,
a Dask cluster."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dask_cluster import running_dask_cluster
from data_server import SERVED_REQUESTS, QuietHandler
from tlc_samples import write_bad_months, write_month

from taxi_duration.environment import RUN_ENVIRONMENT_DEFAULTS
from taxi_duration.months import Month

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA_DIR = Path(
    os.environ.get("TAXI_DURATION_REAL_DATA_DIR", REPO_ROOT.parent / "shared" / "data" / "tlc")
)
# The kept rows the tests' runs require (see pytest_configure): a generated month halved
# (tests/integration/test_train_flow.py) still keeps about 950.
GENERATED_MIN_KEPT_ROWS = 100
# Settings a test must not inherit from the developer's shell.
_ISOLATED_VARIABLES = (
    "MLFLOW_TRACKING_URI",
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "TAXI_DURATION_DATA_URL",
    "TAXI_DURATION_DATA_DIR",
    "TAXI_DURATION_OUTPUT_DIR",
    "TAXI_DURATION_MLFLOW_DIR",
    "TAXI_DURATION_MODEL_NAME",
)


# Tests that use these session fixtures run on one pytest-xdist worker, so the fixture's
# servers start once: the stack most tests share, and (a stack each, as they wait minutes for
# a run to be marked Crashed) the modules whose workers are killed.
_SHARED_SERVERS = {"team_stack": "team-stack"}
_OWN_STACK_MODULES = {
    "test_final_states.py": "team-stack-stopped",
    "test_worker_sigterm.py": "team-stack-sigterm",
}
# xdist hands out groups in this order: the longest (the stacks' groups and the real months'
# trainings, several minutes each), then servers and trainings, the unit tests last, to fill
# the workers' gaps.
_LONGEST_GROUPS = (
    "team-stack-stopped",
    "team-stack-sigterm",
    "team-stack",
    "realdata/test_course_figures",
)
_FOLDER_ORDER = {"e2e": 0, "integration": 1, "realdata": 2, "model": 3, "faults": 4, "unit": 5}


def pytest_configure(config: pytest.Config) -> None:
    # Tests send traffic to loopback only: no telemetry from the Prefect servers they start.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Flows run in the tests' processes get what the CLI gives every run, before OpenMP
    # loads: XGBoost's threads spinning while they wait took the cores from the other
    # workers' tests.
    for name, value in RUN_ENVIRONMENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    # The generated months (tlc_samples.py) keep about 1,900 trips, the real ones 62,000 and
    # more: the runs of the tests (in process, the CLI's and the stacks' subprocesses, which
    # inherit it) ask for fewer kept rows than the default 10,000. Every other check keeps
    # its default, and the generated months pass them all.
    os.environ.setdefault("TAXI_DURATION_CHECK_MIN_KEPT_ROWS", str(GENERATED_MIN_KEPT_ROWS))
    # Each pytest process (each xdist worker) has its own Prefect home, not the user's: the
    # temporary servers the CLI starts keep their database there, and two on one sqlite
    # file lock each other out.
    home = Path(tempfile.mkdtemp(prefix="taxi-duration-prefect-home-"))
    os.environ["PREFECT_HOME"] = str(home)
    config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """In CI (``CI`` set, as `.ci/run` is run) a skipped test fails, with its reason: CI has
    PostgreSQL, ../shared and root, so a skip there is a test that did not run, not a pass.
    On a developer's machine tests still skip, with their reason."""
    report = yield
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if in_ci and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {reason}"
    # A failed or hung (pytest-timeout) test of a stack shows the end of its services' logs.
    stack = getattr(item, "funcargs", {}).get("team_stack")
    if report.failed and stack is not None:
        for log in sorted((stack.directory / "logs").glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-40:]
            report.sections.append((f"last lines of {log.name}", "\n".join(tail)))
    return report


# First: pytest-xdist reads the groups in its own hook, so they must be marked before it.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group the tests for pytest-xdist's ``--dist loadgroup``: those sharing a stack (see
    _SHARED_SERVERS), and a module's tests that share a module-scoped fixture (its servers
    or trainings, made once); any other test goes alone to whichever worker is free."""
    groups = {item: _group(item) for item in items}
    for item, group in groups.items():
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    items.sort(
        key=lambda item: (
            _LONGEST_GROUPS.index(group) if (group := groups[item]) in _LONGEST_GROUPS else 99,
            _FOLDER_ORDER.get(item.path.parent.name, len(_FOLDER_ORDER)),
        )
    )


def _group(item: pytest.Item) -> str | None:
    fixtures = getattr(item, "fixturenames", ())
    group = _OWN_STACK_MODULES.get(item.path.name) or next(
        (group for name, group in _SHARED_SERVERS.items() if name in fixtures), None
    )
    if group is None and _uses_a_module_fixture(item):
        group = f"{item.path.parent.name}/{item.path.stem}"
    return group


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """On an xdist worker, each grouped test's id must carry its group (``id@group``): it is
    all the scheduler reads. Where it does not (pytest 9.2 with pytest-xdist 3.8), groups are
    silently ignored and every worker starts its own stacks; fail instead."""
    if not getattr(session.config.option, "loadgroup", False):  # only set on xdist workers
        return
    lost = [
        item.nodeid
        for item in session.items
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid
    ]
    if lost:
        message = (
            f"pytest-xdist did not group {len(lost)} tests (first: {lost[0]}): "
            "install the versions in requirements/constraints.txt"
        )
        print(message, file=sys.__stderr__)  # the controller shows no more than an assertion
        raise pytest.UsageError(message)


def _uses_a_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        definition.scope == "module"
        for definitions in info.name2fixturedefs.values()
        for definition in definitions
    )


@pytest.fixture(scope="session")
def http_server() -> Iterator[functools.partial[str]]:
    """Serve folders over HTTP on 127.0.0.1: ``serve(folder) -> base URL``.

    The requests each server answered are in ``SERVED_REQUESTS[base URL]``.
    """
    servers: list[http.server.ThreadingHTTPServer] = []

    def serve(directory: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        SERVED_REQUESTS[url] = []
        return url

    yield functools.partial(serve)
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def synthetic_months(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of generated green and fhvhv months 2023-01..03 and yellow 2023-01..02."""
    directory = tmp_path_factory.mktemp("tlc")
    for month in (Month(2023, 1), Month(2023, 2), Month(2023, 3)):
        write_month(directory, "green", month)
        write_month(directory, "fhvhv", month)
    for month in (Month(2023, 1), Month(2023, 2)):
        write_month(directory, "yellow", month)
    return directory


@pytest.fixture(scope="session")
def bad_months(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated green months 2023-01..04, of which 2023-02 fails the data checks (90% zero
    distances) and 2023-04 lacks a column (``tlc_samples.write_bad_months``)."""
    return write_bad_months(tmp_path_factory.mktemp("bad-tlc"))


@pytest.fixture(scope="session")
def synthetic_data_url(http_server: functools.partial[str], synthetic_months: Path) -> str:
    return http_server(synthetic_months)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real TLC files beside the repository; tests using them skip where they are absent."""
    if not (REAL_DATA_DIR / "green_tripdata_2023-01.parquet").is_file():
        pytest.skip(f"real TLC data not found in {REAL_DATA_DIR} (a fresh clone has none)")
    return REAL_DATA_DIR


@pytest.fixture(scope="session")
def real_data_url(http_server: functools.partial[str], real_data_dir: Path) -> str:
    return http_server(real_data_dir)


@pytest.fixture(scope="session")
def mlflow_store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty embedded MLflow store, its schema migrated once per pytest process.

    Creating a sqlite store runs all of MLflow's migrations: 2 CPU seconds, paid by every
    test that tracked a run in a fresh folder (about 60 a session) before this copy.
    """
    from mlflow.tracking import MlflowClient

    database = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    uri = f"sqlite:///{database}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_experiments(max_results=1)
    client.search_registered_models(max_results=1)
    return database


@pytest.fixture
def workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Path:
    """A working folder with the project's settings pointing inside it: no data, and an empty
    MLflow store (none at all for a test marked ``fresh_store``, which sees the product
    create it, or asserts that nothing did)."""
    fresh = request.node.get_closest_marker("fresh_store") is not None
    template = None if fresh else request.getfixturevalue("mlflow_store_template")
    return enter_workspace(tmp_path, monkeypatch, template)


@pytest.fixture(scope="module")
def module_workspace(
    tmp_path_factory: pytest.TempPathFactory, mlflow_store_template: Path
) -> Iterator[Path]:
    """A ``workspace`` for all the tests of a module: those sharing its runs."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield enter_workspace(
            tmp_path_factory.mktemp("workspace"), monkeypatch, mlflow_store_template
        )


def enter_workspace(path: Path, monkeypatch: pytest.MonkeyPatch, template: Path | None) -> Path:
    """Work in ``path``, the project's settings pointing inside it, the MLflow store a copy of
    ``template`` (none: no store)."""
    for name in _ISOLATED_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(path)
    monkeypatch.setenv("TAXI_DURATION_DATA_DIR", str(path / "data"))
    monkeypatch.setenv("TAXI_DURATION_MLFLOW_DIR", str(path / "mlflow"))
    if template is not None:
        (path / "mlflow").mkdir()
        shutil.copyfile(template, path / "mlflow" / "mlflow.db")
    return path


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A real temporary Prefect server (subprocess on loopback) for in-process flow runs."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    storage = tmp_path_factory.mktemp("prefect-results")
    with (
        temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: storage}),
        prefect_test_harness(server_startup_timeout=120),
    ):
        yield


@pytest.fixture(scope="session")
def prefect_api_url(prefect_api: None) -> str:
    """The URL of the session's temporary Prefect server, for CLI subprocesses to share.

    Sharing it spares every subprocess the start of its own ephemeral server.
    """
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "prefect_test_harness sets PREFECT_API_URL"
    return str(url)


@pytest.fixture
def dask_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the cluster's logs: ``scheduler.log``, ``worker.log``."""
    return tmp_path_factory.mktemp("dask")


@pytest.fixture
def dask_cluster(dask_logs: Path) -> Iterator[str]:
    """A separately started ``dask scheduler`` and one ``dask worker`` (real processes)."""
    with running_dask_cluster(dask_logs) as address:
        yield address
