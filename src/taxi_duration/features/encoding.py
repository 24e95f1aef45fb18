"""Encoding: the features' values as integer keys and numbers, and the vocabulary of a
categorical feature (its categories seen in the training month, in DictVectorizer's order).

Zones are keys (int64, ``_MISSING_KEY`` where missing or out of range), a PU_DO pair one key
of both; zones prepared as categoricals are looked up by code (``factorized``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from taxi_duration.choices import FIRST_ZONE_ID, LAST_ZONE_ID, REQUEST_COLUMNS, FeatureSet

# PU_DO is keyed as pickup * _PAIR_BASE + dropoff. TLC zone ids are 1..265; ids outside
# 0.._PAIR_BASE-1 are treated as missing.
_PAIR_BASE = 1 << 20
_MISSING_KEY = -1


TLC_ZONE_IDS = np.arange(FIRST_ZONE_ID, LAST_ZONE_ID + 1, dtype=np.int64)


def _zone_keys(column: pd.Series) -> np.ndarray:
    """Zone ids as int64; missing or out-of-range zones as _MISSING_KEY."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = pd.to_numeric(pd.Series(column.cat.categories), errors="coerce")
        values = np.append(categories.to_numpy(dtype=np.float64, na_value=np.nan), np.nan)
        # Code -1 (missing) picks the trailing NaN.
        values = values[column.cat.codes.to_numpy()]
    else:
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    keys = np.full(len(values), _MISSING_KEY, dtype=np.int64)
    valid = np.isfinite(values) & (values >= 0) & (values < _PAIR_BASE)
    keys[valid] = values[valid].astype(np.int64)
    return keys


def categorical_keys(frame: pd.DataFrame, name: str) -> np.ndarray:
    """Integer keys of a categorical feature, _MISSING_KEY where it is unknown."""
    if name == "PU_DO":
        pickup = _zone_keys(frame["PULocationID"])
        dropoff = _zone_keys(frame["DOLocationID"])
        keys: np.ndarray = pickup * _PAIR_BASE + dropoff
        keys[(pickup == _MISSING_KEY) | (dropoff == _MISSING_KEY)] = _MISSING_KEY
        return keys
    return _zone_keys(frame[name])


@dataclass(frozen=True)
class Factorized:
    """A categorical feature as codes into a small table of keys (code -1: missing)."""

    codes: np.ndarray  # one integer per row, -1 where the feature is missing
    keys: np.ndarray  # the int64 key of each code (_MISSING_KEY for a missing one)


# PU_DO codes are pickup code x dropoff categories + dropoff code, up to this many.
_MAX_PAIR_CODES = 1 << 24


def factorized(frame: pd.DataFrame, name: str) -> Factorized | None:
    """Codes of a feature whose zones are categoricals (as prepared), else None.

    The same keys as ``categorical_keys``, without computing a key per row: encoding is a
    lookup in a table as small as the categories.
    """
    if name == "PU_DO":
        pickup = factorized(frame, "PULocationID")
        dropoff = factorized(frame, "DOLocationID")
        if pickup is None or dropoff is None:
            return None
        n_dropoff = len(dropoff.keys)
        if len(pickup.keys) * n_dropoff > _MAX_PAIR_CODES:
            return None
        codes = pickup.codes.astype(np.int32) * n_dropoff + dropoff.codes
        codes[(pickup.codes < 0) | (dropoff.codes < 0)] = -1
        keys = pickup.keys[:, None] * _PAIR_BASE + dropoff.keys[None, :]
        missing = (pickup.keys == _MISSING_KEY)[:, None] | (dropoff.keys == _MISSING_KEY)[None, :]
        keys[missing] = _MISSING_KEY
        return Factorized(codes=codes, keys=keys.ravel())
    column = frame[name]
    if not isinstance(column.dtype, pd.CategoricalDtype):
        return None
    # The categories' keys, by _zone_keys' rules (ids out of range are missing).
    keys = _zone_keys(pd.Series(column.cat.categories))
    return Factorized(codes=column.cat.codes.to_numpy(), keys=keys)


def category_label(name: str, key: int) -> str:
    """The value DictVectorizer sees for a key: ``161`` or, for PU_DO, ``161_236``."""
    if name == "PU_DO":
        return f"{key // _PAIR_BASE}_{key % _PAIR_BASE}"
    return str(key)


def numeric_values(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A numeric feature as float64; derived time features come from pickup_datetime."""
    if name in ("pickup_hour", "pickup_weekday"):
        return _time_of_pickup(frame["pickup_datetime"], name)
    if name in REQUEST_COLUMNS and name not in frame:
        return np.full(len(frame), np.nan)  # optional: a month without it has it missing
    values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values


_MINUTES_A_DAY = 24 * 60
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday is 0)


def absent_features(features: FeatureSet, values: Mapping[str, int]) -> tuple[str, ...]:
    """The request-time features of the set without a single value in the training trips
    (``values``: how many each column holds; a column not there holds none)."""
    return tuple(
        name for name in features.numeric if name in REQUEST_COLUMNS and not values.get(name, 0)
    )


def request_values(frame: pd.DataFrame) -> dict[str, int]:
    """How many values each request-time column of the trips holds."""
    return {name: int(frame[name].notna().sum()) for name in REQUEST_COLUMNS if name in frame}


def _time_of_pickup(pickup: pd.Series, name: str) -> np.ndarray:
    """``pickup_hour`` (hour + minute / 60) or ``pickup_weekday`` (Monday 0), NaN where the
    time is missing: from the minutes since the epoch (the ``dt`` accessor is 4x slower)."""
    if isinstance(pickup.dtype, pd.DatetimeTZDtype):  # the local wall-clock time, as ``dt``
        pickup = pickup.dt.tz_localize(None)
    times = pd.to_datetime(pickup).to_numpy()
    minutes = times.astype("datetime64[m]").view(np.int64)
    if name == "pickup_hour":
        of_day = minutes % _MINUTES_A_DAY
        values = of_day // 60 + (of_day % 60) / 60.0
    else:
        values = ((minutes // _MINUTES_A_DAY + _EPOCH_WEEKDAY) % 7).astype(np.float64)
    values[np.isnat(times)] = np.nan
    return values


@dataclass(frozen=True)
class Vocabulary:
    """The categories of one feature seen in the training month."""

    keys: np.ndarray  # sorted int64 keys, for searchsorted
    # Position of each key (in ``keys`` order) among the names sorted as strings.
    name_rank: np.ndarray
    labels: tuple[str, ...]  # labels in name order

    @classmethod
    def fit(cls, name: str, keys: np.ndarray) -> Vocabulary:
        unique = np.unique(keys[keys != _MISSING_KEY])
        labels = [category_label(name, int(key)) for key in unique]
        order = np.argsort(np.array(labels, dtype=object), kind="stable")
        rank = np.empty(len(unique), dtype=np.int64)
        rank[order] = np.arange(len(unique))
        return cls(keys=unique, name_rank=rank, labels=tuple(labels[i] for i in order))

    @classmethod
    def fit_factorized(cls, name: str, feature: Factorized) -> Vocabulary:
        """``fit`` on the keys of the codes that occur (the same vocabulary, faster)."""
        codes = feature.codes
        if len(codes) and codes.min() < 0:
            codes = codes[codes >= 0]
        used = np.bincount(codes, minlength=len(feature.keys)).astype(bool)
        return cls.fit(name, feature.keys[used])

    def factorized_positions(self, feature: Factorized) -> np.ndarray:
        """``positions`` of the rows' keys, looked up by code (int32)."""
        lookup = np.append(self.positions(feature.keys), -1).astype(np.int32)
        return np.asarray(lookup[feature.codes])  # code -1 takes the last entry: -1

    def positions(self, keys: np.ndarray) -> np.ndarray:
        """Name-order position of each key, -1 for a key not seen in training."""
        if len(self.keys) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        index = np.searchsorted(self.keys, keys).clip(0, len(self.keys) - 1)
        found = self.keys[index] == keys
        return np.where(found, self.name_rank[index], -1)
