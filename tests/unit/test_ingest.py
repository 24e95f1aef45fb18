"""Ingest: TLC names and URLs, month checks, and the cached download over loopback HTTP."""

from __future__ import annotations

import http.server
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tlc_samples import write_month

from taxi_duration.errors import (
    DataError,
    DownloadError,
    InvalidInputError,
    MonthNotPublishedError,
)
from taxi_duration.ingest import (
    COLORS,
    FIRST_PUBLISHED_MONTH,
    check_color_and_month,
    check_local_file,
    check_parquet,
    download_month,
    tlc_file_name,
    tlc_url,
)
from taxi_duration.months import Month

JAN = Month(2023, 1)


def _closed_port_url() -> str:
    """A loopback URL nothing listens on: any request to it fails at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- names and checks ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("color", "month", "name"),
    [
        ("green", Month(2023, 1), "green_tripdata_2023-01.parquet"),
        ("yellow", Month(2022, 12), "yellow_tripdata_2022-12.parquet"),
    ],
)
def test_tlc_file_name(color: str, month: Month, name: str) -> None:
    assert tlc_file_name(color, month) == name


@pytest.mark.parametrize(
    "base", ["https://example.org/trip-data", "https://example.org/trip-data/"]
)
def test_tlc_url(base: str) -> None:
    assert (
        tlc_url(base, "green", Month(2023, 3))
        == "https://example.org/trip-data/green_tripdata_2023-03.parquet"
    )


def test_first_published_months() -> None:
    assert {
        "yellow": Month(2009, 1),
        "green": Month(2013, 8),
        "fhvhv": Month(2019, 2),
    } == FIRST_PUBLISHED_MONTH
    assert set(COLORS) == {"green", "yellow", "fhvhv"}


@pytest.mark.parametrize(
    ("color", "month"),
    [
        ("green", Month(2013, 8)),
        ("green", Month(2023, 1)),
        ("yellow", Month(2009, 1)),
        ("fhvhv", Month(2019, 2)),
    ],
)
def test_check_color_and_month_accepts(color: str, month: Month) -> None:
    check_color_and_month(color, month)


@pytest.mark.parametrize("color", ["blue", "Green", "", "fhv"])
def test_check_color_rejects_unknown_color(color: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_color_and_month(color, JAN)
    message = str(caught.value)
    assert repr(color) in message
    assert "green" in message
    assert "yellow" in message


@pytest.mark.parametrize(
    ("color", "month", "first"),
    [
        ("green", Month(2013, 7), "2013-08"),
        ("green", Month(2012, 5), "2013-08"),
        ("yellow", Month(2008, 12), "2009-01"),
        ("fhvhv", Month(2019, 1), "2019-02"),
    ],
)
def test_check_month_before_first_published(color: str, month: Month, first: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_color_and_month(color, month)
    message = str(caught.value)
    assert str(month) in message
    assert first in message
    assert color in message


def test_check_local_file_missing_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "green_tripdata_2023-01.parquet"
    with pytest.raises(InvalidInputError) as caught:
        check_local_file(missing, "train")
    assert str(missing) in str(caught.value)
    assert "train" in str(caught.value)


def test_check_local_file_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        check_local_file(tmp_path, "validation")


def test_check_local_file_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "trips.parquet"
    path.write_text("VendorID,trip_distance\n1,2.5\n")
    with pytest.raises(InvalidInputError) as caught:  # a user's own file: bad input
        check_local_file(path, "train")
    assert str(path) in str(caught.value)


def test_check_local_file_accepts_parquet(tmp_path: Path) -> None:
    path = write_month(tmp_path, "green", JAN, rows=50)
    assert check_local_file(path, "train") == path


def test_check_parquet_truncated_file(tmp_path: Path) -> None:
    good = write_month(tmp_path, "green", JAN, rows=50)
    bad = tmp_path / "truncated.parquet"
    bad.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(DataError, match="not a readable parquet file"):
        check_parquet(bad)


# --- download over a real loopback server ----------------------------------------------


def _leftovers(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.iterdir()) if cache_dir.exists() else []


@pytest.fixture
def served(tmp_path: Path, http_server: Callable[[Path], str]) -> tuple[Path, str]:
    """An empty folder served over HTTP: (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()
    return folder, http_server(folder)


def test_download_is_byte_identical(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = served
    source = write_month(folder, "green", JAN, rows=300)
    cache = tmp_path / "cache" / "nested"  # created on demand
    path = download_month("green", JAN, base_url=url, cache_dir=cache, progress=False)
    assert path == cache / "green_tripdata_2023-01.parquet"
    assert path.read_bytes() == source.read_bytes()
    assert _leftovers(cache) == [path.name]  # no temporary files left
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_download_yellow_with_progress_bar(
    served: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, url = served
    source = write_month(folder, "yellow", Month(2023, 2), rows=100)
    path = download_month(
        "yellow", Month(2023, 2), base_url=url + "/", cache_dir=tmp_path / "c", progress=True
    )
    assert path.read_bytes() == source.read_bytes()
    assert "yellow_tripdata_2023-02.parquet" in capsys.readouterr().err


def test_second_call_uses_the_cache(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = served
    source = write_month(folder, "green", JAN, rows=300)
    content = source.read_bytes()
    cache = tmp_path / "cache"
    first = download_month("green", JAN, base_url=url, cache_dir=cache, progress=False)
    source.unlink()  # the server no longer has it: only the cache can answer
    second = download_month("green", JAN, base_url=url, cache_dir=cache, progress=False)
    assert second == first
    assert second.read_bytes() == content


def test_cache_is_used_without_any_server(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cached = write_month(cache, "green", JAN, rows=50)
    path = download_month("green", JAN, base_url=_closed_port_url(), cache_dir=cache)
    assert path == cached


def test_corrupt_cache_is_refetched(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = served
    source = write_month(folder, "green", JAN, rows=300)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / source.name).write_bytes(b"PAR1 this is not a parquet file at all")
    path = download_month("green", JAN, base_url=url, cache_dir=cache, progress=False)
    assert path.read_bytes() == source.read_bytes()
    assert _leftovers(cache) == [source.name]


def test_missing_month_is_not_published(served: tuple[Path, str], tmp_path: Path) -> None:
    _, url = served
    cache = tmp_path / "cache"
    with pytest.raises(MonthNotPublishedError) as caught:
        download_month("green", Month(2023, 4), base_url=url, cache_dir=cache, progress=False)
    message = str(caught.value)
    assert "green" in message
    assert "2023-04" in message
    assert "HTTP 404" in message
    assert "\n" not in message
    assert _leftovers(cache) == []
    assert caught.value.exit_code == 1


def test_not_parquet_from_server_is_a_data_error(served: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = served
    (folder / tlc_file_name("green", JAN)).write_bytes(b"<html>Access denied</html>")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="not a readable parquet file"):
        download_month("green", JAN, base_url=url, cache_dir=cache, progress=False)
    assert _leftovers(cache) == []


@pytest.mark.parametrize(
    ("color", "month"), [("purple", JAN), ("green", Month(2013, 7)), ("yellow", Month(2008, 1))]
)
def test_download_checks_before_any_request(color: str, month: Month, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(InvalidInputError):
        download_month(color, month, base_url=_closed_port_url(), cache_dir=cache)
    assert not cache.exists()


class _FailingHandler(http.server.BaseHTTPRequestHandler):
    """500 for /error/..., a body cut short for /short/...."""

    def do_GET(self) -> None:
        if self.path.startswith("/error/"):
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"PAR1" + b"\0" * 1000)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def failing_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FailingHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("route", "detail"), [("error", "HTTP 503"), ("short", "/short/green_tripdata_2023-01.parquet")]
)
def test_server_failures_are_download_errors(
    failing_server: str, tmp_path: Path, route: str, detail: str
) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=detail) as caught:
        download_month(
            "green", JAN, base_url=f"{failing_server}/{route}", cache_dir=cache, progress=False
        )
    assert caught.value.exit_code == 1
    assert _leftovers(cache) == []


def test_connection_refused_is_a_download_error(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError):
        download_month(
            "green", JAN, base_url=_closed_port_url(), cache_dir=cache, timeout_seconds=5
        )
    assert _leftovers(cache) == []
