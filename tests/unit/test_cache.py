"""The prepared-months cache: a hit, a miss on a changed file or changed step code, the bound."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from tlc_samples import write_month

from taxi_duration import cache as cache_module
from taxi_duration import models, prepare
from taxi_duration.cache import PreparedCache, prepare_cached
from taxi_duration.months import Month

JAN, FEB = Month(2023, 1), Month(2023, 2)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_month(tmp_path / "data", "green", JAN, rows=500)


@pytest.fixture
def cache(tmp_path: Path) -> PreparedCache:
    return PreparedCache(tmp_path / "data" / "prepared", 10**9)


@pytest.fixture
def prepare_calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Each real preparation (a cache miss), by file."""
    calls: list[Path] = []
    real = prepare.prepare_trips

    def counted(path: Path, color: str) -> prepare.PreparedTrips:
        calls.append(path)
        return real(path, color)

    monkeypatch.setattr(cache_module, "prepare_trips", counted)
    return calls


def test_a_hit_gives_back_the_same_frame_without_preparing(
    source: Path, cache: PreparedCache, prepare_calls: list[Path]
) -> None:
    first, hit_first = prepare_cached(source, "green", cache)
    second, hit_second = prepare_cached(source, "green", cache)
    assert (hit_first, hit_second) == (False, True)
    assert prepare_calls == [source]
    pd.testing.assert_frame_equal(second.frame, first.frame)
    zones = second.frame["PULocationID"].cat
    assert zones.codes.dtype == first.frame["PULocationID"].cat.codes.dtype  # int16, as made
    assert second.rows_loaded == first.rows_loaded == 500
    assert list(cache.root.glob(".*.part")) == []  # written under a temporary name, renamed


def test_a_changed_source_file_is_a_miss(
    source: Path, cache: PreparedCache, prepare_calls: list[Path]
) -> None:
    prepare_cached(source, "green", cache)
    write_month(source.parent, "green", JAN, rows=400, seed=1)  # the same name, new bytes
    trips, hit = prepare_cached(source, "green", cache)
    assert not hit
    assert trips.rows_loaded == 400
    assert len(prepare_calls) == 2


def test_the_same_bytes_under_a_new_modification_time_are_still_a_hit(
    source: Path, cache: PreparedCache
) -> None:
    prepare_cached(source, "green", cache)
    os.utime(source, ns=(0, 10**18))  # touched: hashed again, same digest
    assert prepare_cached(source, "green", cache)[1]


def test_changed_step_code_is_a_miss(
    source: Path, cache: PreparedCache, monkeypatch: pytest.MonkeyPatch, prepare_calls: list[Path]
) -> None:
    prepare_cached(source, "green", cache)
    real_source = cache_module._module_source

    def edited(name: str) -> str:
        text = real_source(name)
        return text + "\n# edited\n" if name == "taxi_duration.prepare" else text

    monkeypatch.setattr(cache_module, "_module_source", edited)
    cache_module.step_code.cache_clear()
    try:
        assert not prepare_cached(source, "green", cache)[1]
    finally:
        cache_module.step_code.cache_clear()
    assert len(prepare_calls) == 2
    assert len(cache.entries()) == 2  # the old entry stays until evicted or cleared


def test_ls_lists_entries_with_size_most_recently_used_first(
    tmp_path: Path, cache: PreparedCache
) -> None:
    jan = write_month(tmp_path / "data", "green", JAN, rows=300)
    feb = write_month(tmp_path / "data", "green", FEB, rows=300)
    prepare_cached(jan, "green", cache)
    prepare_cached(feb, "green", cache)
    os.utime(cache.entry_path(feb, "green"), (1, 1))  # long unused
    entries = cache.entries()
    assert [entry.source for entry in entries] == [f"{jan.stem}.green", f"{feb.stem}.green"]
    assert [entry.size for entry in entries] == [
        cache.entry_path(path, "green").stat().st_size for path in (jan, feb)
    ]
    assert all(entry.size > 0 for entry in entries)


def test_clear_removes_every_entry(source: Path, cache: PreparedCache) -> None:
    prepare_cached(source, "green", cache)
    (cache.root / ".leftover.part").write_bytes(b"partial")
    removed = cache.clear()
    assert [entry.source for entry in removed] == [f"{source.stem}.green"]
    assert list(cache.root.iterdir()) == []
    assert not prepare_cached(source, "green", cache)[1]


def test_the_least_recently_used_entries_go_beyond_the_bound(
    tmp_path: Path, cache: PreparedCache
) -> None:
    jan = write_month(tmp_path / "data", "green", JAN, rows=300)
    feb = write_month(tmp_path / "data", "green", FEB, rows=300)
    prepare_cached(jan, "green", cache)
    one_entry = cache.entries()[0].size
    os.utime(cache.entry_path(jan, "green"), (1, 1))
    bounded = PreparedCache(cache.root, one_entry + one_entry // 2)  # room for one
    prepare_cached(feb, "green", bounded)
    assert [entry.source for entry in bounded.entries()] == [f"{feb.stem}.green"]


def test_a_hit_marks_the_entry_used(tmp_path: Path, cache: PreparedCache) -> None:
    jan = write_month(tmp_path / "data", "green", JAN, rows=300)
    feb = write_month(tmp_path / "data", "green", FEB, rows=300)
    prepare_cached(jan, "green", cache)
    prepare_cached(feb, "green", cache)
    os.utime(cache.entry_path(jan, "green"), (1, 1))
    assert prepare_cached(jan, "green", cache)[1]  # used again: now the newest
    assert cache.entries()[0].source == f"{jan.stem}.green"


def test_a_zero_bound_caches_nothing(source: Path, tmp_path: Path) -> None:
    off = PreparedCache(tmp_path / "off", 0)
    assert not prepare_cached(source, "green", off)[1]
    assert not prepare_cached(source, "green", off)[1]
    assert off.entries() == []


@pytest.mark.parametrize("features", ["default", "pu_do"])
def test_a_cached_month_makes_the_same_features(
    tmp_path: Path, cache: PreparedCache, features: str
) -> None:
    """The hit's columns are read-only views of arrow memory: features must not write to them."""
    jan = write_month(tmp_path / "data", "green", JAN, rows=400)
    feb = write_month(tmp_path / "data", "green", FEB, rows=400)
    fresh = [prepare_cached(path, "green", cache)[0].frame for path in (jan, feb)]
    cached = [prepare_cached(path, "green", cache)[0].frame for path in (jan, feb)]
    config = models.training_config(features=features)
    made = [models.month_pair_features(config, *frames) for frames in (fresh, cached)]
    for name in ("x_train", "x_val"):
        one, other = (getattr(data, name) for data in made)
        if isinstance(one, pd.DataFrame):
            pd.testing.assert_frame_equal(one, other)
        else:
            assert (one != other).nnz == 0


def test_a_write_removes_what_a_killed_writer_left_and_keeps_a_live_ones(
    source: Path, cache: PreparedCache
) -> None:
    target = cache.entry_path(source, "green")
    cache.root.mkdir(parents=True, exist_ok=True)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    host = socket.gethostname()
    killed = cache.root / f".{target.name}~{host}~{finished.stdout.strip()}~x1.part"
    live = cache.root / f".{target.name}~{host}~{os.getpid()}~x2.part"
    other_host = cache.root / f".{target.name}~elsewhere~{finished.stdout.strip()}~x3.part"
    for temp in (killed, live, other_host):
        temp.write_bytes(b"half a month")
    prepare_cached(source, "green", cache)
    assert target.exists()
    assert not killed.exists()
    assert live.exists()
    assert other_host.exists()
