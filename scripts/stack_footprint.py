"""Processes and resident memory of a running stack, per service: its process groups.

python scripts/stack_footprint.py [STACK_DIR]    (default: .stack)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import psutil


def main(directory: Path) -> None:
    total_processes = total_rss = 0
    for pid_file in sorted((directory / "run").glob("*.json")):
        group = int(json.loads(pid_file.read_text())["pid"])
        processes = []
        for process in psutil.process_iter():
            try:
                if os.getpgid(process.pid) == group:
                    processes.append((process, process.memory_info().rss))
            except (ProcessLookupError, psutil.Error):
                continue
        rss = sum(size for _, size in processes)
        total_processes += len(processes)
        total_rss += rss
        print(f"{pid_file.stem:<15} {len(processes):>3} processes {rss / 2**20:7.0f} MiB RSS")
    print(f"{'total':<15} {total_processes:>3} processes {total_rss / 2**20:7.0f} MiB RSS")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".stack"))
