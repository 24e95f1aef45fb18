"""Features: a preprocessor fitted on the training month and applied to any month.

Feature sets:
- ``pu_do``: the course's PU_DO pair (one-hot) and trip_distance.
- ``separate``: PULocationID and DOLocationID, one-hot each.
- ``default``: both zones as categories over the fixed TLC zone list, trip_distance (0 is
  unknown), the pickup's hour and weekday, the request-time fields (vendor, trip type,
  passenger count), and zone-pair statistics of the training month (``ZoneStatistics``).

Two encodings of the same features:
- ``transform_sparse``: a one-hot CSR matrix laid out exactly as scikit-learn's
  DictVectorizer lays out the course's dicts (same column names and order, explicit
  numeric zeros, unseen categories omitted), built directly from integer keys.
- ``transform_frame``: a DataFrame with pandas categoricals, for XGBoost's native
  categorical support; a missing or non-finite number is NaN, which XGBoost treats as missing.
Zones unseen in the training month get no one-hot column (sparse) or a missing value (frame),
except in ``default``, whose categories are the TLC's zones whatever the month holds.

Target statistics (``default``): the training rows get them out of fold
(``transform_frame(frame, training=True)``), so that no trip sees its own duration; any
other rows get the whole training month's, carried in the fitted preprocessor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from taxi_duration.choices import ZONE_COLUMNS, FeatureSet
from taxi_duration.errors import InvalidInputError
from taxi_duration.features.encoding import (
    TLC_ZONE_IDS,
    Vocabulary,
    absent_features,
    categorical_keys,
    factorized,
    numeric_values,
    request_values,
)
from taxi_duration.features.zone_statistics import (
    ZoneStatistics,
    fit_zone_statistics,
    known_distance,
    out_of_fold_statistics,
    statistic_inputs,
)


@dataclass(frozen=True)
class Preprocessor:
    """Feature vocabularies learned from the training month."""

    features: FeatureSet
    vocabularies: dict[str, Vocabulary]
    # The training month's zone statistics, for feature sets that use them.
    statistics: ZoneStatistics | None = None
    # Request-time features without a value in the training month (fhvhv has none of the
    # three, yellow no trip type): left out of the model's frame. XGBoost never splits on a
    # feature without values, and such a column makes its matrices sparse: 1.5 GiB more for
    # 20 million fhvhv trips.
    absent: tuple[str, ...] = ()

    @classmethod
    def fit(
        cls, frame: pd.DataFrame, features: FeatureSet, statistics: ZoneStatistics | None = None
    ) -> Preprocessor:
        """Vocabularies and zone statistics of the training month; ``statistics``: the
        month's, already fitted (``training_statistics``)."""
        vocabularies = {}
        for name in features.categorical:
            if features.fixed_zones and name in ZONE_COLUMNS:
                # The encoding must not depend on which zones a month happens to hold.
                vocabularies[name] = Vocabulary.fit(name, TLC_ZONE_IDS)
                continue
            feature = factorized(frame, name)
            vocabularies[name] = (
                Vocabulary.fit(name, categorical_keys(frame, name))
                if feature is None
                else Vocabulary.fit_factorized(name, feature)
            )
        if not features.zone_statistics:
            statistics = None
        elif statistics is None:
            statistics = fit_zone_statistics(frame)
        absent = absent_features(features, request_values(frame))
        return cls(features, vocabularies, statistics, absent)

    @classmethod
    def of_statistics(
        cls, features: FeatureSet, statistics: ZoneStatistics, absent: tuple[str, ...] = ()
    ) -> Preprocessor:
        """A preprocessor fitted without the trips: zones over the TLC's list (``fixed_zones``),
        statistics and ``absent`` features found elsewhere (e.g. by a Dask cluster)."""
        if not features.fixed_zones or not set(features.categorical) <= set(ZONE_COLUMNS):
            raise InvalidInputError(
                f"feature set {features.name!r} has categories learned from the trips: it "
                "needs Preprocessor.fit"
            )
        vocabularies = {name: Vocabulary.fit(name, TLC_ZONE_IDS) for name in features.categorical}
        return cls(features, vocabularies, statistics, absent)

    def numeric_columns(
        self,
        frame: pd.DataFrame,
        training: bool = False,
        statistics: dict[str, np.ndarray] | None = None,
        names: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """The numeric features as float64, statistics out of fold for ``training`` rows.

        ``statistics``: the rows' STATISTIC_FEATURES, computed by the caller; ``names``: these
        numeric features only (default: all).
        """
        if statistics is None:
            statistics = self._statistics(frame, training)
        columns = {}
        for name in self.features.numeric if names is None else names:
            if name in statistics:
                columns[name] = statistics[name]
            elif name == "trip_distance" and self.features.zero_distance_unknown:
                columns[name] = known_distance(frame)
            else:
                columns[name] = numeric_values(frame, name)
        return columns

    def _statistics(self, frame: pd.DataFrame, training: bool) -> dict[str, np.ndarray]:
        if not self.features.zone_statistics:
            return {}
        if training:
            return out_of_fold_statistics(frame)
        if self.statistics is None:
            raise InvalidInputError(
                f"feature set {self.features.name!r} needs a preprocessor fitted with "
                "zone statistics"
            )
        return self.statistics.lookup(*statistic_inputs(frame))

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

    def transform_sparse(
        self,
        frame: pd.DataFrame,
        training: bool = False,
        statistics: dict[str, np.ndarray] | None = None,
    ) -> sp.csr_matrix:
        """The one-hot CSR matrix, as DictVectorizer would give it (float64).

        Each row stores one entry per block (a category seen in training, or a number),
        in block order, so indices come out sorted within a row. Built in place as
        (rows, blocks) arrays; rows with an unseen category are compacted afterwards.
        ``training``: the rows the preprocessor was fitted on (statistics out of fold);
        ``statistics``: the rows' zone statistics, given (see ``numeric_columns``).
        """
        numeric = self.numeric_columns(frame, training, statistics)
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
                values[:, block] = np.nan_to_num(numeric[name], nan=0.0)
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

    def transform_frame(
        self,
        frame: pd.DataFrame,
        training: bool = False,
        statistics: dict[str, np.ndarray] | None = None,
    ) -> pd.DataFrame:
        """Categoricals with the training categories (unseen: missing), numerics as float32.

        ``training``: the rows the preprocessor was fitted on (statistics out of fold);
        ``statistics``: the rows' zone statistics, given (see ``numeric_columns``).
        """
        names = [name for name in self.features.numeric if name not in self.absent]
        numeric = self.numeric_columns(frame, training, statistics, names)
        data: dict[str, object] = {}
        for name in self.features.categorical:
            vocabulary = self.vocabularies[name]
            position = self._positions(frame, name)
            data[name] = pd.Categorical.from_codes(position, categories=pd.Index(vocabulary.labels))
        for name in names:
            with np.errstate(over="ignore"):  # each float64 column freed once narrowed
                values = numeric.pop(name).astype(np.float32)
            # XGBoost reads NaN as missing (the split's default branch); an infinite number
            # (or one beyond float32, e.g. a corrupt 1e300 distance) is missing too, not inf.
            values[np.isinf(values)] = np.nan
            data[name] = values
        # Not copied into one block: the model reads columns, and a copy costs seconds.
        return pd.DataFrame(data, index=frame.index, copy=False)
