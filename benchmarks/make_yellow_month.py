"""Make a yellow-taxi-sized month (3,403,766 rows, like yellow 2023-03) from the real green trips.

The real green files in ``../shared/data/tlc`` (about 274,000 trips) are resampled with
replacement (numpy ``default_rng(2023)``), laid out as a yellow file: ``lpep_*`` become
``tpep_*``, the green-only columns (``ehail_fee``, ``trip_type``) are dropped and yellow's
``airport_fee`` is added, every other TLC column keeps its real dtype. Timestamps move into
March 2023 by whole-month offsets, so each trip keeps its exact duration. Same bytes every
time (for the same pyarrow); an existing file made by the same recipe is reused.

    .venv/bin/python benchmarks/make_yellow_month.py [--out DIR] [--rows N] [--force]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = REPO_ROOT.parent / "shared" / "data" / "tlc"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results"
YELLOW_2023_03_ROWS = 3_403_766
SEED = 2023
TARGET_MONTH = np.datetime64("2023-03-01T00:00:00", "us")
RECIPE_VERSION = 1
_METADATA_KEY = b"taxi_duration_benchmark"

# Yellow's column order; the types are those of the green files (2023-01 layout).
YELLOW_COLUMNS = (
    "VendorID",
    "tpep_pickup_datetime",
    "tpep_dropoff_datetime",
    "passenger_count",
    "trip_distance",
    "RatecodeID",
    "store_and_fwd_flag",
    "PULocationID",
    "DOLocationID",
    "payment_type",
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "improvement_surcharge",
    "total_amount",
    "congestion_surcharge",
    "airport_fee",
)
_GREEN_ONLY = ("ehail_fee", "trip_type")
_AIRPORT_ZONES = (1, 132, 138)  # EWR, JFK, LaGuardia
_AIRPORT_FEE = 1.25


def source_files(source_dir: Path = SOURCE_DIR) -> list[Path]:
    files = sorted(source_dir.glob("green_tripdata_*.parquet"))
    if not files:
        raise SystemExit(
            f"make_yellow_month: no green_tripdata_*.parquet in {source_dir}: the real TLC "
            "files are expected beside the repository (../shared/data/tlc)"
        )
    return files


def file_name(rows: int) -> str:
    suffix = "" if rows == YELLOW_2023_03_ROWS else f"-{rows}rows"
    return f"yellow_tripdata_2023-03{suffix}.parquet"


def _recipe(files: list[Path], rows: int) -> str:
    sources = [[path.name, path.stat().st_size] for path in files]
    return json.dumps({"version": RECIPE_VERSION, "seed": SEED, "rows": rows, "sources": sources})


def _month_start(path: Path) -> np.datetime64:
    year_month = path.stem.rsplit("_", 1)[-1]  # green_tripdata_2023-01 -> 2023-01
    return np.datetime64(f"{year_month}-01T00:00:00", "us")


def _read_source(path: Path, schema: pa.Schema) -> pa.Table:
    """One green file in the common green layout, its timestamps shifted into March 2023."""
    table = pq.read_table(path).drop_columns(list(_GREEN_ONLY)).cast(schema)
    shift = pa.scalar(TARGET_MONTH - _month_start(path), pa.duration("us"))
    for column in ("lpep_pickup_datetime", "lpep_dropoff_datetime"):
        index = table.schema.get_field_index(column)
        table = table.set_column(index, column, pc.add(table.column(column), shift))
    return table


def resampled_trips(files: list[Path], rows: int) -> pa.Table:
    """``rows`` trips drawn with replacement from ``files``, in the yellow layout."""
    schema = pq.read_schema(files[0])
    schema = pa.schema([field for field in schema if field.name not in _GREEN_ONLY])
    pool = pa.concat_tables([_read_source(path, schema) for path in files])
    draw = np.random.default_rng(SEED).integers(0, pool.num_rows, size=rows)
    trips = pool.take(pa.array(draw)).combine_chunks()
    trips = trips.rename_columns([name.replace("lpep_", "tpep_") for name in trips.column_names])
    airport = pc.is_in(trips.column("PULocationID"), pa.array(_AIRPORT_ZONES, pa.int64()))
    fee = pc.if_else(airport, _AIRPORT_FEE, 0.0)
    fee = pc.if_else(pc.is_null(trips.column("congestion_surcharge")), None, fee)  # as published
    trips = trips.append_column("airport_fee", fee.cast(pa.float64()))
    return trips.select(list(YELLOW_COLUMNS)).replace_schema_metadata(None)


def make_yellow_month(
    out_dir: Path = DEFAULT_OUT, rows: int = YELLOW_2023_03_ROWS, force: bool = False
) -> Path:
    """Write (or reuse) the resampled month under ``out_dir`` and return its path."""
    files = source_files()
    recipe = _recipe(files, rows)
    path = out_dir / file_name(rows)
    if path.is_file() and not force:
        try:
            metadata = pq.read_schema(path).metadata or {}
        except Exception:
            metadata = {}
        if metadata.get(_METADATA_KEY) == recipe.encode():
            return path
    out_dir.mkdir(parents=True, exist_ok=True)
    trips = resampled_trips(files, rows)
    trips = trips.replace_schema_metadata({_METADATA_KEY: recipe.encode()})
    partial = path.with_suffix(".parquet.partial")
    pq.write_table(trips, partial, row_group_size=1_048_576, compression="snappy")
    partial.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    parser.add_argument("--rows", type=int, default=YELLOW_2023_03_ROWS)
    parser.add_argument("--force", action="store_true", help="rewrite even if up to date")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be positive")
    path = make_yellow_month(args.out, args.rows, args.force)
    print(f"{path} ({pq.read_metadata(path).num_rows:,} rows, {path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
