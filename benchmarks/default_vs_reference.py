"""Reference preset vs the default model (and a tuned one): validation RMSE and training time.

For every consecutive pair of real months in ../shared/data/tlc (train on m, validate on
m+1), in one run, through the project's own steps (prepare, features, train). Training
times are measured alternately, several times; the table gives the median and the minimum
(the minimum is the least disturbed by other load on a noisy machine), and the speed-up of
the default over the reference from each.

    .venv/bin/python benchmarks/default_vs_reference.py [--repeats 3] [--trials 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from taxi_duration import models
from taxi_duration.evaluate import rmse
from taxi_duration.features import Preprocessor
from taxi_duration.months import Month
from taxi_duration.prepare import PreparedTrips, prepare_trips
from taxi_duration.tune import tune_xgboost

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tlc"


@dataclass
class Measure:
    rmse: float
    seconds: list[float]


def fit_and_score(
    config: models.TrainingConfig, train: PreparedTrips, val: PreparedTrips, repeats: int
) -> Measure:
    preprocessor = Preprocessor.fit(train.frame, config.feature_set)
    x_train = models.encode(preprocessor, train.frame, config)
    x_val = models.encode(preprocessor, val.frame, config)
    y_train, y_val = train.frame["duration"].to_numpy(), val.frame["duration"].to_numpy()
    seconds, scores = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        fit = models.fit_estimator(config, x_train, y_train, x_val, y_val)
        seconds.append(time.perf_counter() - start)
        model = models.TripDurationModel(config, preprocessor, fit.estimator)
        scores.append(rmse(y_val, model.predict_features(x_val)))
    assert max(scores) - min(scores) < 1e-9, "training is not deterministic"
    return Measure(scores[0], seconds)


def consecutive_pairs(directory: Path) -> list[tuple[Path, Path]]:
    files = {
        Month.parse(p.stem.split("_")[-1]): p for p in directory.glob("green_tripdata_*.parquet")
    }
    return [(files[m], files[m.next()]) for m in sorted(files) if m.next() in files]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=20, help="tuning trials (0: skip tuning)")
    args = parser.parse_args()
    pairs = consecutive_pairs(args.data_dir)
    if not pairs:
        print(f"no consecutive green months in {args.data_dir}", file=sys.stderr)
        return 1
    reference = models.training_config(preset="reference")
    default = models.training_config()
    rows = []
    for train_path, val_path in pairs:
        train, val = prepare_trips(train_path, "green"), prepare_trips(val_path, "green")
        ref, dflt = Measure(0, []), Measure(0, [])
        for _ in range(args.repeats):  # alternate, so that load hits both alike
            r = fit_and_score(reference, train, val, 1)
            d = fit_and_score(default, train, val, 1)
            ref = Measure(r.rmse, ref.seconds + r.seconds)
            dflt = Measure(d.rmse, dflt.seconds + d.seconds)
        tuned = ""
        if args.trials:
            preprocessor = Preprocessor.fit(train.frame, default.feature_set)
            dtrain = models.dmatrix(
                models.encode(preprocessor, train.frame, default), train.frame["duration"]
            )
            dval = models.dmatrix(
                models.encode(preprocessor, val.frame, default), val.frame["duration"]
            )
            assert default.xgboost is not None
            start = time.perf_counter()
            result = tune_xgboost(default.xgboost, dtrain, dval, n_trials=args.trials)
            tuned_config = default.with_xgboost_params(result.best_params)
            t = fit_and_score(tuned_config, train, val, 1)
            tuned = f" {t.rmse:.4f} | {t.seconds[0]:.1f} | {time.perf_counter() - start:.0f} |"
        name = f"{train_path.stem.split('_')[-1]} → {val_path.stem.split('_')[-1]}"
        med_r, med_d = statistics.median(ref.seconds), statistics.median(dflt.seconds)
        min_r, min_d = min(ref.seconds), min(dflt.seconds)
        rows.append(
            f"| {name} | {ref.rmse:.4f} | {med_r:.1f} / {min_r:.1f} | {dflt.rmse:.4f} | "
            f"{med_d:.1f} / {min_d:.1f} | {100 * (1 - dflt.rmse / ref.rmse):.1f}% | "
            f"{med_r / med_d:.1f}x / {min_r / min_d:.1f}x |{tuned}"
        )
    tuned_head = (
        f" tuned RMSE ({args.trials} trials) | tuned train s | tuning s |" if args.trials else ""
    )
    tuned_rule = "---|---|---|" if args.trials else ""
    print(
        "| months | reference RMSE | reference train s (median / min) | default RMSE | "
        "default train s (median / min) | RMSE lower by | speed-up (median / min) |" + tuned_head
    )
    print("|---|---|---|---|---|---|---|" + tuned_rule)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
