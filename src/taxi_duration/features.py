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
  categorical support; a missing or non-finite number is NaN, which XGBoost treats as missing.
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


@dataclass(frozen=True)
class Preprocessor:
    """Feature vocabularies learned from the training month."""

    features: FeatureSet
    vocabularies: dict[str, Vocabulary]

    @classmethod
    def fit(cls, frame: pd.DataFrame, features: FeatureSet) -> Preprocessor:
        vocabularies = {}
        for name in features.categorical:
            feature = factorized(frame, name)
            vocabularies[name] = (
                Vocabulary.fit(name, categorical_keys(frame, name))
                if feature is None
                else Vocabulary.fit_factorized(name, feature)
            )
        return cls(features=features, vocabularies=vocabularies)

    def _positions(self, frame: pd.DataFrame, name: str) -> np.ndarray:
        """Name-order position of each row's category, -1 where unseen in training."""
        vocabulary = self.vocabularies[name]
        feature = factorized(frame, name)
        if feature is None:
            return vocabulary.positions(categorical_keys(frame, name))
        return vocabulary.factorized_positions(feature)

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
        """The one-hot CSR matrix, as DictVectorizer would give it (float64).

        Each row stores one entry per block (a category seen in training, or a number),
        in block order, so indices come out sorted within a row. Built in place as
        (rows, blocks) arrays; rows with an unseen category are compacted afterwards.
        """
        n_rows = len(frame)
        blocks = self._blocks()
        indices = np.empty((n_rows, len(blocks)), dtype=np.int32)
        values = np.empty((n_rows, len(blocks)), dtype=np.float64)
        unseen: list[tuple[int, np.ndarray]] = []
        offset = 0
        for block, (_, name) in enumerate(blocks):
            if name in self.vocabularies:
                position = self._positions(frame, name)
                np.add(position, offset, out=indices[:, block], casting="unsafe")
                values[:, block] = 1.0
                if len(position) and position.min() < 0:
                    unseen.append((block, position < 0))
                offset += len(self.vocabularies[name].keys)
            else:
                indices[:, block] = offset
                # A missing number (NaN) counts as 0: linear models can't take NaN.
                values[:, block] = np.nan_to_num(numeric_values(frame, name), nan=0.0)
                offset += 1
        shape = (n_rows, offset)
        if not unseen:
            index_dtype = np.int32 if indices.size < np.iinfo(np.int32).max else np.int64
            indptr = np.arange(0, indices.size + 1, max(len(blocks), 1), dtype=index_dtype)
            if not blocks:
                indptr = np.zeros(n_rows + 1, dtype=index_dtype)
            return sp.csr_matrix((values.ravel(), indices.ravel(), indptr), shape=shape)
        stored = np.ones(indices.shape, dtype=bool)
        for block, missing in unseen:
            stored[:, block] = ~missing
        indptr = np.concatenate([[0], np.cumsum(stored.sum(axis=1))])
        return sp.csr_matrix((values[stored], indices[stored], indptr), shape=shape)

    def transform_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Categoricals with the training categories (unseen: missing), numerics as float32."""
        data: dict[str, object] = {}
        for name in self.features.categorical:
            vocabulary = self.vocabularies[name]
            position = self._positions(frame, name)
            data[name] = pd.Categorical.from_codes(position, categories=pd.Index(vocabulary.labels))
        for name in self.features.numeric:
            with np.errstate(over="ignore"):
                values = numeric_values(frame, name).astype(np.float32)
            # XGBoost reads NaN as missing (the split's default branch); an infinite number
            # (or one beyond float32, e.g. a corrupt 1e300 distance) is missing too, not inf.
            values[np.isinf(values)] = np.nan
            data[name] = values
        return pd.DataFrame(data, index=frame.index)
