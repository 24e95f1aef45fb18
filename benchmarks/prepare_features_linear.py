"""Benchmark: prepare + features + linear fit, the course's way against the project's.

On a yellow-sized month (``make_yellow_month.py``: 3,403,766 rows), each approach runs in a
subprocess of its own, one after the other, so that each one's peak memory (max RSS,
interpreter and imports included) is its own:

- baseline: the course's code, as written below (pandas ``read_parquet`` of the whole file,
  per-row ``total_seconds``, ``astype(str)``, ``to_dict``, ``DictVectorizer``,
  ``LinearRegression``);
- project: the real code path, imported from the installed ``taxi_duration``
  (``prepare_trips``, ``Preprocessor``, ``models.encode``, ``models.fit_estimator``).

Both must agree: rows loaded and kept, the design matrix and target (bit for bit, by
hash), n_features, training RMSE (relative 1e-6) and intercept (0.01); the exit status is 1
when they do not.

    .venv/bin/python benchmarks/prepare_features_linear.py [--features separate|pu_do|both]
        [--rows N] [--file PATH] [--json PATH] [--cached]

With ``--cached``, the project's prepare goes through the prepared-months cache
(``taxi_duration.cache``, in a temporary folder) as a re-run of the month does: one project run
fills it, the measured run reads it back.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent
YELLOW_2023_03_ROWS = 3_403_766  # as make_yellow_month.py, not imported here: see child()
RMSE_RELATIVE_TOLERANCE = 1e-6
INTERCEPT_TOLERANCE = 0.01
STAGES = ("prepare", "features", "fit")
_CACHE_DIR_VARIABLE = "BENCHMARK_PREPARED_CACHE"  # the project child's cache folder, if any


# ---- the course's code (the baseline) ------------------------------------------------------


def course_read_dataframe(filename: str, color: str) -> Any:
    import pandas as pd

    prefix = "tpep" if color == "yellow" else "lpep"
    df: Any = pd.read_parquet(filename)
    df["duration"] = df[f"{prefix}_dropoff_datetime"] - df[f"{prefix}_pickup_datetime"]
    df.duration = df.duration.apply(lambda td: td.total_seconds() / 60)
    df = df[(df.duration >= 1) & (df.duration <= 60)]
    categorical = ["PULocationID", "DOLocationID"]
    df[categorical] = df[categorical].astype(str)
    return df


def course_features(df: Any, features: str) -> tuple[Any, Any, np.ndarray]:
    from sklearn.feature_extraction import DictVectorizer

    if features == "pu_do":
        df["PU_DO"] = df["PULocationID"] + "_" + df["DOLocationID"]
        categorical, numerical = ["PU_DO"], ["trip_distance"]
    else:  # separate: the 2025 homework
        categorical, numerical = ["PULocationID", "DOLocationID"], []
    dicts = df[categorical + numerical].to_dict(orient="records")
    dv = DictVectorizer()
    x_train = dv.fit_transform(dicts)
    y_train = df["duration"].values
    return dv, x_train, y_train


def run_baseline(path: str, color: str, features: str, timer: Timer) -> dict[str, Any]:
    from sklearn.linear_model import LinearRegression

    with timer("prepare"):
        df = course_read_dataframe(path, color)
    rows_kept = len(df)
    with timer("features"):
        _, x_train, y_train = course_features(df, features)
    with timer("fit"):
        lr = LinearRegression()
        lr.fit(x_train, y_train)
    import pyarrow.parquet as pq

    return {
        "rows_loaded": pq.read_metadata(path).num_rows,
        "rows_kept": rows_kept,
        "solver": "scikit-learn LSQR",
        "x": x_train,
        "y": y_train,
        "estimator": lr,
    }


# ---- the project's code path ---------------------------------------------------------------


def run_project(path: str, color: str, features: str, timer: Timer) -> dict[str, Any]:
    import logging

    import taxi_duration
    from taxi_duration import models
    from taxi_duration.cache import PreparedCache, prepare_cached
    from taxi_duration.features.preprocessor import Preprocessor
    from taxi_duration.prepare import prepare_trips

    fallbacks: list[str] = []

    class _Record(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            fallbacks.append(record.getMessage())

    solver_log = logging.getLogger("taxi_duration.linear")
    solver_log.setLevel(logging.INFO)
    solver_log.addHandler(_Record())

    config = models.training_config("linear", features)
    cache_dir = os.environ.get(_CACHE_DIR_VARIABLE)
    with timer("prepare"):
        if cache_dir:
            trips, _ = prepare_cached(Path(path), color, PreparedCache(Path(cache_dir), 10**12))
        else:
            trips = prepare_trips(Path(path), color)
    with timer("features"):
        preprocessor = Preprocessor.fit(trips.frame, config.feature_set)
        x_train = models.encode(preprocessor, trips.frame, config)
        y_train = trips.frame["duration"].to_numpy()
    with timer("fit"):
        fit = models.fit_estimator(config, x_train, y_train)
    return {
        "rows_loaded": trips.rows_loaded,
        "rows_kept": trips.rows_kept,
        "solver": "scikit-learn LSQR (fallback)" if fallbacks else "compact LSQR",
        "solver_note": fallbacks[-1] if fallbacks else "",
        "code": str(Path(taxi_duration.__file__).parent),
        "x": x_train,
        "y": y_train,
        "estimator": fit.estimator,
    }


# ---- measuring, in the child process -------------------------------------------------------


class Timer:
    """Wall and CPU seconds per stage."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[stage] = time.perf_counter() - wall
            self.cpu[stage] = time.process_time() - cpu


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _digest(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def _matrix_digest(x: Any) -> str:
    """Hash of a CSR matrix's canonical form: same stored entries, same digest."""
    import scipy.sparse as sp

    canonical = sp.csr_matrix(x, copy=True)
    canonical.sort_indices()
    return _digest(
        np.asarray(canonical.shape, dtype=np.int64),
        canonical.indptr.astype(np.int64),
        canonical.indices.astype(np.int64),
        canonical.data.astype(np.float64),
    )


def child(which: str, path: str, color: str, features: str) -> None:
    """Run one approach and print its report; imports only what that approach needs."""
    imports_rss = _peak_rss_mib()
    runner: Callable[[str, str, str, Timer], dict[str, Any]] = (
        run_baseline if which == "baseline" else run_project
    )
    timer = Timer()
    result = runner(path, color, features, timer)
    peak = _peak_rss_mib()  # before checking the results, which allocates
    from sklearn.metrics import root_mean_squared_error

    x, y, estimator = result.pop("x"), result.pop("y"), result.pop("estimator")
    report = {
        **result,
        "which": which,
        "features": features,
        "seconds": timer.wall,
        "cpu_seconds": timer.cpu,
        "peak_rss_mib": peak,
        "rss_before_mib": imports_rss,
        "n_features": int(x.shape[1]),
        "rmse": float(root_mean_squared_error(y, estimator.predict(x))),
        "intercept": float(estimator.intercept_),
        "x_digest": _matrix_digest(x),
        "y_digest": _digest(np.asarray(y, dtype=np.float64)),
    }
    print(json.dumps(report))


# ---- the parent: run both, compare, print --------------------------------------------------


def run_child(which: str, path: Path, color: str, features: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", which, "--features", features]
    command += ["--file", str(path), "--color", color]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{which} ({features}) failed with exit status {done.returncode}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def compare(baseline: dict[str, Any], project: dict[str, Any]) -> list[str]:
    """What disagrees (empty: the same numbers)."""
    problems = []
    for key in ("rows_loaded", "rows_kept", "n_features", "x_digest", "y_digest"):
        if baseline[key] != project[key]:
            problems.append(f"{key}: baseline {baseline[key]} != project {project[key]}")
    relative = abs(project["rmse"] - baseline["rmse"]) / baseline["rmse"]
    if not relative <= RMSE_RELATIVE_TOLERANCE:
        problems.append(f"training RMSE differs by {relative:.2e} (relative)")
    gap = abs(project["intercept"] - baseline["intercept"])
    if not gap <= INTERCEPT_TOLERANCE:
        problems.append(f"intercept differs by {gap:.4f}")
    return problems


def _total(report: dict[str, Any], key: str) -> float:
    return float(sum(report[key][stage] for stage in STAGES))


def table(baseline: dict[str, Any], project: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str]] = []

    def seconds(key: str, stage: str | None) -> tuple[float, float]:
        if stage is None:
            return _total(baseline, key), _total(project, key)
        return baseline[key][stage], project[key][stage]

    for stage in (*STAGES, None):
        label = stage or "total"
        wall = seconds("seconds", stage)
        cpu = seconds("cpu_seconds", stage)
        rows.append(
            (
                f"{label} s (cpu s)",
                f"{wall[0]:.2f} ({cpu[0]:.2f})",
                f"{wall[1]:.2f} ({cpu[1]:.2f})",
                f"{wall[0] / wall[1]:.1f}x ({cpu[0] / cpu[1]:.1f}x)",
            )
        )
    rows.append(
        (
            "peak RSS MiB",
            f"{baseline['peak_rss_mib']:.0f}",
            f"{project['peak_rss_mib']:.0f}",
            f"{baseline['peak_rss_mib'] / project['peak_rss_mib']:.1f}x",
        )
    )
    rows.append(
        (
            "  of which before start",
            f"{baseline['rss_before_mib']:.0f}",
            f"{project['rss_before_mib']:.0f}",
            "",
        )
    )
    for key in ("rows_loaded", "rows_kept", "n_features"):
        rows.append((key, f"{baseline[key]:,}", f"{project[key]:,}", ""))
    relative = (project["rmse"] - baseline["rmse"]) / baseline["rmse"]
    rows.append(
        (
            "training RMSE",
            f"{baseline['rmse']:.9f}",
            f"{project['rmse']:.9f}",
            f"rel {relative:+.1e}",
        )
    )
    gap = project["intercept"] - baseline["intercept"]
    rows.append(
        (
            "intercept",
            f"{baseline['intercept']:.6f}",
            f"{project['intercept']:.6f}",
            f"diff {gap:+.1e}",
        )
    )
    for key in ("x_digest", "y_digest"):
        same = "same" if baseline[key] == project[key] else "DIFFERENT"
        rows.append((key, baseline[key], project[key], same))
    rows.append(("fit by", baseline["solver"], project["solver"], ""))
    header = ("", "baseline (course)", "project", "baseline/project")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in [header, *rows]
    ]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", choices=["separate", "pu_do", "both"], default="both")
    parser.add_argument(
        "--rows", type=int, default=YELLOW_2023_03_ROWS, help="size of the generated month"
    )
    parser.add_argument("--file", type=Path, help="a TLC file instead of the generated month")
    parser.add_argument("--color", choices=["yellow", "green"], help="default: from the name")
    parser.add_argument("--out", type=Path, help="where the generated month is written")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--cached", action="store_true", help="project's prepare from the cache (a re-run)"
    )
    parser.add_argument("--child", choices=["baseline", "project"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        child(args.child, str(args.file), args.color, args.features)
        return 0
    if args.rows < 1:
        parser.error("--rows must be positive")
    if args.file is None:
        sys.path.insert(0, str(BENCHMARKS))
        from make_yellow_month import make_yellow_month

        kwargs = {"out_dir": args.out} if args.out else {}
        path = make_yellow_month(rows=args.rows, **kwargs)
    else:
        path = args.file
    color = args.color or ("green" if "green" in path.name else "yellow")
    print(f"data: {path} ({color}); machine: {os.cpu_count()} cpus; python {sys.executable}")

    feature_sets = ["separate", "pu_do"] if args.features == "both" else [args.features]
    results = []
    failed = False
    if args.cached:
        cache_dir = tempfile.mkdtemp(prefix="prepared-cache-")
        os.environ[_CACHE_DIR_VARIABLE] = cache_dir
        run_child("project", path, color, feature_sets[0])  # fills the cache
        print(f"project's prepare: from the cache in {cache_dir} (filled by one run first)")
    for features in feature_sets:
        baseline = run_child("baseline", path, color, features)
        project = run_child("project", path, color, features)
        problems = compare(baseline, project)
        failed = failed or bool(problems)
        print(f"\n## features {features}\n")
        print(table(baseline, project))
        print(f"\nproject code: {project['code']}")
        if project["solver_note"]:
            print(f"project fit: {project['solver_note']}")
        for problem in problems:
            print(f"DISAGREE: {problem}")
        results.append({"features": features, "baseline": baseline, "project": project})
    if args.json:
        args.json.write_text(json.dumps({"data": str(path), "results": results}, indent=2))
    if args.cached:
        shutil.rmtree(cache_dir, ignore_errors=True)
    if failed:
        print("\nFAILED: the project's numbers differ from the baseline's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
