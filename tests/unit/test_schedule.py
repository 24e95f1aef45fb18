"""The months a scheduled run picks, and the probe that asks the data server."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from taxi_duration.errors import (
    DownloadError,
    InvalidInputError,
    MonthNotPublishedError,
    TaxiDurationError,
)
from taxi_duration.months import Month
from taxi_duration.schedule import (
    choose_months,
    months_for_run,
    published_on_server,
    scheduled_months,
)


def everything(month: Month) -> bool:
    return True


def published_until(last: Month) -> Callable[[Month], bool]:
    """A server that has published every month up to ``last``."""
    return lambda month: month <= last


@pytest.mark.parametrize(
    ("run_date", "train", "val"),
    [
        pytest.param(date(2024, 3, 3), Month(2024, 1), Month(2024, 2), id="march"),
        pytest.param(date(2024, 1, 3), Month(2023, 11), Month(2023, 12), id="january"),
        pytest.param(date(2024, 2, 3), Month(2023, 12), Month(2024, 1), id="february"),
        pytest.param(date(2023, 12, 31), Month(2023, 10), Month(2023, 11), id="december-31"),
        pytest.param(
            datetime(2024, 3, 3, 9, 0, tzinfo=UTC), Month(2024, 1), Month(2024, 2), id="cron-time"
        ),
    ],
)
def test_a_run_trains_two_months_back_and_validates_on_the_month_before(
    run_date: date, train: Month, val: Month
) -> None:
    assert scheduled_months(run_date, everything) == (train, val)


def test_an_aware_run_time_is_taken_in_utc() -> None:
    # 1 March 01:00 at UTC+5 is still 29 February in UTC.
    run_time = datetime(2024, 3, 1, 1, 0, tzinfo=timezone(timedelta(hours=5)))
    assert scheduled_months(run_time, everything) == (Month(2023, 12), Month(2024, 1))


def test_a_month_not_yet_published_falls_back_one_month() -> None:
    chosen = choose_months(date(2024, 3, 3), published_until(Month(2024, 1)))
    assert (chosen.train, chosen.val) == (Month(2023, 12), Month(2024, 1))
    assert chosen.skipped == (Month(2024, 2),)


def test_a_january_run_falls_back_across_the_year() -> None:
    chosen = choose_months(date(2024, 1, 3), published_until(Month(2023, 10)))
    assert (chosen.train, chosen.val) == (Month(2023, 9), Month(2023, 10))
    assert chosen.skipped == (Month(2023, 12), Month(2023, 11))


def test_each_month_is_asked_about_once() -> None:
    asked: list[Month] = []

    def published(month: Month) -> bool:
        asked.append(month)
        return month != Month(2024, 1)

    assert scheduled_months(date(2024, 3, 3), published) == (Month(2023, 11), Month(2023, 12))
    # 2024-01 failed as the training month of the first pair; it is not asked again.
    assert asked == [Month(2024, 2), Month(2024, 1), Month(2023, 12), Month(2023, 11)]


def test_nothing_published_in_the_window_is_a_clear_error() -> None:
    with pytest.raises(MonthNotPublishedError) as error:
        scheduled_months(date(2024, 3, 3), published_until(Month(2023, 1)), max_fallback=2)
    message = str(error.value)
    assert "2024-03-03" in message
    assert "2024-02 back to 2023-12" in message
    assert "max_fallback 2" in message
    assert isinstance(error.value, TaxiDurationError)


def test_no_fallback_allowed_means_the_newest_pair_or_an_error() -> None:
    assert scheduled_months(date(2024, 3, 3), everything, max_fallback=0) == (
        Month(2024, 1),
        Month(2024, 2),
    )
    with pytest.raises(MonthNotPublishedError):
        scheduled_months(date(2024, 3, 3), published_until(Month(2024, 1)), max_fallback=0)


def test_a_negative_fallback_is_refused() -> None:
    with pytest.raises(ValueError, match="max_fallback"):
        scheduled_months(date(2024, 3, 3), everything, max_fallback=-1)


# --- the HTTP probe ------------------------------------------------------------------------


@pytest.fixture
def one_month(tmp_path: Path, http_server: functools.partial[str]) -> str:
    """A data server holding green 2024-01 only."""
    (tmp_path / "green_tripdata_2024-01.parquet").write_bytes(b"PAR1 not really PAR1")
    return http_server(tmp_path)


def test_the_probe_asks_the_server(one_month: str) -> None:
    probe = published_on_server(one_month, "green", timeout=10)
    assert probe(Month(2024, 1)) is True
    assert probe(Month(2024, 2)) is False  # 404


def test_months_for_run_falls_back_to_what_the_server_has(one_month: str) -> None:
    with pytest.raises(MonthNotPublishedError, match=one_month):
        months_for_run(datetime(2024, 3, 3, 9, tzinfo=UTC), "green", one_month)


def test_months_for_run_on_generated_months(synthetic_data_url: str) -> None:
    # Green 2023-01..03 are published: a run on 3 May falls back past April.
    chosen = months_for_run(datetime(2023, 5, 3, 9, tzinfo=UTC), "green", synthetic_data_url)
    assert (chosen.train, chosen.val, chosen.skipped) == (
        Month(2023, 2),
        Month(2023, 3),
        (Month(2023, 4),),
    )


def test_months_for_run_checks_the_color() -> None:
    with pytest.raises(InvalidInputError, match="'blue'"):
        months_for_run(None, "blue", "http://127.0.0.1:9")


class _Handler(http.server.BaseHTTPRequestHandler):
    """HEAD is not allowed; GET serves ``/green_tripdata_2024-01.parquet``; else a status."""

    status_for_others = 404

    def do_HEAD(self) -> None:
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        if self.path.endswith("green_tripdata_2024-01.parquet"):
            assert self.headers["Range"] == "bytes=0-0"
            self.send_response(206)
            self.send_header("Content-Length", "1")
            self.end_headers()
            self.wfile.write(b"P")
            return
        self.send_response(self.status_for_others)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def head_refused() -> Iterator[Callable[[int], str]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def serve(status_for_others: int) -> str:
        handler = type("Handler", (_Handler,), {"status_for_others": status_for_others})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_where_head_is_refused_the_probe_asks_for_one_byte(
    head_refused: Callable[[int], str],
) -> None:
    probe = published_on_server(head_refused(404), "green", timeout=10)
    assert probe(Month(2024, 1)) is True
    assert probe(Month(2024, 2)) is False


def test_a_server_error_is_not_taken_for_an_unpublished_month(
    head_refused: Callable[[int], str],
) -> None:
    probe = published_on_server(head_refused(503), "green", timeout=10)
    with pytest.raises(DownloadError, match="HTTP 503"):
        probe(Month(2024, 2))


def test_an_unreachable_server_is_a_clear_error() -> None:
    with socket.socket() as holder:  # a free port with nothing listening once closed
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
    probe = published_on_server(f"http://127.0.0.1:{port}", "green", timeout=5)
    with pytest.raises(DownloadError, match="could not ask"):
        probe(Month(2024, 1))
