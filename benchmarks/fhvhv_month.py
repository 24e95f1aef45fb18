"""Benchmark: one high-volume for-hire month (20 million rows) through prepare, features and the
default model's training, each stage's seconds and the process's peak memory.

The month is generated in the fhvhv layout (tests/tlc_samples.py, in chunks of 1 million rows:
the data dictionary's 24 columns, text company and base ids); an existing file of the same row
count is reused. The project's code path runs in a subprocess of its own so that its peak RSS
(interpreter and imports included) is its own; a baseline subprocess reads every column of the
same file (``pq.read_table``), which is what the project avoids by selecting columns.

Goal (issue 15): peak RSS at most 6 GB, prepare + features at most 10 s.

    .venv/bin/python benchmarks/fhvhv_month.py [--rows 20000000] [--rounds N] [--out DIR]

``--rounds`` caps the boosting rounds (default: the default model's own, up to 1000 with early
stopping); peak memory is reached when the DMatrix is built, before the first round.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
DEFAULT_OUT = BENCHMARKS / "results"
FHVHV_ROWS = 20_000_000
CHUNK_ROWS = 1_000_000
GOAL_RSS_GB = 6.0
GOAL_PREPARE_FEATURES_S = 10.0


def _peak_rss_gb() -> float:
    """GiB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def make_month(out_dir: Path, rows: int) -> Path:
    """Write (or reuse) a generated fhvhv month of ``rows`` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sys.path.insert(0, str(BENCHMARKS.parent / "tests"))
    from tlc_samples import make_trips

    from taxi_duration.months import Month

    path = out_dir / f"fhvhv_tripdata_2023-01-{rows}rows.parquet"
    if path.is_file() and pq.read_metadata(path).num_rows == rows:
        return path
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".parquet.partial")
    writer = None
    for seed, start in enumerate(range(0, rows, CHUNK_ROWS)):
        chunk = make_trips("fhvhv", Month(2023, 1), min(CHUNK_ROWS, rows - start), seed=seed)
        table = pa.Table.from_pandas(chunk, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(partial, table.schema, compression="snappy")
        writer.write_table(table)
    assert writer is not None
    writer.close()
    partial.replace(path)
    return path


def child_project(path: Path, rounds: int | None) -> dict[str, Any]:
    """prepare + features + fit of the default model, as the train flow runs them."""
    from dataclasses import replace

    from taxi_duration import models, prepare

    config = models.training_config()
    if rounds is not None:
        config = replace(config, xgboost=replace(config.booster_params(), num_boost_round=rounds))
    figures: dict[str, Any] = {}
    start = time.perf_counter()
    trips = prepare.prepare_trips(path, "fhvhv")
    figures["prepare_s"] = time.perf_counter() - start
    figures["rss_after_prepare_gb"] = _peak_rss_gb()
    _progress(figures)
    start = time.perf_counter()
    data = models.month_pair_features(config, trips.frame, None)
    figures["features_s"] = time.perf_counter() - start
    figures["rss_after_features_gb"] = _peak_rss_gb()
    _progress(figures)
    start = time.perf_counter()
    fit = models.fit_estimator(config, data.x_train, data.y_train)
    figures["fit_s"] = time.perf_counter() - start
    figures["rounds"] = None if fit.best_iteration is None else fit.best_iteration + 1
    figures["holdout_rmse"] = fit.history.get("boosting_holdout_rmse", [None])[-1]
    figures["rows_loaded"], figures["rows_kept"] = trips.rows_loaded, trips.rows_kept
    figures["peak_rss_gb"] = _peak_rss_gb()
    return figures


def _progress(figures: dict[str, Any]) -> None:
    """The figures so far, on stderr: a run on a loaded machine can take long."""
    print(json.dumps(figures), file=sys.stderr, flush=True)


def child_baseline(path: Path) -> dict[str, Any]:
    """Every column of the file, as ``pq.read_table`` gives it."""
    import pyarrow.parquet as pq

    start = time.perf_counter()
    table = pq.read_table(path)
    return {
        "read_s": time.perf_counter() - start,
        "columns": table.num_columns,
        "peak_rss_gb": _peak_rss_gb(),
    }


def _run_child(*args: str) -> dict[str, Any]:
    from taxi_duration.environment import RUN_ENVIRONMENT_DEFAULTS

    env = {**RUN_ENVIRONMENT_DEFAULTS, **os.environ}
    out = subprocess.run(
        [sys.executable, __file__, *args], env=env, check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=FHVHV_ROWS)
    parser.add_argument("--rounds", type=int, default=None, help="cap on boosting rounds")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    parser.add_argument("--child", choices=["project", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "project":
        print(json.dumps(child_project(args.file, args.rounds)))
        return 0
    if args.child == "baseline":
        print(json.dumps(child_baseline(args.file)))
        return 0

    start = time.perf_counter()
    path = make_month(args.out, args.rows)
    print(
        f"{path}: {args.rows:,} rows, {path.stat().st_size / 1e6:.0f} MB "
        f"(made or reused in {time.perf_counter() - start:.0f} s)"
    )
    baseline = _run_child("--child", "baseline", "--file", str(path))
    print(f"baseline: {baseline}", flush=True)
    rounds = [] if args.rounds is None else ["--rounds", str(args.rounds)]
    project = _run_child("--child", "project", "--file", str(path), *rounds)
    prepare_features = project["prepare_s"] + project["features_s"]
    load = os.getloadavg()[0]
    print(f"load average (1 min) at the end: {load:.1f} on {os.cpu_count()} cores")
    print("| step | seconds | peak RSS (GiB) |")
    print("|---|---:|---:|")
    print(
        f"| baseline: read every column ({baseline['columns']}) | {baseline['read_s']:.1f} "
        f"| {baseline['peak_rss_gb']:.2f} |"
    )
    print(f"| prepare | {project['prepare_s']:.1f} | {project['rss_after_prepare_gb']:.2f} |")
    print(f"| features | {project['features_s']:.1f} | {project['rss_after_features_gb']:.2f} |")
    print(
        f"| fit ({project['rounds']} rounds) | {project['fit_s']:.1f} "
        f"| {project['peak_rss_gb']:.2f} |"
    )
    print(
        f"rows {project['rows_loaded']:,} loaded, {project['rows_kept']:,} kept; "
        f"holdout RMSE {project['holdout_rmse']}"
    )
    print(
        f"prepare + features {prepare_features:.1f} s (goal {GOAL_PREPARE_FEATURES_S:g}), "
        f"{prepare_features / baseline['read_s']:.2f}x the baseline's read; "
        f"peak RSS {project['peak_rss_gb']:.2f} GiB (goal {GOAL_RSS_GB:g} GB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
