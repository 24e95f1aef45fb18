"""Ingest: the TLC monthly parquet file, downloaded once into a cache folder.

A download is written to a temporary name in the cache folder and renamed when it is
complete and checked, so the cache never holds a partial or corrupt file.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

import httpx
import pyarrow.parquet as pq
from tqdm import tqdm

from taxi_duration.choices import COLORS as COLORS
from taxi_duration.choices import FIRST_PUBLISHED_MONTH as FIRST_PUBLISHED_MONTH
from taxi_duration.choices import check_color_and_month as check_color_and_month
from taxi_duration.errors import (
    DataError,
    DownloadError,
    InvalidInputError,
    MonthNotPublishedError,
    create_folder,
    is_storage_failure,
    unwritable,
)
from taxi_duration.months import Month

_CHUNK_BYTES = 1 << 20


def tlc_file_name(color: str, month: Month) -> str:
    """The file name the TLC publishes a month under, e.g. ``green_tripdata_2023-01.parquet``."""
    return f"{color}_tripdata_{month}.parquet"


def tlc_url(base_url: str, color: str, month: Month) -> str:
    """``{base_url}/{color}_tripdata_{YYYY}-{MM}.parquet``."""
    return f"{base_url.rstrip('/')}/{tlc_file_name(color, month)}"


def file_digest(path: Path) -> str:
    """The sha256 of a data file, hex: what a run's lineage names its months by."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_parquet(path: Path) -> None:
    """Raise DataError unless ``path`` is a readable parquet file (footer and schema)."""
    try:
        pq.read_metadata(path)
    except Exception as error:  # pyarrow raises several types for a bad file
        raise DataError(f"{path} is not a readable parquet file: {error}") from error


def check_local_file(path: Path, role: str) -> Path:
    """A user-given data file: it must exist and be parquet (else it is bad input)."""
    if not path.is_file():
        raise InvalidInputError(f"{role} file {path} does not exist")
    try:
        check_parquet(path)
    except DataError as error:
        raise InvalidInputError(f"{role} file {error}") from None
    return path


def download_month(
    color: str,
    month: Month,
    *,
    base_url: str,
    cache_dir: Path,
    timeout_seconds: float = 60.0,
    progress: bool | None = None,
) -> Path:
    """The cached file for a month, downloaded first if missing or corrupt."""
    check_color_and_month(color, month)
    target = cache_dir / tlc_file_name(color, month)
    if target.is_file():
        try:
            check_parquet(target)
            return target
        except DataError:
            target.unlink()  # corrupt cache: fetch it again
    url = tlc_url(base_url, color, month)
    create_folder(cache_dir, "data directory", "TAXI_DURATION_DATA_DIR")
    try:
        _download(url, target, color, month, timeout_seconds, progress)
    except OSError as error:  # a full disk or a read-only folder: retrying will not help
        if not is_storage_failure(error):
            raise
        raise unwritable(cache_dir, "data directory", "TAXI_DURATION_DATA_DIR", error) from None
    return target


def _download(
    url: str,
    target: Path,
    color: str,
    month: Month,
    timeout_seconds: float,
    progress: bool | None,
) -> None:
    show_progress = sys.stderr.isatty() if progress is None else progress
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    temp_path = Path(temp_name)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            httpx.stream("GET", url, timeout=timeout_seconds) as response,
        ):
            if response.status_code == 404:
                raise MonthNotPublishedError(
                    f"{color} {month} is not published at {url} (HTTP 404)"
                )
            if response.status_code >= 400:
                raise DownloadError(f"download of {url} failed: HTTP {response.status_code}")
            expected = response.headers.get("Content-Length")
            total = int(expected) if expected is not None else None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=target.name, disable=not show_progress
            ) as bar:
                for chunk in response.iter_bytes(_CHUNK_BYTES):
                    out.write(chunk)
                    bar.update(len(chunk))
            # Raw bytes, as Content-Length counts them even for an encoded body.
            received = response.num_bytes_downloaded
        if total is not None and received != total:
            raise DownloadError(f"download of {url} was cut short: {received} of {total} bytes")
        check_parquet(temp_path)
        temp_path.chmod(0o644)  # mkstemp makes it private; the cache is shared like any download
        os.replace(temp_path, target)
    except httpx.HTTPError as error:
        raise DownloadError(f"download of {url} failed: {error}") from error
    finally:
        temp_path.unlink(missing_ok=True)
