"""``taxi-duration serve`` against ``mlflow models serve`` on the same champion, in one run.

A bounded load on loopback: the real green months 2023-01 (training) and 2023-02 (the trips
sent) of ../shared/data/tlc; the default model trained once by ``taxi-duration train`` into a
scratch store (or an existing store with ``--store``); both services started as processes on
127.0.0.1, each serving ``models:/nyc-taxi-duration-green@champion``. Then, for each service
in turn and for ``--rounds`` rounds (the best round of each is kept):

1. one-trip requests: ``--requests`` ``POST /invocations`` with one trip in
   ``dataframe_records`` from ``--clients`` concurrent clients (after a warm-up): p50 and p99
   latency, and requests per second;
2. batches: ``--batches`` requests of 2,000 trips each, from the same clients: p50 and p99
   latency, and trips per second.

The two services get the same bodies, prepared before timing. The clients run in this
process and share the machine's cores with the server: say how loaded the machine was.

    .venv/bin/python benchmarks/serve_latency.py [--requests 2000] [--clients 4]
        [--batches 40] [--rounds 2] [--store DIR] [--keep DIR] [--quiet]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

BENCHMARKS = Path(__file__).resolve().parent
DATA_DIR = BENCHMARKS.parents[1] / "shared" / "data" / "tlc"
TRAIN_FILE = DATA_DIR / "green_tripdata_2023-01.parquet"
TRIPS_FILE = DATA_DIR / "green_tripdata_2023-02.parquet"
BIN = Path(sys.executable).parent
MODEL_URI = "models:/nyc-taxi-duration-green@champion"
BATCH_TRIPS = 2_000
QUIET = False


def say(text: str) -> None:
    if not QUIET:
        print(text, file=sys.stderr, flush=True)


def train(store: Path) -> None:
    """The default model, trained on 2023-01 and validated on 2023-02, made champion."""
    say(f"training the default model into {store} ...")
    subprocess.run(
        [str(BIN / "taxi-duration"), "train", "--year", "2023", "--month", "1",
         "--train-path", str(TRAIN_FILE), "--val-path", str(TRIPS_FILE), "--quiet"],
        cwd=store, env=_env(store), check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def _env(store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(
        TAXI_DURATION_MLFLOW_DIR=str(store / "mlflow"),
        TAXI_DURATION_DATA_DIR=str(store / "data"),
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # uvicorn for mlflow
    )
    return env


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running(name: str, command: list[str], store: Path, url: str) -> Iterator[str]:
    log = (store / f"{name}.log").open("wb")
    env = _env(store)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow' / 'mlflow.db'}"
    process = subprocess.Popen(
        command, cwd=store, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{url}/ping", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start: see {store / (name + '.log')}")
            time.sleep(0.5)
        say(f"{name} answers on {url}")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        log.close()


def load(url: str, bodies: list[bytes], clients: int) -> tuple[list[float], float]:
    """Each body posted once, by ``clients`` threads: latencies (s) and the wall time."""
    latencies: list[float] = []
    failures: list[str] = []
    chunks = [bodies[i::clients] for i in range(clients)]

    def client(chunk: list[bytes]) -> None:
        headers = {"Content-Type": "application/json"}
        with httpx.Client(timeout=120) as session:
            for body in chunk:
                started = time.perf_counter()
                answer = session.post(f"{url}/invocations", content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                if answer.status_code != 200:
                    failures.append(answer.text[:300])

    threads = [threading.Thread(target=client, args=(chunk,)) for chunk in chunks]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} requests to {url} failed, first: {failures[0]}")
    return latencies, wall


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(url: str, one_trip: list[bytes], batches: list[bytes], clients: int) -> dict[str, Any]:
    load(url, one_trip[:100], clients)  # warm-up: connections, caches, the first predictions
    load(url, batches[:2], clients)
    latencies, wall = load(url, one_trip, clients)
    batch_latencies, batch_wall = load(url, batches, clients)
    return {
        "one_trip_p50_ms": 1000 * statistics.median(latencies),
        "one_trip_p99_ms": 1000 * _percentile(latencies, 0.99),
        "requests_per_s": len(one_trip) / wall,
        "batch_p50_ms": 1000 * statistics.median(batch_latencies),
        "batch_p99_ms": 1000 * _percentile(batch_latencies, 0.99),
        "trips_per_s": len(batches) * BATCH_TRIPS / batch_wall,
    }


def bodies(requests: int, batches: int) -> tuple[list[bytes], list[bytes]]:
    """The same request bodies for both services: real trips of 2023-02 as JSON objects."""
    columns = ["lpep_pickup_datetime", "PULocationID", "DOLocationID", "trip_distance",
               "VendorID", "trip_type", "passenger_count"]  # fmt: skip
    trips = pd.read_parquet(TRIPS_FILE, columns=columns).dropna()
    trips = trips[(trips["trip_distance"] > 0) & (trips["trip_distance"] <= 100)]
    trips = trips.sample(n=requests + batches * BATCH_TRIPS, random_state=0, replace=True)
    trips["lpep_pickup_datetime"] = trips["lpep_pickup_datetime"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    records = json.loads(trips.to_json(orient="records"))
    one = [json.dumps({"dataframe_records": [record]}).encode() for record in records[:requests]]
    rest = records[requests:]
    many = [
        json.dumps({"dataframe_records": rest[i * BATCH_TRIPS : (i + 1) * BATCH_TRIPS]}).encode()
        for i in range(batches)
    ]
    return one, many


def main() -> None:
    global QUIET
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--store", type=Path, help="a folder with mlflow/ holding a champion")
    parser.add_argument("--keep", type=Path, help="train into this folder and keep it")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args()
    QUIET = args.quiet
    if not TRIPS_FILE.is_file():
        raise SystemExit(f"real TLC months not found in {DATA_DIR}")
    scratch = Path(tempfile.mkdtemp(prefix="serve-latency-"))
    store = (args.store or args.keep or scratch).resolve()
    store.mkdir(parents=True, exist_ok=True)
    try:
        if args.store is None:
            train(store)
        one_trip, batches = bodies(args.requests, args.batches)
        ours_port, mlflow_port = _free_port(), _free_port()
        services = {
            "taxi-duration serve": [str(BIN / "taxi-duration"), "serve", "--quiet",
                                    "--port", str(ours_port)],
            "mlflow models serve": [str(BIN / "mlflow"), "models", "serve", "-m", MODEL_URI,
                                    "-h", "127.0.0.1", "-p", str(mlflow_port),
                                    "--env-manager", "local"],
        }  # fmt: skip
        ports = {"taxi-duration serve": ours_port, "mlflow models serve": mlflow_port}
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in services}
        with contextlib.ExitStack() as stack:
            urls = {
                name: stack.enter_context(
                    running(name.split()[0], command, store, f"http://127.0.0.1:{ports[name]}")
                )
                for name, command in services.items()
            }
            for round_ in range(args.rounds):
                for name, url in urls.items():
                    say(f"round {round_ + 1}: {name} ...")
                    results[name].append(measure(url, one_trip, batches, args.clients))
        report(results, args)
    finally:
        if args.keep is None and args.store is None:
            shutil.rmtree(scratch, ignore_errors=True)


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    """The best round of each service: lowest latencies, highest rates."""
    print(
        f"{args.requests} one-trip requests and {args.batches} batches of {BATCH_TRIPS:,} trips "
        f"from {args.clients} clients, best of {args.rounds} rounds"
    )
    print(f"{'service':<22}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}"
          f"{'batch p50':>11}{'batch p99':>11}{'trips/s':>10}")  # fmt: skip
    for name, rounds in results.items():
        best = {
            key: (max if key.endswith("_per_s") else min)(r[key] for r in rounds)
            for key in rounds[0]
        }
        print(
            f"{name:<22}{best['one_trip_p50_ms']:>9.2f}{best['one_trip_p99_ms']:>9.2f}"
            f"{best['requests_per_s']:>9.0f}{best['batch_p50_ms']:>11.1f}"
            f"{best['batch_p99_ms']:>11.1f}{best['trips_per_s']:>10,.0f}"
        )


if __name__ == "__main__":
    main()
