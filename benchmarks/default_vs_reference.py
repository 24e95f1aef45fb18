"""Reference preset vs the old and the new default model: validation RMSE and training time.

For every consecutive pair of real months in ../shared/data/tlc, and in any further TLC files
given as arguments (train on m, validate on m+1, per color), in one run, through the
project's own steps (prepare, features, train). Each pair's models:

- ``reference``: the course's XGBoost (``--preset reference``), stopped on the validation month;
- ``old default``: the default before issue #16 (zones from the month, distance, hour,
  weekday; stopped on the validation month), rebuilt here for comparison;
- ``default``: today's default, stopped on 5% of the training month;
- ``default, fixed rounds``: the same features and parameters, FIXED_ROUNDS rounds, no
  early stopping at all;
- ``default without the monotone constraint``: the same features and parameters, so the
  table gives the constraint's own cost;
- ``default before the constraint``: issue #16's default (learning rate 0.166, with the
  distance-derived ``expected_duration``, unconstrained): the RMSE the monotone default may
  not exceed by more than 0.5%;
- ``default, stopped on validation``: stopped on the month it is scored on, as the course
  does. Not honest; only to show what the honest stopping costs.

Training times are measured alternately, ``--repeats`` times; the table gives the median and
the minimum (the least disturbed by other load on a noisy machine), and the reference's
minimum divided by the model's. "features s" is fitting the preprocessor and encoding both
months (for the default: the zone statistics, out of fold for the training month).

    .venv/bin/python benchmarks/default_vs_reference.py [--repeats 2] [more_tripdata.parquet ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from taxi_duration import models
from taxi_duration.choices import FeatureSet
from taxi_duration.evaluate import rmse
from taxi_duration.features.preprocessor import Preprocessor
from taxi_duration.months import Month
from taxi_duration.prepare import PreparedTrips, prepare_trips
from taxi_duration.tune import tune_xgboost

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tlc"
# About where early stopping on the training month's slice stops on the development months.
FIXED_ROUNDS = 130

# Issue #16's default, before it became monotone in distance (issue #12).
UNCONSTRAINED_LEARNING_RATE = 0.166

# The default before issue #16, as it was: rebuilt here only to compare with.
OLD_DEFAULT_FEATURES = FeatureSet(
    "default",
    categorical=("PULocationID", "DOLocationID"),
    numeric=("trip_distance", "pickup_hour", "pickup_weekday"),
    native_categorical=True,
)
OLD_DEFAULT_XGBOOST = models.XGBoostParams(
    params={
        "objective": "reg:squarederror",
        "eval_metric": "rmse",
        "tree_method": "hist",
        "learning_rate": 0.2,
        "max_depth": 8,
        "min_child_weight": 50,
        "seed": 42,
    },
    num_boost_round=1000,
    early_stopping_rounds=20,
    rounds_without_validation=150,
)


@dataclass(frozen=True)
class Variant:
    name: str
    config: models.TrainingConfig
    features: FeatureSet
    # Whether the validation month is passed to training (only recorded, if the schedule
    # holds out part of the training month; else it is what stops training).
    sees_validation: bool = True


def variants() -> list[Variant]:
    reference = models.training_config(preset="reference")
    default = models.training_config()
    assert default.xgboost is not None  # the default is XGBoost
    schedule = default.xgboost
    old = models.TrainingConfig(model="xgboost", features="default", xgboost=OLD_DEFAULT_XGBOOST)
    fixed = dataclasses.replace(
        default,
        xgboost=dataclasses.replace(
            schedule, holdout_fraction=None, rounds_without_validation=FIXED_ROUNDS
        ),
    )
    unconstrained = dataclasses.replace(
        default,
        xgboost=dataclasses.replace(
            schedule,
            params={k: v for k, v in schedule.params.items() if k != "monotone_constraints"},
        ),
    )
    with_expected = dataclasses.replace(
        default.feature_set, numeric=(*default.feature_set.numeric, "expected_duration")
    )
    before = dataclasses.replace(
        unconstrained.with_xgboost_params({"learning_rate": UNCONSTRAINED_LEARNING_RATE}),
        features="default",
    )
    on_validation = dataclasses.replace(
        default, xgboost=dataclasses.replace(schedule, holdout_fraction=None)
    )
    return [
        Variant("reference", reference, reference.feature_set),
        Variant("old default", old, OLD_DEFAULT_FEATURES),
        Variant("default", default, default.feature_set),
        Variant(f"default, fixed {FIXED_ROUNDS} rounds", fixed, default.feature_set, False),
        Variant("default without the monotone constraint", unconstrained, default.feature_set),
        Variant("default before the constraint (#16)", before, with_expected),
        Variant("default, stopped on validation (not honest)", on_validation, default.feature_set),
    ]


@dataclass
class Encoded:
    preprocessor: Preprocessor
    x_train: models.Features
    x_val: models.Features
    seconds: float


def encode_pair(variant: Variant, train: PreparedTrips, val: PreparedTrips) -> Encoded:
    start = time.perf_counter()
    preprocessor = Preprocessor.fit(train.frame, variant.features)
    x_train = models.encode_training(preprocessor, train.frame, variant.config)
    x_val = models.encode(preprocessor, val.frame, variant.config)
    return Encoded(preprocessor, x_train, x_val, time.perf_counter() - start)


def fit_and_score(
    variant: Variant, encoded: Encoded, train: PreparedTrips, val: PreparedTrips
) -> tuple[float, float, int | None]:
    """Validation RMSE, training seconds and the kept round."""
    y_train, y_val = train.frame["duration"].to_numpy(), val.frame["duration"].to_numpy()
    seen = (encoded.x_val, y_val) if variant.sees_validation else (None, None)
    start = time.perf_counter()
    fit = models.fit_estimator(variant.config, encoded.x_train, y_train, *seen)
    seconds = time.perf_counter() - start
    model = models.TripDurationModel(variant.config, encoded.preprocessor, fit.estimator)
    return rmse(y_val, model.predict_features(encoded.x_val)), seconds, fit.best_iteration


def tlc_files(directory: Path, extra: list[Path]) -> dict[tuple[str, Month], Path]:
    """(color, month) -> file, for ``{color}_tripdata_YYYY-MM.parquet`` names."""
    files = {}
    for path in [*sorted(directory.glob("*_tripdata_*.parquet")), *extra]:
        color, _, month = path.stem.split("_")
        files[(color, Month.parse(month))] = path
    return files


def consecutive_pairs(files: dict[tuple[str, Month], Path]) -> list[tuple[str, Path, Path]]:
    return [
        (color, files[(color, month)], files[(color, month.next())])
        for color, month in sorted(files)
        if (color, month.next()) in files
    ]


def _months(train: Path, val: Path) -> str:
    return f"{train.stem.split('_')[-1]} → {val.stem.split('_')[-1]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("months", nargs="*", type=Path, help="further TLC parquet files")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--trials", type=int, default=0, help="also tune the default (0: no)")
    args = parser.parse_args()
    pairs = consecutive_pairs(tlc_files(args.data_dir, args.months))
    if not pairs:
        print(f"no consecutive months in {args.data_dir} or the files given", file=sys.stderr)
        return 1
    print(
        "| months | model | RMSE | below reference | rounds | features s | "
        "train s (median / min) | speed-up (min) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for color, train_path, val_path in pairs:
        train, val = prepare_trips(train_path, color), prepare_trips(val_path, color)
        chosen = variants()
        encoded = [encode_pair(variant, train, val) for variant in chosen]
        scores: list[set[float]] = [set() for _ in chosen]
        seconds: list[list[float]] = [[] for _ in chosen]
        rounds: list[int | None] = [None for _ in chosen]
        for _ in range(args.repeats):  # alternate, so that load hits all alike
            for i, variant in enumerate(chosen):
                score, took, rounds[i] = fit_and_score(variant, encoded[i], train, val)
                scores[i].add(score)
                seconds[i].append(took)
        if any(len(s) != 1 for s in scores):
            raise RuntimeError(f"training is not deterministic: {scores}")
        reference_rmse, reference_min = min(scores[0]), min(seconds[0])
        name = f"{color} {_months(train_path, val_path)}"
        for i, variant in enumerate(chosen):
            score = min(scores[i])
            below = "" if i == 0 else f"{100 * (1 - score / reference_rmse):.1f}%"
            best = rounds[i]
            kept = "" if best is None else str(best + 1)
            speed = "" if i == 0 else f"{reference_min / min(seconds[i]):.1f}x"
            print(
                f"| {name} | {variant.name} | {score:.4f} | {below} | {kept} | "
                f"{encoded[i].seconds:.2f} | {statistics.median(seconds[i]):.1f} / "
                f"{min(seconds[i]):.1f} | {speed} |",
                flush=True,
            )
        if args.trials:
            score, params = tuned(train, val, args.trials)
            below = f"{100 * (1 - score / reference_rmse):.1f}%"
            print(f"| {name} | default, tuned ({args.trials} trials) | {score:.4f} | {below} |||||")
            print(f"{name}: tuned parameters {params}", file=sys.stderr)
    return 0


def tuned(train: PreparedTrips, val: PreparedTrips, trials: int) -> tuple[float, dict[str, object]]:
    """The default's search on this pair (scored on ``val``): best RMSE and parameters."""
    default = models.training_config()
    data = models.month_pair_features(default, train.frame, val.frame)
    result = tune_xgboost(default.booster_params(), data, n_trials=trials)
    return result.best_rmse, result.best_params


if __name__ == "__main__":
    raise SystemExit(main())
