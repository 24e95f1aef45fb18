"""Benchmark: a prepared month from the cache against preparing it, on a yellow-sized month.

In one process, on the month ``make_yellow_month.py`` makes (3,403,766 rows): ``prepare_trips``
alone, the first ``prepare_cached`` (a miss: prepare, hash the file, write the entry), then
``--repeats`` hits in fresh processes (as a re-run would: nothing in memory, the entry and the
remembered digest on disk). Prints wall and CPU seconds (the median hit) and the ratio.

    .venv/bin/python benchmarks/prepared_cache.py [--file PATH] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent

_HIT = """
import json, sys, time
from pathlib import Path
from taxi_duration.cache import PreparedCache, prepare_cached, step_code
step_code()  # import-time work of a run, not the hit's
cache = PreparedCache(Path(sys.argv[2]), 10**12)
wall, cpu = time.perf_counter(), time.process_time()
trips, hit = prepare_cached(Path(sys.argv[1]), "yellow", cache)
print(json.dumps([hit, time.perf_counter() - wall, time.process_time() - cpu, trips.rows_kept]))
"""


def _timed(call: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, help="a yellow TLC file instead of the generated one")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.file is None:
        sys.path.insert(0, str(BENCHMARKS))
        from make_yellow_month import make_yellow_month

        args.file = make_yellow_month()
    from taxi_duration.cache import PreparedCache, prepare_cached
    from taxi_duration.prepare import prepare_trips

    with tempfile.TemporaryDirectory(prefix="prepared-cache-") as folder:
        cache = PreparedCache(Path(folder), 10**12)
        prepare_wall, prepare_cpu = _timed(lambda: prepare_trips(args.file, "yellow"))
        miss_wall, miss_cpu = _timed(lambda: prepare_cached(args.file, "yellow", cache))
        hits = []
        for _ in range(args.repeats):
            done = subprocess.run(
                [sys.executable, "-c", _HIT, str(args.file), folder],
                capture_output=True,
                text=True,
                check=True,
            )
            hit, wall, cpu, rows = json.loads(done.stdout.strip().splitlines()[-1])
            if not hit:
                raise SystemExit("a repeat missed the cache")
            hits.append((wall, cpu))
        entry = cache.entries()[0]
    hit_wall = statistics.median(wall for wall, _ in hits)
    hit_cpu = statistics.median(cpu for _, cpu in hits)
    with open("/proc/loadavg") as load:
        print(f"data: {args.file} ({rows:,} trips kept); load average {load.read().split()[0]}")
    print(f"entry: {entry.size / 1e6:.0f} MB\n")
    print("| | wall s | cpu s |\n|---|---|---|")
    print(f"| prepare_trips | {prepare_wall:.2f} | {prepare_cpu:.2f} |")
    print(f"| first run: prepare, hash, write (miss) | {miss_wall:.2f} | {miss_cpu:.2f} |")
    print(f"| re-run: read back (hit, median of {len(hits)}) | {hit_wall:.3f} | {hit_cpu:.3f} |")
    print(f"| prepare / hit | {prepare_wall / hit_wall:.0f}x | {prepare_cpu / hit_cpu:.0f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
