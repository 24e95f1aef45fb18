"""Every failure a user can act on. Each message is one line naming the value and what is allowed.

Adapters translate a library's exception into one of these where they call the library; the
CLI turns them into one line on stderr and an exit code in one place (``cli.main``):
2 for bad input, 1 for a run that failed.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any


class TaxiDurationError(Exception):
    """Base class: the CLI prints the message as one line, with no traceback."""

    exit_code = 1


class InvalidInputError(TaxiDurationError):
    """A parameter is out of range or inconsistent (bad month, unknown color, missing file)."""

    exit_code = 2


class MonthNotPublishedError(TaxiDurationError):
    """The data server has no file for that month (HTTP 404). Retrying will not help."""


class DownloadError(TaxiDurationError):
    """The download failed in a way that may pass (5xx, dropped or short response)."""


class StorageError(TaxiDurationError):
    """A local folder cannot be written (read-only, full, not a folder). Retrying will not help."""


class DataError(TaxiDurationError):
    """A data file is unusable: not parquet, a column missing or of the wrong type, no rows kept."""


class DataCheckError(DataError):
    """A prepared month fails its data checks (``checks.py``): the run stops before training."""


class RegistryError(TaxiDurationError):
    """The model registry lacks what was asked for (no champion yet, an unknown version)."""


class TrackingError(TaxiDurationError):
    """The MLflow tracking server is unreachable or failing (after bounded retries)."""


class TuningError(TaxiDurationError):
    """A hyperparameter search ended without a single completed trial."""


class StackError(TaxiDurationError):
    """The local stack (``taxi-duration stack``) cannot start, stop or be read."""


class ServeError(TaxiDurationError):
    """The prediction service cannot start (its address is taken), or a version fails it."""


class BacktestFailedError(TaxiDurationError):
    """Some pairs of a backtest failed; ``summary`` still holds every pair's result."""

    def __init__(self, message: str, summary: Any) -> None:
        super().__init__(message)
        self.summary = summary

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (Prefect stores the exception)
        return (type(self), (str(self), self.summary))


# Failures that a retry may mend; every other one is final (see the ingest task's retries).
TRANSIENT_ERRORS: tuple[type[TaxiDurationError], ...] = (DownloadError,)


def create_folder(path: Path, what: str, setting: str) -> None:
    """Create ``path`` and its parents unless they exist. A folder that cannot be made is one
    StorageError naming it and ``setting``, however the system says so: EACCES, EROFS,
    ENOTDIR, or ENOENT for a parent that cannot be created (under /proc)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise unwritable(path, what, setting, error) from None


def unwritable(path: Path, what: str, setting: str, error: OSError) -> StorageError:
    """The one line for a folder that cannot be written, naming the setting to change."""
    return StorageError(
        f"{what} {path} cannot be written: {error.strerror or error} "
        f"(set {setting} to a writable folder)"
    )


def is_storage_failure(error: OSError) -> bool:
    """Whether ``error`` is a local folder that cannot be written (not a network failure,
    which libraries such as requests also raise as OSError)."""
    return isinstance(
        error, (PermissionError, NotADirectoryError, IsADirectoryError, FileExistsError)
    ) or error.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT)
