"""The monitor's statistics on real TLC months: the figures of docs/monitoring.md.

    .venv/bin/python benchmarks/monitor_real_months.py ../shared/data/tlc
    .venv/bin/python benchmarks/monitor_real_months.py --generated 3400000

For each pair of consecutive green months in the folder (2021-01 -> 02, 2023-01 -> 02), and
for the two halves of each first month, the drift of every input. Then the default model
trained on each first month (validated on the second, as ``train`` does) is judged by
``monitor.judge`` (as the flow's judge step) on every other month, with the CPU seconds of
the judgement (both months' predictions included, after the months are prepared).

``--generated ROWS``: two green months of ROWS rows like the tests' (tests/tlc_samples.py), the
default model fitted on 200,000 trips of the first; prints the seconds and the CPU seconds of
judging the second (every trip predicted, drift on the fixed-seed sample) and the process's
peak memory before and after.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from taxi_duration import checks, models, monitor
from taxi_duration.evaluate import rmse
from taxi_duration.features.preprocessor import Preprocessor
from taxi_duration.months import Month
from taxi_duration.prepare import PreparedTrips, prepare_trips

PAIRS = (("2021-01", "2021-02"), ("2023-01", "2023-02"))
COLUMNS = (*monitor.CATEGORICAL_INPUTS, *monitor.NUMERICAL_INPUTS)


def fit(train: PreparedTrips, val: PreparedTrips) -> tuple[models.TripDurationModel, float]:
    """The default model as the train flow fits it, and its validation RMSE."""
    config = models.training_config()
    preprocessor = Preprocessor.fit(train.frame, config.feature_set)
    x_train = models.encode_training(preprocessor, train.frame, config)
    x_val = models.encode(preprocessor, val.frame, config)
    y_val = val.frame["duration"].to_numpy()
    fitted = models.fit_estimator(config, x_train, train.frame["duration"].to_numpy(), x_val, y_val)
    model = models.TripDurationModel(config, preprocessor, fitted.estimator)
    return model, rmse(y_val, model.predict_features(x_val))


def drift_row(label: str, reference: PreparedTrips | object, current: object) -> str:
    ref = monitor.model_inputs(reference)  # type: ignore[arg-type]
    cur = monitor.model_inputs(current)  # type: ignore[arg-type]
    values = [monitor.column_drift(c, ref[c], cur[c], 0.1).value for c in COLUMNS]
    return f"| {label} | " + " | ".join(f"{value:.3f}" for value in values) + " |"


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_generated(rows: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tlc_samples import write_month

    with tempfile.TemporaryDirectory() as folder:
        paths = [write_month(Path(folder), "green", Month(2023, m), rows=rows) for m in (1, 2)]
        training, current = (prepare_trips(path, "green") for path in paths)
    sample = PreparedTrips(frame=training.frame.head(200_000), rows_loaded=200_000)
    model, validation_rmse = fit(sample, sample)
    print(f"generated green months: {rows:,} rows, {len(current.frame):,} kept")
    thresholds = monitor.MonitorThresholds()
    before = _peak_mib()
    wall, cpu = time.perf_counter(), time.process_time()
    report = monitor.judge(
        month="green generated",
        model_version="-",
        predict=model.predict,
        training=training.frame,
        current=current.frame,
        validation_rmse=validation_rmse,
        figures={},
        training_figures={},
        thresholds=thresholds,
    )
    print(
        f"judge: {time.perf_counter() - wall:.2f} s, {time.process_time() - cpu:.2f} CPU s; "
        f"peak memory {before:,.0f} MiB before, {_peak_mib():,.0f} MiB after; "
        f"degraded {report.degraded}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?")
    parser.add_argument("--generated", type=int, metavar="ROWS", help="time generated months")
    args = parser.parse_args()
    if args.generated:
        time_generated(args.generated)
        return
    folder = args.folder
    paths = {m: folder / f"green_tripdata_{m}.parquet" for pair in PAIRS for m in pair}
    months = {m: prepare_trips(path, "green") for m, path in paths.items()}
    published = {m: pq.ParquetFile(path).metadata.num_rows for m, path in paths.items()}

    print("| months | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for first, second in PAIRS:
        print(drift_row(f"{first} -> {second}", months[first].frame, months[second].frame))
        half = months[first].frame.sample(frac=0.5, random_state=1)
        print(drift_row(f"halves of {first}", half, months[first].frame.drop(half.index)))

    thresholds = monitor.MonitorThresholds()
    print(
        "\n| champion (validation RMSE) | month | RMSE | against validation | drifted | "
        "degraded | CPU s |"
    )
    print("|---|---|---|---|---|---|---|")
    for first, second in PAIRS:
        model, validation_rmse = fit(months[first], months[second])
        train = months[first].frame
        training_figures = checks.month_figures(published[first], train).as_dict()
        for month, trips in months.items():
            if month in (first, second):
                continue
            started = time.process_time()
            report = monitor.judge(  # what the flow's judge step does
                month=month,
                model_version="-",
                predict=model.predict,
                training=train,
                current=trips.frame,
                validation_rmse=validation_rmse,
                figures=checks.month_figures(published[month], trips.frame).as_dict(),
                training_figures=training_figures,
                thresholds=thresholds,
            )
            seconds = time.process_time() - started
            print(
                f"| trained {first} ({validation_rmse:.4f} on {second}) | {month} | "
                f"{report.rmse:.4f} | {report.degradation:+.1%} | "
                f"{len(report.drifted_columns())} of {len(report.drift)} | "
                f"{'yes' if report.degraded else 'no'} | {seconds:.2f} |"
            )


if __name__ == "__main__":
    main()
