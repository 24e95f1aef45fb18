"""Wall time and peak memory of training on windows of 1, 3, 6 and 12 yellow-scale months:
in one process, and on a local Dask cluster (the client, and each worker).

    .venv/bin/python benchmarks/scale.py [--rows 3403766] [--windows 1,3,6,12] [--workers 2]

Each month is ``benchmarks/make_yellow_month.py``'s month of ``--rows`` rows (resampled real
green trips in yellow's layout), copied under 13 month names (yellow 2023-01 .. 2024-01) with
row groups of a quarter of a month. Window N trains on the N months ending at 2023-12 and
validates on 2024-01, with the default model's features and parameters but a fixed number of
rounds (``--rounds``, no early stopping), so that the cost compares across windows.

Every measurement runs in a fresh process; peak memory is the kernel's high-water mark of
resident memory (``ru_maxrss``) of that process and, on Dask, of each worker process (asked
through ``Client.run``). The local cluster's scheduler lives in the client's process. Timed:
from reading the files to the metrics (the cluster's start is not timed), as wall time and as
CPU time (this process's, plus the workers' on Dask), which a loaded machine inflates less.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))

from make_yellow_month import make_yellow_month  # noqa: E402

from taxi_duration import distributed, evaluate, models, prepare  # noqa: E402
from taxi_duration.months import Month  # noqa: E402

LAST_TRAINING = Month(2023, 12)
VALIDATION = LAST_TRAINING.next()


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """CPU time of this process so far: a loaded machine inflates it less than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def month_files(rows: int, out: Path) -> dict[Month, Path]:
    """13 yellow month files of ``rows`` rows each (one generated month, rewritten)."""
    source = make_yellow_month(out, rows)
    folder = out / f"scale-{rows}"
    months = [LAST_TRAINING]
    while len(months) < 12:
        months.insert(0, months[0].previous())
    files = {}
    for month in [*months, VALIDATION]:
        path = folder / f"yellow_tripdata_{month}.parquet"
        if not path.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            table = pq.read_table(source)
            pq.write_table(table, path.with_suffix(".partial"), row_group_size=-(-rows // 4))
            path.with_suffix(".partial").replace(path)
        files[month] = path
    return files


def config(rounds: int) -> models.TrainingConfig:
    """The default model with ``rounds`` rounds, never stopping early."""
    base = models.training_config()
    params = replace(base.booster_params(), num_boost_round=rounds, early_stopping_rounds=rounds)
    return replace(base, xgboost=params)


def run_local(train: list[Path], val: Path, rounds: int) -> dict[str, object]:
    import pandas as pd

    begun, cpu = time.perf_counter(), _cpu_seconds()
    frames = [prepare.prepare_trips(path, "yellow").frame for path in train]
    trips = pd.concat(frames, ignore_index=True)
    del frames
    val_trips = prepare.prepare_trips(val, "yellow").frame
    chosen = config(rounds)
    data = models.month_pair_features(chosen, trips, val_trips)
    fit = models.fit_estimator(chosen, data.x_train, data.y_train, data.x_val, data.y_val)
    model = models.TripDurationModel(chosen, data.preprocessor, fit.estimator)
    metrics = evaluate.model_metrics(model, data)
    return {
        "seconds": round(time.perf_counter() - begun, 1),
        "cpu_seconds": round(_cpu_seconds() - cpu, 1),
        "rows": len(trips),
        "rmse": round(metrics["rmse"], 4),
        "client_mb": round(_peak_mb()),
        "workers_mb": [],
    }


def run_dask(train: list[Path], val: Path, rounds: int, workers: int) -> dict[str, object]:
    with distributed.dask_client(None, workers) as client:
        workers_cpu = client.run(_cpu_seconds)
        begun, cpu = time.perf_counter(), _cpu_seconds()
        run = distributed.train_on_cluster(client, config(rounds), "yellow", train, val)
        seconds = time.perf_counter() - begun
        cpu = _cpu_seconds() - cpu
        peaks = client.run(_peak_mb)
        cpu += sum(client.run(_cpu_seconds).values()) - sum(workers_cpu.values())
    return {
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "rows": run.train.rows_kept,
        "rmse": round(run.metrics["rmse"], 4),
        "client_mb": round(_peak_mb()),
        "workers_mb": sorted(round(mb) for mb in peaks.values()),
        "steps": run.timings,
    }


def measure(mode: str, window: int, rows: int, rounds: int, workers: int, out: Path) -> dict:
    """One measurement, in a fresh process."""
    command = [sys.executable, __file__, "--one", mode, "--windows", str(window)]
    command += ["--rows", str(rows), "--rounds", str(rounds), "--workers", str(workers)]
    command += ["--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} window {window} failed:\n{done.stderr[-3000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=3_403_766, help="rows of one month")
    parser.add_argument("--windows", default="1,3,6,12", help="months per window")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--modes", default="local,dask")
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "results")
    parser.add_argument("--one", choices=("local", "dask"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    windows = [int(n) for n in args.windows.split(",")]
    files = month_files(args.rows, args.out)
    if args.one is not None:
        months = [LAST_TRAINING]
        while len(months) < windows[0]:
            months.insert(0, months[0].previous())
        train, val = [files[m] for m in months], files[VALIDATION]
        if args.one == "local":
            result = run_local(train, val, args.rounds)
        else:
            result = run_dask(train, val, args.rounds, args.workers)
        print(json.dumps(result))
        return 0
    print(f"load average before: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    print("| where | months | rows kept | wall s | CPU s | CPU s per M rows | client peak MB "
          "| worker peaks MB | validation RMSE |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for window in windows:
        for mode in args.modes.split(","):
            r = measure(mode, window, args.rows, args.rounds, args.workers, args.out)
            rows, seconds = int(r["rows"]), float(r["seconds"])  # type: ignore[call-overload]
            cpu = float(r["cpu_seconds"])  # type: ignore[arg-type]
            where = "one process" if mode == "local" else f"dask, {args.workers} workers"
            workers_mb = ", ".join(str(mb) for mb in r["workers_mb"]) or "-"  # type: ignore[attr-defined]
            print(
                f"| {where} | {window} | {rows:,} | {seconds:.1f} | {cpu:.1f} "
                f"| {cpu / rows * 1e6:.0f} | {r['client_mb']} | {workers_mb} | {r['rmse']} |",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
