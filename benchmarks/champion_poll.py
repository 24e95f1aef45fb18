"""What following the champion by polling its alias costs: CPU per poll, client and server.

``taxi-duration serve`` learns of a promotion by asking the registry where ``@champion``
points, every ``TAXI_DURATION_SERVE_POLL_SECONDS`` (5 by default). This measures one such
ask as the service makes it (``registry.champion_version``) against an ``mlflow server`` on
loopback over a store holding a champion: the CPU time of the asking process and of the
MLflow server per poll, and what that makes at the default interval. Quiet-machine figures
are the honest ones: CPU time, not wall time, is what is compared.

    .venv/bin/python benchmarks/champion_poll.py --store DIR [--polls 500]

DIR is a folder with ``mlflow/`` holding a green champion, as
``benchmarks/serve_latency.py --keep DIR`` leaves it.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

BIN = Path(sys.executable).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--polls", type=int, default=500)
    args = parser.parse_args()
    store = args.store.resolve()
    port = _free_port()
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{store / 'mlflow' / 'mlflow.db'}",
         "--workers", "1"],
        cwd=store, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("mlflow server did not start")
            time.sleep(0.5)
        os.environ["MLFLOW_TRACKING_URI"] = url
        from taxi_duration.settings import Settings
        from taxi_duration.tracking import registry

        settings = Settings()
        assert registry.champion_version(settings, "green") is not None, "no green champion"
        for _ in range(20):  # warm-up: connections, caches
            registry.champion_version(settings, "green")
        family = [psutil.Process(server.pid), *psutil.Process(server.pid).children(True)]
        me = psutil.Process()

        def cpu() -> tuple[float, float]:
            mine = me.cpu_times()
            theirs = sum(sum(p.cpu_times()[:2]) for p in family)
            return mine.user + mine.system, theirs

        client_before, server_before = cpu()
        started = time.perf_counter()
        for _ in range(args.polls):
            registry.champion_version(settings, "green")
        wall = time.perf_counter() - started
        client_after, server_after = cpu()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    client_ms = 1000 * (client_after - client_before) / args.polls
    server_ms = 1000 * (server_after - server_before) / args.polls
    load = os.getloadavg()[0]
    print(f"{args.polls} polls of @champion against mlflow server, load average {load:.1f}")
    print(f"  wall per poll     {1000 * wall / args.polls:6.2f} ms")
    print(f"  CPU per poll      {client_ms:6.2f} ms asking, {server_ms:6.2f} ms MLflow server")
    share = (client_ms + server_ms) / 5000
    print(f"  every 5 s         {100 * share:.3f} % of one core")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


if __name__ == "__main__":
    main()
