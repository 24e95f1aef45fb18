"""Progress: a line as each step starts and one as it ends, with its time.

The lines go through the run's logger, so they are in the Prefect UI's logs too; each record
carries ``PROGRESS`` so that the console (``taxi_duration.cli``) can show these lines alone,
without Prefect's and MLflow's own logs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger

# The attribute that marks a progress record.
PROGRESS = "taxi_duration_progress"


@contextmanager
def timed(timings: dict[str, float], step: str, about: str = "") -> Iterator[None]:
    """Time a step into ``timings`` (adding to its earlier time) and log its progress."""
    logger = get_run_logger()
    name = f"{step} {about}".rstrip()
    marked = {PROGRESS: True}
    logger.info("%s ...", name, extra=marked)
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        logger.info("%s failed after %.1f s", name, time.perf_counter() - start, extra=marked)
        raise
    finally:
        seconds = time.perf_counter() - start
        timings[step] = round(timings.get(step, 0.0) + seconds, 3)
    logger.info("%s %.1f s", name, seconds, extra=marked)


def progress_line(message: str, *args: object) -> None:
    """A progress line of what ended elsewhere (a task on a Dask worker): its own format,
    "<step> [what] 1.2 s" or "<step> [what] failed after 1.2 s"."""
    get_run_logger().info(message, *args, extra={PROGRESS: True})
