"""Errors a user can act on. Their message is one line naming the bad value and what is allowed."""


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


class DataError(TaxiDurationError):
    """A data file is unusable: not parquet, a column missing or of the wrong type, no rows kept."""


class RegistryError(TaxiDurationError):
    """The model registry lacks what was asked for (no champion yet, an unknown version)."""


class TrackingError(TaxiDurationError):
    """The MLflow tracking server is unreachable or failing (after bounded retries)."""
