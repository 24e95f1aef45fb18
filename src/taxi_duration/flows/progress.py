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
    name = f"{step} {about}".rstrip()
    progress_line("%s ...", name)
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        progress_line("%s failed after %.1f s", name, time.perf_counter() - start)
        raise
    finally:
        seconds = time.perf_counter() - start
        timings[step] = round(timings.get(step, 0.0) + seconds, 3)
    progress_line("%s %.1f s", name, seconds)


def progress_line(message: str, *args: object) -> None:
    """One progress line, in the format ``timed`` writes ("<step> [what] ...", "<step> [what]
    1.2 s" or "... failed after 1.2 s"); alone, for what ended elsewhere (a Dask task)."""
    get_run_logger().info(message, *args, extra={PROGRESS: True})
