"""Features: a preprocessor fitted on the training month and applied to any month.

Feature sets:
- ``pu_do``: the course's PU_DO pair (one-hot) and trip_distance.
- ``separate``: PULocationID and DOLocationID, one-hot each.
- ``default``: both zones as categories, trip_distance, and the pickup's hour and weekday.

Two encodings of the same features:
- ``transform_sparse``: a one-hot CSR matrix laid out exactly as scikit-learn's
  DictVectorizer lays out the course's dicts (same column names and order, explicit
  numeric zeros, unseen categories omitted), built directly from integer keys.
- ``transform_frame``: a DataFrame with pandas categoricals, for XGBoost's native
  categorical support.
Zones unseen in the training month get no one-hot column (sparse) or a missing value (frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from taxi_duration.errors import InvalidInputError

# PU_DO is keyed as pickup * _PAIR_BASE + dropoff. TLC zone ids are 1..265; ids outside
# 0.._PAIR_BASE-1 are treated as missing.
_PAIR_BASE = 1 << 20
_MISSING_KEY = -1


@dataclass(frozen=True)
class FeatureSet:
    """Which categorical and numeric features a model sees."""

    name: str
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    # Whether tree models take the categoricals natively (else they get the one-hot matrix).
    native_categorical: bool


FEATURE_SETS: dict[str, FeatureSet] = {
    "default": FeatureSet(
        "default",
        categorical=("PULocationID", "DOLocationID"),
        numeric=("trip_distance", "pickup_hour", "pickup_weekday"),
        native_categorical=True,
    ),
    "pu_do": FeatureSet(
        "pu_do", categorical=("PU_DO",), numeric=("trip_distance",), native_categorical=False
    ),
    "separate": FeatureSet(
        "separate",
        categorical=("PULocationID", "DOLocationID"),
        numeric=(),
        native_categorical=False,
    ),
}


def feature_set(name: str) -> FeatureSet:
    """The feature set called ``name``."""
    try:
        return FEATURE_SETS[name]
    except KeyError:
        allowed = ", ".join(FEATURE_SETS)
        raise InvalidInputError(f"feature set {name!r} is unknown: allowed are {allowed}") from None


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


def category_label(name: str, key: int) -> str:
    """The value DictVectorizer sees for a key: ``161`` or, for PU_DO, ``161_236``."""
    if name == "PU_DO":
        return f"{key // _PAIR_BASE}_{key % _PAIR_BASE}"
    return str(key)


def numeric_values(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A numeric feature as float64; derived time features come from pickup_datetime."""
    if name == "pickup_hour":
        pickup = frame["pickup_datetime"].dt
        return np.asarray(pickup.hour + pickup.minute / 60.0, dtype=np.float64)
    if name == "pickup_weekday":
        return np.asarray(frame["pickup_datetime"].dt.weekday, dtype=np.float64)
    values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
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

    def positions(self, keys: np.ndarray) -> np.ndarray:
        """Name-order position of each key, -1 for a key not seen in training."""
        if len(self.keys) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        index = np.searchsorted(self.keys, keys).clip(0, len(self.keys) - 1)
        found = self.keys[index] == keys
        return np.where(found, self.name_rank[index], -1)


@dataclass(frozen=True)
class Preprocessor:
    """Feature vocabularies learned from the training month."""

    features: FeatureSet
    vocabularies: dict[str, Vocabulary]

    @classmethod
    def fit(cls, frame: pd.DataFrame, features: FeatureSet) -> Preprocessor:
        vocabularies = {
            name: Vocabulary.fit(name, categorical_keys(frame, name))
            for name in features.categorical
        }
        return cls(features=features, vocabularies=vocabularies)

    def _blocks(self) -> list[tuple[str, str]]:
        """(sort key, feature) in DictVectorizer's order: names sorted as strings."""
        blocks = [(f"{name}=", name) for name in self.features.categorical]
        blocks += [(name, name) for name in self.features.numeric]
        return sorted(blocks)

    @property
    def feature_names(self) -> list[str]:
        """One-hot column names, e.g. ``PU_DO=161_236`` and ``trip_distance``."""
        names: list[str] = []
        for _, name in self._blocks():
            if name in self.vocabularies:
                names += [f"{name}={label}" for label in self.vocabularies[name].labels]
            else:
                names.append(name)
        return names

    def transform_sparse(self, frame: pd.DataFrame) -> sp.csr_matrix:
        """The one-hot CSR matrix, as DictVectorizer would give it (float64)."""
        n_rows = len(frame)
        columns: list[np.ndarray] = []
        values: list[np.ndarray] = []
        offset = 0
        # Blocks are contiguous and in name order, so indices come out sorted within a row.
        for _, name in self._blocks():
            if name in self.vocabularies:
                vocabulary = self.vocabularies[name]
                position = vocabulary.positions(categorical_keys(frame, name))
                columns.append(np.where(position >= 0, position + offset, -1))
                values.append(np.ones(n_rows))
                offset += len(vocabulary.keys)
            else:
                columns.append(np.full(n_rows, offset, dtype=np.int64))
                # A missing number (NaN) counts as 0: linear models can't take NaN.
                values.append(np.nan_to_num(numeric_values(frame, name), nan=0.0))
                offset += 1
        column_matrix = np.column_stack(columns) if columns else np.empty((n_rows, 0), np.int64)
        value_matrix = np.column_stack(values) if values else np.empty((n_rows, 0))
        present = column_matrix >= 0
        indptr = np.concatenate([[0], np.cumsum(present.sum(axis=1))])
        return sp.csr_matrix(
            (value_matrix[present], column_matrix[present].astype(np.int32), indptr),
            shape=(n_rows, offset),
        )

    def transform_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Categoricals with the training categories (unseen: missing), numerics as float32."""
        data: dict[str, object] = {}
        for name in self.features.categorical:
            vocabulary = self.vocabularies[name]
            position = vocabulary.positions(categorical_keys(frame, name))
            data[name] = pd.Categorical.from_codes(position, categories=pd.Index(vocabulary.labels))
        for name in self.features.numeric:
            data[name] = numeric_values(frame, name).astype(np.float32)
        return pd.DataFrame(data, index=frame.index)
