"""The data checks' figures of real TLC months, and how long the checks take on a big month.

    .venv/bin/python benchmarks/check_figures.py DIR [DIR ...]
    .venv/bin/python benchmarks/check_figures.py --generated 5000000

Prints a markdown table of every ``{color}_tripdata_{YYYY-MM}.parquet`` in the folders given:
the figures ``taxi_duration.checks`` checks (docs/checks.md), each month prepared as a run
prepares it, and whether it passes the default thresholds. The unknown zones are split into
the TLC's 264/265 and missing or off-list ids (what the one figure counts together).

``--generated ROWS``: a green month of ROWS rows like the tests' (tests/tlc_samples.py), in a
temporary folder; prints the seconds of the figures, of the schema and of ``check_month``
(best of 3).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from taxi_duration import checks
from taxi_duration.errors import DataCheckError
from taxi_duration.months import Month
from taxi_duration.prepare import prepare_trips

FILE_NAME = re.compile(r"^(green|yellow|fhvhv)_tripdata_(\d{4}-\d{2})\.parquet$")
HEADER = (
    "| month | published | kept | kept share | max null share | zero distance | "
    "over 100 mi | unknown zone | of which 264/265 | passes |"
)


def month_files(folders: list[Path]) -> list[tuple[str, Path]]:
    """(color, path) of each TLC month file in the folders, sorted by name."""
    found = []
    for folder in folders:
        for path in sorted(folder.glob("*_tripdata_*.parquet")):
            match = FILE_NAME.match(path.name)
            if match:
                found.append((match.group(1), path))
    return found


def unlisted_zone_share(frame: pd.DataFrame) -> float:
    """Share of trips with a pickup or dropoff zone 264 or 265 (TLC's own unknowns)."""
    either = np.zeros(len(frame), dtype=bool)
    for column in checks.ZONE_COLUMNS:
        ids = frame[column].astype("float64").to_numpy()
        either |= (ids == 264) | (ids == 265)
    return float(either.mean())


def row(color: str, path: Path) -> str:
    label = f"{color} {FILE_NAME.match(path.name).group(2)}"  # type: ignore[union-attr]
    published = pq.read_metadata(path).num_rows
    frame = prepare_trips(path, color).frame
    figures = checks.month_figures(published, frame)
    nulls = max(figures.null_shares[column] for column in checks.CORE_COLUMNS)
    try:
        checks.check_month(label, published, frame)
        verdict = "yes"
    except DataCheckError as error:
        verdict = f"no: {error}"
    return (
        f"| {label} | {published:,} | {figures.kept_rows:,} | {figures.kept_share:.4f} "
        f"| {nulls:.4f} | {figures.zero_distance_share:.4f} "
        f"| {figures.long_distance_share:.6f} | {figures.unknown_zone_share:.4f} "
        f"| {unlisted_zone_share(frame):.4f} | {verdict} |"
    )


def best_of(repeats: int, call: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def time_generated(rows: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tlc_samples import write_month

    with tempfile.TemporaryDirectory() as folder:
        path = write_month(Path(folder), "green", Month(2023, 1), rows=rows)
        frame = prepare_trips(path, "green").frame
    print(f"generated green month: {rows:,} rows, {len(frame):,} kept")
    print(f"month_figures: {best_of(3, lambda: checks.month_figures(rows, frame)):.3f} s")
    print(f"schema: {best_of(3, lambda: checks.schema_failures(frame)):.3f} s")
    seconds = best_of(3, lambda: checks.check_month("green generated", rows, frame))
    print(f"check_month (schema, figures, thresholds): {seconds:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", type=Path, help="folders of TLC parquet files")
    parser.add_argument("--generated", type=int, metavar="ROWS", help="time a generated month")
    args = parser.parse_args()
    if args.folders:
        print(HEADER)
        print("|---" * (HEADER.count("|") - 1) + "|")
        for color, path in month_files(args.folders):
            print(row(color, path))
    if args.generated:
        time_generated(args.generated)


if __name__ == "__main__":
    main()
