"""How many threads XGBoost may use: the CPUs this process can actually run on.

``os.cpu_count()`` counts the machine's CPUs, not the ones a process may use: a container
limited by a CPU quota (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``) or a process pinned to
some cores (``taskset``, affinity) that starts one OpenMP thread per machine CPU has threads
waiting for each other's time slices. The available CPUs are the affinity's, bounded by the
quota (rounded down, at least 1). Parallel jobs (tune's trials, backtest's Dask workers)
share them: each gets ``available // jobs`` threads, at least 1.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_CPU_DIR = Path("/sys/fs/cgroup/cpu")


def cgroup_cpu_quota(
    cpu_max: Path = CGROUP_V2_CPU_MAX, v1_dir: Path = CGROUP_V1_CPU_DIR
) -> float | None:
    """The CPUs the cgroup's quota allows (e.g. 1.5), or None where there is no quota."""
    try:
        quota, period = cpu_max.read_text().split()[:2]  # "max 100000" or "150000 100000"
    except (OSError, ValueError):
        try:
            quota = (v1_dir / "cpu.cfs_quota_us").read_text().strip()  # -1: none
            period = (v1_dir / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        allowed, every = int(quota), int(period)
    except ValueError:  # "max"
        return None
    if allowed <= 0 or every <= 0:
        return None
    return allowed / every


def _affinity_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # macOS, Windows: no affinity to read


def available_cpus(cpu_max: Path = CGROUP_V2_CPU_MAX, v1_dir: Path = CGROUP_V1_CPU_DIR) -> int:
    """The CPUs this process may run on: its affinity, bounded by the cgroup's quota."""
    cpus = _affinity_cpus()
    quota = cgroup_cpu_quota(cpu_max, v1_dir)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def threads_per_job(threads: int | None = None, jobs: int = 1) -> int:
    """Threads for each of ``jobs`` parallel jobs: ``threads`` (all jobs' total) if given,
    else the available CPUs, shared out evenly and at least 1 each."""
    total = threads if threads is not None else available_cpus()
    return max(1, total // max(1, jobs))
