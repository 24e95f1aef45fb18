"""The prepared-months cache: each prepared month as a parquet file, reused while nothing changed.

An entry's key is the sha256 of the source file's bytes, the color, and the source of the
prepare step's code (``taxi_duration.prepare`` and this module), so a changed file or a
changed step is prepared again. Entries are stored uncompressed and without dictionaries:
a hit is little more than a read at disk speed (a 3.4M-row yellow month is 145 MB and
reads in about 0.1 s from the page cache).

Hashing a source file costs about 0.2 s for a yellow month, so its digest is remembered in
``digests.json`` next to the entries, keyed by the file's path, size and modification time
(as git's index does); a file rewritten in place gets a new modification time and is hashed
again.

Every write goes to a temporary name in the cache folder and is renamed when complete; the
name holds the writer's host and process id, so that the next write of the entry removes
what a writer killed mid-way left (a live writer's, or another host's, is left alone). A hit
sets the entry's modification time to now, so the modification time is the time of last
use: when the entries' total size exceeds the bound (``TAXI_DURATION_CACHE_MAX_GB``), the
least recently used are removed until it fits.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import inspect
import json
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from taxi_duration.ingest import file_digest
from taxi_duration.prepare import PreparedTrips, prepare_trips
from taxi_duration.processes import process_exists
from taxi_duration.settings import Settings

# The modules whose source decides what a prepared month holds and how it is stored.
STEP_MODULES = ("taxi_duration.prepare", __name__)
DIGESTS_FILE = "digests.json"
_SUFFIX = ".parquet"
_METADATA_KEY = b"taxi_duration.prepared"


@dataclass(frozen=True)
class CacheEntry:
    """A cached prepared month: its file, size in bytes, and when it was last used."""

    path: Path
    size: int
    last_used: float

    @property
    def source(self) -> str:
        """The source file and color, e.g. ``yellow_tripdata_2023-03.yellow`` (no key)."""
        return self.path.name.rsplit(".", 2)[0]


def _module_source(module_name: str) -> str:
    return inspect.getsource(importlib.import_module(module_name))


@functools.cache
def step_code() -> str:
    """The sha256 of the prepare step's code: a change to it invalidates every entry."""
    digest = hashlib.sha256()
    for name in STEP_MODULES:
        digest.update(_module_source(name).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class PreparedCache:
    """The cache folder and its size bound in bytes (0: nothing is cached)."""

    root: Path
    max_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> PreparedCache:
        """``prepared/`` in the data folder, bounded by ``TAXI_DURATION_CACHE_MAX_GB``."""
        return cls(settings.data_dir / "prepared", int(settings.cache_max_gb * 1e9))

    def key(self, source: Path, color: str) -> str:
        payload = f"{self.source_digest(source)}:{color}:{step_code()}"
        return hashlib.sha256(payload.encode()).hexdigest()

    def entry_path(self, source: Path, color: str) -> Path:
        """``{source name}.{color}.{key}.parquet`` in the cache folder."""
        return self.root / f"{source.stem}.{color}.{self.key(source, color)[:32]}{_SUFFIX}"

    def source_digest(self, source: Path) -> str:
        """The sha256 of ``source``, hashed only when its path, size or mtime is new."""
        stat = source.stat()
        resolved = str(source.resolve())
        known = self._digests()
        remembered = known.get(resolved)
        if remembered is not None and remembered[:2] == [stat.st_size, stat.st_mtime_ns]:
            return str(remembered[2])
        digest = file_digest(source)
        known[resolved] = [stat.st_size, stat.st_mtime_ns, digest]
        with contextlib.suppress(OSError):  # a read-only cache still works, only slower
            self._write_atomically(
                self.root / DIGESTS_FILE, lambda path: path.write_text(json.dumps(known))
            )
        return digest

    def _digests(self) -> dict[str, list[int | str]]:
        try:
            known = json.loads((self.root / DIGESTS_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return known if isinstance(known, dict) else {}

    def get(self, source: Path, color: str) -> PreparedTrips | None:
        """The cached prepared month, or None (a missing or unreadable entry is a miss)."""
        if self.max_bytes <= 0:
            return None
        path = self.entry_path(source, color)
        try:
            table = pq.read_table(path, memory_map=True)
            trips = _from_table(table)
        except (OSError, ValueError, KeyError, pa.ArrowException):
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # last used now: the least recently used go first
        return trips

    def put(self, source: Path, color: str, trips: PreparedTrips) -> Path | None:
        """Store a prepared month, then evict the least recently used beyond the bound."""
        if self.max_bytes <= 0:
            return None
        path = self.entry_path(source, color)
        table = _to_table(trips)
        self._write_atomically(
            path,
            lambda temp: pq.write_table(table, temp, compression="none", use_dictionary=False),
        )
        self.evict()
        return path if path.exists() else None

    def _write_atomically(self, target: Path, write: Callable[[Path], object]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        host = socket.gethostname()
        for temp in self.root.glob(f".{target.name}~*.part"):
            parts = temp.name.split("~")
            if len(parts) != 4:
                continue
            _, writer_host, pid, _ = parts
            if writer_host == host and pid.isdigit() and not process_exists(int(pid)):
                temp.unlink(missing_ok=True)  # left by a writer killed mid-way
        fd, name = tempfile.mkstemp(
            prefix=f".{target.name}~{host}~{os.getpid()}~", suffix=".part", dir=self.root
        )
        os.close(fd)
        temp = Path(name)
        try:
            write(temp)
            temp.chmod(0o644)  # mkstemp makes it private; the cache is shared like the data
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)

    def entries(self) -> list[CacheEntry]:
        """The cached months, most recently used first."""
        found = []
        for path in self._entry_files():
            try:
                stat = path.stat()
            except OSError:  # removed meanwhile
                continue
            found.append(CacheEntry(path, stat.st_size, stat.st_mtime))
        return sorted(found, key=lambda entry: entry.last_used, reverse=True)

    def _entry_files(self) -> Iterator[Path]:
        if not self.root.is_dir():
            return iter(())
        return (p for p in self.root.iterdir() if p.suffix == _SUFFIX and p.name[0] != ".")

    def evict(self) -> list[CacheEntry]:
        """Remove the least recently used entries until their total is within the bound."""
        entries = self.entries()
        total = sum(entry.size for entry in entries)
        removed = []
        while entries and total > self.max_bytes:
            oldest = entries.pop()
            oldest.path.unlink(missing_ok=True)
            total -= oldest.size
            removed.append(oldest)
        return removed

    def clear(self) -> list[CacheEntry]:
        """Remove every entry, the remembered digests and any leftover temporary file."""
        entries = self.entries()
        for entry in entries:
            entry.path.unlink(missing_ok=True)
        if self.root.is_dir():
            for leftover in [*self.root.glob(".*.part"), self.root / DIGESTS_FILE]:
                leftover.unlink(missing_ok=True)
        return entries


def cache_listing(cache: PreparedCache, action: str) -> dict[str, Any]:
    """``ls`` (the entries) or ``clear`` (the entries removed), as the CLI prints them."""
    entries = cache.clear() if action == "clear" else cache.entries()
    return {
        "action": action,
        "root": str(cache.root.resolve()),
        "max_bytes": cache.max_bytes,
        "total_bytes": sum(entry.size for entry in entries),
        "entries": [
            {
                "file": entry.path.name,
                "source": entry.source,
                "size": entry.size,
                "last_used": datetime.fromtimestamp(entry.last_used).isoformat(
                    sep=" ", timespec="seconds"
                ),
            }
            for entry in entries
        ],
    }


def prepare_cached(path: Path, color: str, cache: PreparedCache) -> tuple[PreparedTrips, bool]:
    """A prepared month from the cache, else prepared and cached; and whether it was a hit."""
    cached = cache.get(path, color)
    if cached is not None:
        return cached, True
    trips = prepare_trips(path, color)
    with contextlib.suppress(OSError):  # a full or read-only disk: the run goes on uncached
        cache.put(path, color, trips)
    return trips, False


def _to_table(trips: PreparedTrips) -> pa.Table:
    """Categorical columns as their codes, with the categories in the schema's metadata."""
    columns, categories = {}, {}
    for name, column in trips.frame.items():
        if isinstance(column.dtype, pd.CategoricalDtype):
            columns[name] = pa.array(column.cat.codes.to_numpy())
            categories[str(name)] = column.cat.categories.to_numpy().tolist()
        else:
            columns[name] = pa.array(column.to_numpy())
    table = pa.table(columns)
    metadata = {"rows_loaded": trips.rows_loaded, "categories": categories}
    return table.replace_schema_metadata({_METADATA_KEY: json.dumps(metadata).encode()})


def _from_table(table: pa.Table) -> PreparedTrips:
    metadata = json.loads(table.schema.metadata[_METADATA_KEY])
    categories = metadata["categories"]
    columns: dict[str, object] = {}
    for name in table.column_names:
        values = table.column(name).to_numpy()
        if name in categories:
            index = pd.Index(categories[name], dtype="int32")
            columns[name] = pd.Categorical.from_codes(values, categories=index)
        else:
            columns[name] = values
    frame = pd.DataFrame(columns, copy=False)
    return PreparedTrips(frame=frame, rows_loaded=int(metadata["rows_loaded"]))
