"""Which months a scheduled run trains and validates on.

A run on day D of month M trains on M-2 and validates on M-1: the newest pair the TLC has
normally published by then. The TLC publishes with a delay that varies, so the months are
not guessed from the calendar alone: the data server is asked whether each month exists, and
while the newest pair is not published the choice falls back one month at a time.

Pure logic plus one HTTP probe; no Prefect or MLflow import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import httpx

from taxi_duration.errors import DownloadError, InvalidInputError, MonthNotPublishedError
from taxi_duration.ingest import COLORS, tlc_url
from taxi_duration.months import Month

# How many months the choice may fall back after the newest pair (the TLC is rarely
# more than a few months late).
MAX_FALLBACK = 6
PROBE_TIMEOUT_SECONDS = 30.0

IsPublished = Callable[[Month], bool]


@dataclass(frozen=True)
class ScheduledMonths:
    """The months a scheduled run uses, and the newer validation months it had to skip."""

    train: Month
    val: Month
    skipped: tuple[Month, ...] = ()


def run_month(run_date: date | datetime) -> Month:
    """The calendar month of a run; an aware datetime is taken in UTC first."""
    if isinstance(run_date, datetime) and run_date.tzinfo is not None:
        run_date = run_date.astimezone(UTC)
    return Month(run_date.year, run_date.month)


def choose_months(
    run_date: date | datetime, is_published: IsPublished, max_fallback: int = MAX_FALLBACK
) -> ScheduledMonths:
    """Train on the month two before ``run_date`` and validate on the one before,
    or on the newest earlier pair that ``is_published``, at most ``max_fallback`` months back.

    Each month is asked about at most once. Raise MonthNotPublishedError if no pair in the
    window is published.
    """
    if max_fallback < 0:
        raise ValueError(f"max_fallback {max_fallback} is out of range: 0 or more")
    answers: dict[Month, bool] = {}

    def published(month: Month) -> bool:
        if month not in answers:
            answers[month] = is_published(month)
        return answers[month]

    val = run_month(run_date).previous()
    newest = val
    skipped: list[Month] = []
    for _ in range(max_fallback + 1):
        train = val.previous()
        if published(val) and published(train):
            return ScheduledMonths(train=train, val=val, skipped=tuple(skipped))
        skipped.append(val)
        val = train
    missing = ", ".join(str(month) for month, ok in sorted(answers.items()) if not ok)
    raise MonthNotPublishedError(
        f"no published pair of months to train on for a run on {_day(run_date)}: "
        f"tried validation months {newest} back to {skipped[-1]} "
        f"(max_fallback {max_fallback}); not published: {missing}"
    )


def scheduled_months(
    run_date: date | datetime, is_published: IsPublished, max_fallback: int = MAX_FALLBACK
) -> tuple[Month, Month]:
    """``(train, val)`` for a run on ``run_date``; see ``choose_months``."""
    chosen = choose_months(run_date, is_published, max_fallback)
    return chosen.train, chosen.val


def published_on_server(
    base_url: str, color: str, timeout: float = PROBE_TIMEOUT_SECONDS
) -> IsPublished:
    """A probe: is ``color``'s month published at ``base_url``?

    Asks with HTTP HEAD (a ranged GET of one byte where HEAD is not allowed). 2xx means
    published, 404 means not published; anything else raises DownloadError, as a server
    that cannot answer says nothing about what is published.
    """

    def is_published(month: Month) -> bool:
        url = tlc_url(base_url, color, month)
        try:
            with httpx.Client(timeout=timeout, follow_redirects=True) as client:
                response = client.head(url)
                if response.status_code in (405, 501):  # HEAD not allowed: one byte instead
                    with client.stream("GET", url, headers={"Range": "bytes=0-0"}) as streamed:
                        response = streamed
        except httpx.HTTPError as error:
            raise DownloadError(
                f"could not ask {url} whether {color} {month} is published: {error}"
            ) from error
        if response.status_code == 404:
            return False
        if response.is_success:
            return True
        raise DownloadError(
            f"could not tell whether {color} {month} is published: "
            f"{url} answered HTTP {response.status_code}"
        )

    return is_published


def months_for_run(
    run_time: datetime | None,
    color: str,
    base_url: str,
    *,
    max_fallback: int = MAX_FALLBACK,
    timeout: float = PROBE_TIMEOUT_SECONDS,
) -> ScheduledMonths:
    """The months for a run at ``run_time`` (now, in UTC, if None), asking ``base_url``."""
    if color not in COLORS:
        raise InvalidInputError(f"color {color!r} is unknown: allowed are {', '.join(COLORS)}")
    when = run_time if run_time is not None else datetime.now(UTC)
    try:
        return choose_months(when, published_on_server(base_url, color, timeout), max_fallback)
    except MonthNotPublishedError as error:
        raise MonthNotPublishedError(f"{color}: {error} at {base_url}") from None


def _day(run_date: date | datetime) -> str:
    if isinstance(run_date, datetime):
        if run_date.tzinfo is not None:
            run_date = run_date.astimezone(UTC)
        return run_date.date().isoformat()
    return run_date.isoformat()
