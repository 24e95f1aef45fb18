"""Train on a Dask cluster: the window's months are read, prepared and featurized by the
workers, and boosted with XGBoost's own Dask interface (``xgboost.dask``).

The client process holds only what is small: the files' paths, the zone statistics
(tables of at most 266 x 266 pairs), the booster, counts and metrics; no month passes
through it. The result is the same ``TripDurationModel`` as a local run's (the fitted
preprocessor and a booster), so it is registered and served the same way.

Differences from the local computation (``models.month_pair_features``), all documented in
docs/usage.md (Training on a Dask cluster):
- Statistic folds and the early-stopping holdout are drawn per partition (seeded by the
  partition's number) rather than over the whole window's row order: the same sizes, other
  rows.
- The window's median duration and speed (the prior of a zone seen few times) are Dask's
  approximate quantiles; every zone and pair median is exact (grouped after a shuffle).
- XGBoost's quantile sketch is built per worker, so the histogram bins may differ slightly.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from taxi_duration import models, prepare
from taxi_duration.choices import REQUEST_COLUMNS
from taxi_duration.errors import InvalidInputError
from taxi_duration.features.encoding import absent_features
from taxi_duration.features.preprocessor import Preprocessor
from taxi_duration.features.zone_statistics import (
    PAIR_SLOTS,
    STATISTIC_FOLDS,
    ZONE_SLOTS,
    GroupMedians,
    ZoneStatistics,
    complement_medians,
    pair_slots,
    statistic_folds,
    statistic_inputs,
    statistics_by_fold,
)

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client

# An unreachable scheduler is bad input, reported within a few seconds.
CONNECT_TIMEOUT_SECONDS = 5.0
DEFAULT_WORKERS = 2
_ALL = "all"  # the column suffix of statistics over every row (not one fold's complement)
# The slots each statistic groups by, and how many there are.
_STATISTIC_KEYS = {
    "pickup": ZONE_SLOTS,
    "dropoff": ZONE_SLOTS,
    "pair": PAIR_SLOTS,
}


def local_cluster_kwargs(workers: int | None = None) -> dict[str, Any]:
    """A local cluster of ``workers`` single-threaded processes (for ``LocalCluster``, or a
    Dask task runner's ``cluster_kwargs``)."""
    return {
        "n_workers": workers or DEFAULT_WORKERS,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": ":0",  # any free port: never clash with a running cluster
    }


@contextmanager
def dask_client(address: str | None, workers: int | None = None) -> Iterator[Client]:
    """A client of the scheduler at ``address``, else of a local cluster of ``workers``."""
    from distributed import Client, LocalCluster

    if address is None:
        with (
            LocalCluster(**local_cluster_kwargs(workers)) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_SECONDS)
    except (OSError, TimeoutError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidInputError(
            f"dask address {address!r} is unreachable ({reason}): give the tcp://HOST:PORT "
            "of a running dask scheduler"
        ) from None
    with client:
        import_on_scheduler(client, __name__, "xgboost.dask")  # the graphs' modules
        yield client


def import_on_scheduler(client: Client, *modules: str) -> None:
    """Have the scheduler import ``modules`` (and what they import) before a graph is sent.

    The scheduler unpickles every graph, importing the modules its tasks name: Prefect,
    this package, pandas. That takes seconds of CPU inside its event loop, on its first
    graph. When it outlasts Dask's 30 s TCP timeout with a graph in flight (seen at 50 s on
    a loaded 2-core machine), the client is cut off and every task is lost. Asked first,
    in one small request, the same wait loses nothing. Free on a local cluster.
    """
    for module in modules:
        client.run_on_scheduler(importlib.import_module, module)


def _prepared_partition(raw: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """A partition of a TLC file as ``prepare.kept_trips`` makes a month."""
    table = pa.Table.from_pandas(raw[list(columns)], preserve_index=False)
    return prepare.kept_trips(table.rename_columns(list(columns.values())))


def _with_folds(
    frame: pd.DataFrame, holdout_fraction: float | None, seed: int, partition_info: Any = None
) -> pd.DataFrame:
    """The partition's rows with their statistic fold and whether early stopping holds them out.

    Seeded by the partition's number, so the same window gets the same split.
    """
    number = 0 if partition_info is None else int(partition_info["number"])
    held = np.zeros(len(frame), dtype=bool)
    if holdout_fraction is not None and len(frame):
        held[models.holdout_split(len(frame), holdout_fraction, seed + number)[1]] = True
    return frame.assign(fold=statistic_folds(len(frame), number).astype(np.int8), holdout=held)


def read_prepared(
    paths: Sequence[Path], color: str, holdout_fraction: float | None = None, seed: int = 0
) -> tuple[dd.DataFrame, dd.Series]:
    """The kept trips of the files, read by the workers, with folds; and rows per partition read."""
    import dask.dataframe as dd
    from dask.dataframe.utils import clear_known_categories

    prepared, loaded = [], []
    for path in paths:
        columns = prepare.trip_columns(path, color)
        raw = dd.read_parquet(str(path), columns=list(columns))
        meta = clear_known_categories(_prepared_partition(raw._meta, columns))
        prepared.append(raw.map_partitions(_prepared_partition, columns, meta=meta))
        loaded.append(raw.map_partitions(len, meta=(None, "int64")))
    trips = dd.concat(prepared) if len(prepared) > 1 else prepared[0]
    meta = _with_folds(trips._meta, None, seed)
    with_folds = trips.map_partitions(_with_folds, holdout_fraction, seed, meta=meta)
    counts = dd.concat(loaded) if len(loaded) > 1 else loaded[0]
    return with_folds, counts


def _statistic_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """What the zone statistics group: zone and pair slots (-1: unknown), duration, speed, fold."""
    pickup, dropoff, distance = statistic_inputs(frame)
    duration = frame["duration"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        speed = distance / duration
    known = (pickup > 0) & (dropoff > 0)
    return pd.DataFrame(
        {
            "pickup": np.where(pickup > 0, pickup, -1).astype(np.int32),
            "dropoff": np.where(dropoff > 0, dropoff, -1).astype(np.int32),
            "pair": np.where(known, pair_slots(pickup, dropoff), -1).astype(np.int32),
            "duration": duration,
            "speed": speed,
            "fold": frame["fold"].to_numpy(),
        }
    )


def _complement_medians(rows: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per ``key`` slot: median and number of durations and speeds over all rows (``all``)
    and over each fold's complement (the other folds' rows), as the local folds have them."""
    size = _STATISTIC_KEYS[key]
    slots = rows[key].to_numpy(dtype=np.int64)
    folds = rows["fold"].to_numpy(dtype=np.uint8)
    columns: dict[str, np.ndarray] = {}
    for kind in ("duration", "speed"):
        values = rows[kind].to_numpy(dtype=np.float64)
        finite = np.isfinite(values)
        variants = complement_medians(slots[finite], values[finite], folds[finite], size)
        for fold, (median, count) in zip((_ALL, *range(STATISTIC_FOLDS)), variants, strict=True):
            columns[f"{kind}_median_{fold}"] = median
            columns[f"{kind}_count_{fold}"] = count
    table = pd.DataFrame(columns)
    table.index = table.index.astype(np.int64)
    # The slots with a finite duration or speed, as a grouped median would list them.
    return table[(table[f"duration_count_{_ALL}"] > 0) | (table[f"speed_count_{_ALL}"] > 0)]


def _medians_of(
    tables: dict[str, pd.DataFrame], months: dict[str, float], kind: str, fold: str
) -> GroupMedians:
    def slots(key: str, size: int) -> tuple[np.ndarray, np.ndarray]:
        table = tables[key]
        median, count = np.zeros(size), np.zeros(size)
        present = table[f"{kind}_count_{fold}"].to_numpy() > 0
        index = table.index.to_numpy()[present]
        median[index] = table[f"{kind}_median_{fold}"].to_numpy()[present]
        count[index] = table[f"{kind}_count_{fold}"].to_numpy()[present]
        return median, count

    return GroupMedians(
        month=months[f"{kind}_{fold}"],
        pickup=slots("pickup", ZONE_SLOTS),
        dropoff=slots("dropoff", ZONE_SLOTS),
        pair=slots("pair", PAIR_SLOTS),
    )


@dataclass(frozen=True)
class WindowStatistics:
    """The window's zone statistics, and each fold's (from the other folds' rows)."""

    whole: ZoneStatistics
    by_fold: tuple[ZoneStatistics, ...]


def zone_statistics(trips: dd.DataFrame) -> WindowStatistics:
    """The statistics ``Preprocessor.fit`` and ``out_of_fold_statistics`` compute, on the
    workers: the trips shuffled by zone or pair, each partition's medians by
    ``complement_medians``, the window's median approximate (Dask's quantile)."""
    import dask

    rows = trips.map_partitions(_statistic_rows, meta=_statistic_rows(trips._meta))
    lazy: dict[str, Any] = {}
    for key in _STATISTIC_KEYS:
        keyed = rows[rows[key] >= 0][[key, "duration", "speed", "fold"]].shuffle(on=key)
        meta = _complement_medians(keyed._meta, key)
        lazy[key] = keyed.map_partitions(_complement_medians, key, meta=meta)
    months: dict[str, Any] = {}
    for kind in ("duration", "speed"):
        months[f"{kind}_{_ALL}"] = rows[kind].quantile(0.5)
        for fold in range(STATISTIC_FOLDS):
            months[f"{kind}_{fold}"] = rows[rows["fold"] != fold][kind].quantile(0.5)
    lazy["months"] = months
    lazy["folds"] = rows["fold"].value_counts()
    (computed,) = dask.compute(lazy)
    tables = {key: computed[key] for key in _STATISTIC_KEYS}
    medians = {name: float(value) for name, value in computed["months"].items()}
    fold_rows = computed["folds"]
    n_rows = float(fold_rows.sum())

    def statistics(fold: str, scale: float = 1.0) -> ZoneStatistics:
        return ZoneStatistics.of_medians(
            _medians_of(tables, medians, "duration", fold),
            _medians_of(tables, medians, "speed", fold),
            scale,
        )

    by_fold = tuple(
        # Counts from (K-1)/K of the window, scaled so that they read like the whole window's.
        statistics(str(fold), n_rows / max(n_rows - float(fold_rows.get(fold, 0)), 1.0))
        for fold in range(STATISTIC_FOLDS)
    )
    return WindowStatistics(whole=statistics(_ALL), by_fold=by_fold)


def _model_input(
    frame: pd.DataFrame, preprocessor: Preprocessor, by_fold: Sequence[Any] | None
) -> pd.DataFrame:
    """What a local model is given for prepared trips: the training rows (``by_fold``) with
    the statistics of their fold, other rows with the window's."""
    if by_fold is None:
        return preprocessor.transform_frame(frame)
    statistics = statistics_by_fold(frame, frame["fold"].to_numpy(), by_fold)
    return preprocessor.transform_frame(frame, statistics=statistics)


def _boosting_rows(
    frame: pd.DataFrame, preprocessor: Preprocessor, by_fold: Sequence[Any] | None
) -> pd.DataFrame:
    """``_model_input`` with the categoricals as their codes (float32, NaN where missing), typed
    "c" for XGBoost, and the label (and, for training rows, whether they are held out).

    The same codes a local model splits on (the TLC zones, in a fixed order), but the matrix
    carries no category table: XGBoost refuses a worker whose partition of a categorical
    frame is empty, which a validation month in fewer partitions than workers leaves.
    """
    encoded = _model_input(frame, preprocessor, by_fold)
    columns: dict[str, Any] = {
        name: encoded[name].cat.codes.to_numpy().astype(np.float32)
        for name in encoded.columns
        if isinstance(encoded[name].dtype, pd.CategoricalDtype)
    }
    for codes in columns.values():
        codes[codes < 0] = np.nan
    columns["duration"] = frame["duration"]
    if by_fold is not None:
        columns["holdout"] = frame["holdout"]
    return encoded.assign(**columns)


def _errors(
    frame: pd.DataFrame,
    model: models.TripDurationModel,
    by_fold: Sequence[Any] | None,
) -> pd.DataFrame:
    """Sums of squared and absolute errors of the model on prepared trips, and their number."""
    predicted = model.predict_features(_model_input(frame, model.preprocessor, by_fold))
    error = frame["duration"].to_numpy() - predicted
    return pd.DataFrame(
        {
            "squared": [float(np.sum(error**2))],
            "absolute": [float(np.sum(np.abs(error)))],
            "rows": [float(len(frame))],
        }
    )


def _metrics(errors: pd.DataFrame, suffix: str = "") -> dict[str, float]:
    total = errors.sum()
    rows = max(float(total["rows"]), 1.0)
    return {
        f"rmse{suffix}": float(np.sqrt(total["squared"] / rows)),
        f"mae{suffix}": float(total["absolute"] / rows),
    }


@dataclass(frozen=True)
class TripsSeen:
    """How many rows the workers read and kept, and the first few (the model's input example)."""

    frame: pd.DataFrame  # the first rows only
    rows_loaded: int
    rows_kept: int


@dataclass(frozen=True)
class DistributedRun:
    """What a distributed run made and measured."""

    model: models.TripDurationModel
    fit: models.FitResult
    metrics: dict[str, float]
    n_features: int
    train: TripsSeen
    val: TripsSeen | None
    timings: dict[str, float]


def train_on_cluster(
    client: Client,
    config: models.TrainingConfig,
    color: str,
    train_paths: Sequence[Path],
    val_path: Path | None,
) -> DistributedRun:
    """Read, prepare and featurize the window (and the validation month) on the workers,
    boost with ``xgboost.dask``, and score on the workers: the local run's steps, on Dask."""
    import time

    import dask
    from xgboost import dask as dxgb

    booster_params = config.booster_params()
    if not config.uses_native_categorical:
        raise InvalidInputError(
            f"features {config.features!r} are one-hot encoded: distributed training takes "
            "the default model's features (zones as categories)"
        )
    timings: dict[str, float] = {}
    start = time.perf_counter()
    seed = int(booster_params.params.get("seed", 0))
    trips, loaded = read_prepared(train_paths, color, booster_params.holdout_fraction, seed)
    trips = trips.persist()
    val_trips = val_loaded = None
    if val_path is not None:
        val_trips, val_loaded = read_prepared([val_path], color)
        val_trips = val_trips.persist()
    statistics = zone_statistics(trips)
    timings["prepare"] = round(time.perf_counter() - start, 3)

    start = time.perf_counter()
    request = [name for name in REQUEST_COLUMNS if name in trips.columns]
    absent = absent_features(config.feature_set, trips[request].count().compute())
    preprocessor = Preprocessor.of_statistics(config.feature_set, statistics.whole, absent)
    shared = dask.delayed(preprocessor, traverse=False)
    by_fold = dask.delayed(statistics.by_fold, traverse=False)
    meta = _boosting_rows(trips._meta, preprocessor, statistics.by_fold)
    train_x = trips.map_partitions(_boosting_rows, shared, by_fold, meta=meta).persist()
    feature_names = [name for name in meta.columns if name not in ("duration", "holdout")]
    feature_types = [
        "c" if name in config.feature_set.categorical else "q" for name in feature_names
    ]

    def matrix(rows: dd.DataFrame, ref: Any = None) -> Any:
        return dxgb.DaskQuantileDMatrix(
            client, rows[feature_names], rows["duration"], feature_types=feature_types, ref=ref
        )

    fitted = train_x[~train_x["holdout"]] if booster_params.holdout_fraction else train_x
    dtrain = matrix(fitted)
    evals = []
    if val_trips is not None:
        val_meta = _boosting_rows(val_trips._meta, preprocessor, None)
        val_x = val_trips.map_partitions(_boosting_rows, shared, None, meta=val_meta)
        evals.append((matrix(val_x.persist(), dtrain), "validation"))
    if booster_params.holdout_fraction:
        # Last: early stopping watches it, as locally.
        evals.append((matrix(train_x[train_x["holdout"]], dtrain), "holdout"))
    timings["features"] = round(time.perf_counter() - start, 3)

    start = time.perf_counter()
    output = dxgb.train(
        client,
        dict(booster_params.params),
        dtrain,
        num_boost_round=models.boosting_rounds(booster_params, bool(evals)),
        evals=evals,
        early_stopping_rounds=booster_params.early_stopping_rounds if evals else None,
        verbose_eval=False,
    )
    fit = models.boosted(booster_params, output["booster"], output["history"], bool(evals))
    model = models.TripDurationModel(config, preprocessor, fit.estimator)
    timings["train"] = round(time.perf_counter() - start, 3)

    start = time.perf_counter()
    scored = dask.delayed(model, traverse=False)
    errors_meta = _errors(trips._meta, model, None)
    lazy: dict[str, Any] = {
        "train": trips.map_partitions(_errors, scored, by_fold, meta=errors_meta),
        "rows_loaded": loaded.sum(),
        "example": trips.head(5, npartitions=-1, compute=False),
    }
    if val_trips is not None and val_loaded is not None:
        lazy["val"] = val_trips.map_partitions(_errors, scored, None, meta=errors_meta)
        lazy["val_rows_loaded"] = val_loaded.sum()
        lazy["val_example"] = val_trips.head(5, compute=False)
    (computed,) = dask.compute(lazy)
    metrics = _metrics(computed["train"], "_train")
    if "val" in computed:
        metrics.update(_metrics(computed["val"]))
    timings["evaluate"] = round(time.perf_counter() - start, 3)
    return DistributedRun(
        model=model,
        fit=fit,
        metrics=metrics,
        n_features=len(feature_names),
        train=TripsSeen(
            computed["example"], int(computed["rows_loaded"]), int(computed["train"]["rows"].sum())
        ),
        val=None
        if "val" not in computed
        else TripsSeen(
            computed["val_example"],
            int(computed["val_rows_loaded"]),
            int(computed["val"]["rows"].sum()),
        ),
        timings=timings,
    )


class Predictor(Protocol):
    """A registered version's model: raw TLC rows in, minutes out (NaN: cannot predict)."""

    def predict_raw(self, frame: pd.DataFrame) -> Any: ...


def _squared_errors_of_both(
    frame: pd.DataFrame, versions: tuple[Predictor, Predictor], color: str
) -> pd.DataFrame:
    """Both versions' sums of squared errors on the trips that both of them predict."""
    raw = prepare.raw_example(frame, color, rows=None)
    new, champion = (np.asarray(version.predict_raw(raw), dtype=np.float64) for version in versions)
    truth = frame["duration"].to_numpy(dtype=np.float64)
    scored = np.isfinite(new) & np.isfinite(champion)
    return pd.DataFrame(
        {
            "new": [float(np.sum((truth[scored] - new[scored]) ** 2))],
            "champion": [float(np.sum((truth[scored] - champion[scored]) ** 2))],
            "rows": [float(scored.sum())],
        }
    )


def compare_on_cluster(
    client: Client, val_path: Path, color: str, new: Predictor, champion: Predictor
) -> tuple[float, float]:
    """The new version's and the champion's RMSE on the validation month's trips that both
    predict, as ``promote.compare_on`` gives them locally: the workers read the month and
    score it through both versions (the client holds the two models, not the month)."""
    import dask

    trips, _ = read_prepared([val_path], color)
    versions = dask.delayed((new, champion), traverse=False)
    meta = pd.DataFrame({"new": [0.0], "champion": [0.0], "rows": [0.0]}).iloc[:0]
    errors = trips.map_partitions(_squared_errors_of_both, versions, color, meta=meta)
    total = client.compute(errors.sum()).result()
    rows = max(float(total["rows"]), 1.0)
    return float(np.sqrt(total["new"] / rows)), float(np.sqrt(total["champion"] / rows))
