"""MLflow's failures as one-line TrackingErrors that name the tracking URI: the server
unreachable or failing, the credentials refused, a request it turned down."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from mlflow.exceptions import MlflowException

from taxi_duration.errors import StorageError, TrackingError, is_storage_failure
from taxi_duration.settings import Settings

_Call = TypeVar("_Call", bound=Callable[..., Any])


def _unreachable(error: BaseException) -> bool:
    """Whether an MLflow error is the server failing or unreachable, not a bad request."""
    text = str(error)
    return isinstance(error, OSError) or any(marker in text for marker in _UNREACHABLE_MARKERS)


_UNREACHABLE_MARKERS = (
    "Max retries exceeded",
    "Connection refused",
    "ConnectionError",
    "timed out",
    *(f"{code} error" for code in (500, 502, 503, 504)),
    *(f"status code {code}" for code in (500, 502, 503, 504)),
)


def _http_status(error: MlflowException) -> int:
    return int(error.get_http_status_code())  # type: ignore[no-untyped-call]


def _refused(error: BaseException) -> bool:
    """Whether the server refused the request's credentials (none, or wrong ones)."""
    return isinstance(error, MlflowException) and _http_status(error) in (401, 403)


def _refused_error(settings: Settings, error: MlflowException) -> TrackingError:
    return TrackingError(
        f"MLflow tracking server {settings.tracking_uri} refused the credentials "
        f"(HTTP {_http_status(error)}): set MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD"
    )


def _unreachable_error(settings: Settings, error: BaseException) -> TrackingError:
    """One line: the server, and why in a few words (MLflow's own message is a paragraph)."""
    text = str(error)
    reasons = {
        "Connection refused": "connection refused",
        "timed out": "timed out",
        "RemoteDisconnected": "connection dropped",
        "Name or service not known": "unknown host",
    }
    reason = next((short for marker, short in reasons.items() if marker in text), None)
    if reason is None:
        codes = [code for code in (500, 502, 503, 504) if str(code) in text]
        reason = f"HTTP {codes[0]}" if codes else (text.strip().splitlines() or [""])[0][:200]
    return TrackingError(
        f"MLflow tracking server {settings.tracking_uri} is unreachable or failing: "
        f"{reason} (gave up after MLflow's retries)"
    )


def translate_errors(call: _Call) -> _Call:
    """Turn MLflow's failures into one-line TrackingErrors naming the tracking URI.

    MLflow's HTTP client has retried already (MLFLOW_HTTP_REQUEST_MAX_RETRIES, bounded by
    the CLI); what reaches here is final.
    """

    @functools.wraps(call)
    def translated(settings: Settings, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(settings, *args, **kwargs)
        except (MlflowException, OSError) as error:
            if isinstance(error, OSError) and is_storage_failure(error):
                raise StorageError(
                    f"MLflow store {settings.tracking_uri} cannot be written: {error}"
                ) from error
            if isinstance(error, MlflowException) and _refused(error):
                raise _refused_error(settings, error) from error
            if isinstance(error, MlflowException) and not _unreachable(error):
                summary = str(error).strip().splitlines()[0] if str(error).strip() else ""
                raise TrackingError(
                    f"MLflow tracking at {settings.tracking_uri} failed: {summary[:300]}"
                ) from error
            raise _unreachable_error(settings, error) from error

    return translated  # type: ignore[return-value]


def _unless_unreachable(settings: Settings, error: MlflowException) -> None:
    """Raise the one-line TrackingError if ``error`` is the server failing or refusing the
    credentials, not an answer (a 401 is not "no such version")."""
    if _refused(error):
        raise _refused_error(settings, error) from error
    if _unreachable(error):
        raise _unreachable_error(settings, error) from error
