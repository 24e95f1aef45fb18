"""Both servers on PostgreSQL, as docs/deploying.md tells a team to run them.

A real PostgreSQL server (Debian's ``postgresql`` package; ``.ci/run`` installs it) is
started on a free loopback port in a temporary folder, as the ``postgres`` user when the
tests run as root. The Prefect server uses ``postgresql+asyncpg://`` (its own driver) and the
MLflow server ``postgresql://`` (psycopg 3, SQLAlchemy 2.1's default; the ``postgres`` extra).
Skipped, with the reason, where PostgreSQL or psycopg is not installed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ports import free_port
from team_stack import Stack, deploy, running_stack, spec

pytestmark = pytest.mark.slow

USER = "taxi"


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://{USER}@{self.host}:{self.port}/{database}"

    def query(self, database: str, sql: str) -> list[tuple[object, ...]]:
        import psycopg

        # autocommit: CREATE DATABASE runs outside a transaction
        with (
            psycopg.connect(
                host=self.host, port=self.port, user=USER, dbname=database, autocommit=True
            ) as db,
            db.cursor() as cursor,
        ):
            cursor.execute(sql.encode())
            return list(cursor.fetchall()) if cursor.description else []


def _server_binaries() -> Path | None:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    binaries = _server_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: pip install -e '.[postgres]'")
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        runuser = shutil.which("runuser")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no postgres user to run PostgreSQL as")
        if runuser is None:
            pytest.skip("running as root, and there is no runuser to run PostgreSQL as postgres")
        as_user = [runuser, "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="taxi-duration-postgres-"))
    if owner is not None:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data, log, port = folder / "data", folder / "server.log", free_port()

    def as_owner(*command: str | Path) -> None:
        result = subprocess.run(
            [*as_user, *map(str, command)], capture_output=True, text=True, timeout=180
        )
        assert result.returncode == 0, result.stdout + result.stderr

    try:
        as_owner(binaries / "initdb", "-D", data, "-U", USER, "--auth=trust", "-E", "UTF8")
        as_owner(
            *(binaries / "pg_ctl", "-D", data, "-l", log, "-w", "-t", "120"),
            *("-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"),
        )
        server = Postgres("127.0.0.1", port)
        for database in ("prefect", "mlflow"):
            server.query("postgres", f"CREATE DATABASE {database}")
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            as_owner(binaries / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres_stack(
    tmp_path_factory: pytest.TempPathFactory, synthetic_data_url: str, postgres: Postgres
) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("postgres"),
        synthetic_data_url,
        PREFECT_API_DATABASE_CONNECTION_URL=postgres.url("prefect", "postgresql+asyncpg"),
        TAXI_DURATION_MLFLOW_BACKEND_STORE_URI=postgres.url("mlflow"),
    ) as stack:
        yield stack


def test_train_monthly_completes_with_both_servers_on_postgres(
    postgres_stack: Stack, postgres: Postgres
) -> None:
    deploy(postgres_stack)
    flow_run_id = postgres_stack.trigger("train/monthly", *spec(year=2023, month=1, model="linear"))
    postgres_stack.wait_completed(flow_run_id)

    # The run and the model are in PostgreSQL, not in a sqlite file of the stack.
    [(state,)] = postgres.query(
        "prefect", f"SELECT state_type FROM flow_run WHERE id = '{flow_run_id}'"
    )
    assert state == "COMPLETED"
    versions = postgres.query("mlflow", "SELECT name, version FROM model_versions")
    assert versions == [("nyc-taxi-duration-green", 1)]
    assert not list(postgres_stack.directory.rglob("*.db"))
