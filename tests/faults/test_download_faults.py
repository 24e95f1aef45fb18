"""A data server that fails: retried with bounded backoff, nothing partial ever cached.

The retries are Prefect's (the ingest task inside a real flow run, on the session's
temporary Prefect server); the server is the tests' own ``FaultServer`` on loopback.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fault_support import FaultServer
from prefect import flow

from taxi_duration.errors import DataError, DownloadError, MonthNotPublishedError
from taxi_duration.flows.tasks import ingest_month
from taxi_duration.ingest import download_month, tlc_file_name
from taxi_duration.months import Month
from taxi_duration.settings import Settings

JAN = Month(2023, 1)
NAME = tlc_file_name("green", JAN)
BACKOFF = 1.0  # seconds: retries wait 1, 2, 4, each +-50% (Prefect's jitter)


@flow(name="fetch-month")
def fetch_month(month: str) -> Path:
    """The train flow's ingest step alone: the ingest task with the settings' retries."""
    return ingest_month(Settings(), "green", Month.parse(month))


@pytest.fixture
def served(
    workspace: Path, fault_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> FaultServer:
    monkeypatch.setenv("TAXI_DURATION_DATA_URL", fault_server.url)
    monkeypatch.setenv("TAXI_DURATION_DOWNLOAD_BACKOFF_SECONDS", str(BACKOFF))
    return fault_server


def _cache(workspace: Path) -> Path:
    return workspace / "data"


def _stray_files(workspace: Path) -> list[str]:
    return sorted(p.name for p in _cache(workspace).glob("*") if p.name != NAME)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["status", "drop", "short"])
def test_transient_failures_are_retried_then_cached_byte_identical(
    served: FaultServer, workspace: Path, prefect_api: None, kind: str
) -> None:
    served.fail(NAME, kind, times=2)
    path = fetch_month(str(JAN))
    assert served.requests["/" + NAME] == 3  # two failures, then success
    assert path.read_bytes() == (served.directory / NAME).read_bytes()
    assert _stray_files(workspace) == []  # no .part left behind
    # Timed at the server: each retry waited its backoff, the second twice the first's.
    first, second, third = served.arrivals["/" + NAME]
    assert second - first >= BACKOFF * 0.5, (first, second)
    assert third - second >= 2 * BACKOFF * 0.5, (second, third)


@pytest.mark.slow
def test_retries_are_bounded_then_a_clear_error(
    served: FaultServer, workspace: Path, prefect_api: None
) -> None:
    served.fail(NAME, "status", times=-1, status=502)
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"HTTP 502"):
        fetch_month(str(JAN))
    assert time.monotonic() - start < 60
    assert served.requests["/" + NAME] == Settings().download_retries + 1
    assert not _cache(workspace).exists() or list(_cache(workspace).iterdir()) == []


@pytest.mark.slow
def test_not_published_fails_at_once_without_retries(
    served: FaultServer, workspace: Path, prefect_api: None
) -> None:
    start = time.monotonic()
    with pytest.raises(MonthNotPublishedError) as raised:
        fetch_month("2023-05")
    assert time.monotonic() - start < 15
    assert served.requests["/green_tripdata_2023-05.parquet"] == 1
    message = str(raised.value)
    assert "\n" not in message
    assert "2023-05 is not published" in message


@pytest.mark.slow
def test_corrupt_cached_file_is_fetched_again_by_the_flow(
    served: FaultServer, workspace: Path, prefect_api: None
) -> None:
    good = (served.directory / NAME).read_bytes()
    _cache(workspace).mkdir()
    (_cache(workspace) / NAME).write_bytes(good[: len(good) // 3])  # a truncated download
    path = fetch_month(str(JAN))
    assert path.read_bytes() == good
    assert served.requests["/" + NAME] == 1


# --- the download step alone: fast, no Prefect ------------------------------------------


def test_a_response_cut_short_is_never_cached(fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.fail(NAME, "short")
    with pytest.raises(DownloadError, match=r"cut short|failed"):
        download_month("green", JAN, base_url=fault_server.url, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a .part


def test_a_dropped_connection_is_a_download_error(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    fault_server.fail(NAME, "drop")
    with pytest.raises(DownloadError, match="failed"):
        download_month("green", JAN, base_url=fault_server.url, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda good: good[: len(good) // 2], id="truncated"),
        pytest.param(lambda good: b"<html>not parquet</html>", id="not-parquet"),
        pytest.param(lambda good: b"", id="empty"),
        pytest.param(lambda good: good[:-8] + b"\0" * 8, id="bad-footer"),
    ],
)
def test_corrupt_cache_is_detected_and_fetched_again(
    fault_server: FaultServer, tmp_path: Path, corrupt: object
) -> None:
    good = (fault_server.directory / NAME).read_bytes()
    (tmp_path / NAME).write_bytes(corrupt(good))  # type: ignore[operator]
    path = download_month("green", JAN, base_url=fault_server.url, cache_dir=tmp_path)
    assert path.read_bytes() == good
    assert fault_server.requests["/" + NAME] == 1


def test_a_server_sending_garbage_leaves_no_cache(
    fault_server: FaultServer, tmp_path: Path
) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / NAME).write_bytes(b"PAR1 but not really")
    fault_server.directory = tmp_path / "srv"
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="not a readable parquet file"):
        download_month("green", JAN, base_url=fault_server.url, cache_dir=cache)
    assert list(cache.iterdir()) == []
