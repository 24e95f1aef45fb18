"""Wall time of an 8-pair backtest (9 generated months) on a local Dask cluster: 1 vs 2 workers.

    .venv/bin/python benchmarks/backtest_workers.py [--rows 100000] [--model linear]

Months are generated like the tests' (tests/tlc_samples.py) and served from 127.0.0.1.
Each run gets its own data folder and MLflow store, so nothing is taken from Prefect's cache.
Prints a markdown table: wall time of the flow call (cluster start included), the flow's own
time, and the speed-up over 1 worker.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tlc_samples import write_month

from taxi_duration.backtest import month_pairs, months_between
from taxi_duration.months import Month

FIRST, LAST = Month(2023, 1), Month(2023, 9)  # 9 months, 8 pairs


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(directory: Path) -> str:
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--model", default="linear", choices=["linear", "xgboost"])
    parser.add_argument("--features", default="pu_do")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    options = parser.parse_args()

    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    root = Path(tempfile.mkdtemp(prefix="backtest-bench-"))
    # Its own ephemeral Prefect database, and no telemetry.
    os.environ.setdefault("PREFECT_HOME", str(root / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    for month in months_between(FIRST, LAST):
        write_month(root / "tlc", "green", month, rows=options.rows)
    os.environ["TAXI_DURATION_DATA_URL"] = serve(root / "tlc")

    from taxi_duration.flows.backtest import backtest
    from taxi_duration.specs import BacktestSpec

    timings: dict[int, tuple[float, float]] = {}
    for workers in options.workers:
        run_dir = root / f"workers-{workers}"
        os.environ["TAXI_DURATION_DATA_DIR"] = str(run_dir / "data")
        os.environ["TAXI_DURATION_MLFLOW_DIR"] = str(run_dir / "mlflow")
        start = time.perf_counter()
        summary = backtest(
            BacktestSpec.parse(
                start=str(FIRST),
                end=str(LAST),
                model=options.model,
                features=options.features,
                workers=workers,
            )
        )
        wall = time.perf_counter() - start
        assert len(summary.results) == len(month_pairs(FIRST, LAST))
        timings[workers] = (wall, summary.seconds or wall)
        print(f"{workers} worker(s): {wall:.1f} s", file=sys.stderr)

    base = timings[options.workers[0]][0]
    print(
        f"\n8-pair backtest, green {FIRST}..{LAST}, {options.rows:,} generated rows a month, "
        f"model {options.model} ({options.features}) + reference baseline, "
        f"{os.cpu_count()} CPUs\n"
    )
    print("| workers | wall time (s) | flow time (s) | speed-up |")
    print("|---:|---:|---:|---:|")
    for workers, (wall, flow_time) in timings.items():
        print(f"| {workers} | {wall:.1f} | {flow_time:.1f} | {base / wall:.2f}x |")


if __name__ == "__main__":
    main()
