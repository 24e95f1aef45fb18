"""XGBoost's threads: the CPUs available (affinity, cgroup quota), the override, the split."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from taxi_duration import cpus, models, tune
from taxi_duration.cpus import available_cpus, cgroup_cpu_quota, threads_per_job
from taxi_duration.errors import InvalidInputError
from taxi_duration.specs import TrainSpec, TuneSpec


@pytest.fixture
def four_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process allowed on four CPUs of a larger machine."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5, 7}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)


def _cpu_max(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpu.max"
    path.write_text(text)
    return path


def test_the_affinity_is_what_counts_not_the_machine(four_cores: None, tmp_path: Path) -> None:
    no_quota = _cpu_max(tmp_path, "max 100000\n")
    assert available_cpus(no_quota, tmp_path / "v1") == 4


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("200000 100000\n", 2),  # a 2-CPU quota
        ("150000 100000\n", 1),  # 1.5 CPUs: rounded down, never oversubscribed
        ("50000 100000\n", 1),  # half a CPU: still one thread
        ("800000 100000\n", 4),  # a quota above the affinity: the affinity
    ],
)
def test_a_cgroup_v2_quota_bounds_the_cpus(
    four_cores: None, tmp_path: Path, cpu_max: str, expected: int
) -> None:
    assert available_cpus(_cpu_max(tmp_path, cpu_max), tmp_path / "v1") == expected


def test_a_cgroup_v1_quota_is_read_when_there_is_no_v2_file(
    four_cores: None, tmp_path: Path
) -> None:
    v1 = tmp_path / "cpu"
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path / "missing", v1) == 3.0
    assert available_cpus(tmp_path / "missing", v1) == 3
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")  # no quota
    assert available_cpus(tmp_path / "missing", v1) == 4


def test_the_override_wins_and_parallel_jobs_share_the_cpus(
    four_cores: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpus, "CGROUP_V2_CPU_MAX", Path("/nonexistent"))
    monkeypatch.setattr(cpus, "available_cpus", lambda: 4)
    assert threads_per_job() == 4
    assert threads_per_job(jobs=2) == 2  # tune --jobs 2: two trials of two threads
    assert threads_per_job(jobs=3) == 1
    assert threads_per_job(jobs=8) == 1  # more jobs than CPUs: one thread each, never 0
    assert threads_per_job(6) == 6  # --threads / TAXI_DURATION_THREADS
    assert threads_per_job(6, jobs=2) == 3


def test_threads_is_an_option_of_train_and_tune_checked_once() -> None:
    assert TrainSpec.parse(year=2023, month=1, threads=3).threads == 3
    assert TuneSpec.parse(year=2023, month=1, threads=2, jobs=2).threads == 2
    with pytest.raises(InvalidInputError, match="threads 0 is out of range"):
        TrainSpec.parse(year=2023, month=1, threads=0)


def test_tune_runs_each_parallel_trial_on_its_share_of_the_threads(
    green_train: pd.DataFrame, green_val: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = models.training_config()
    data = models.month_pair_features(config, green_train, green_val)
    used: list[int | None] = []
    real = tune.train_booster

    def recorded(*args: Any, nthread: int | None = None, **kwargs: Any) -> models.FitResult:
        used.append(nthread)
        return real(*args, nthread=nthread, **kwargs)

    monkeypatch.setattr(tune, "train_booster", recorded)
    base = replace(config.booster_params(), num_boost_round=3)
    tune.tune_xgboost(base, data, n_trials=2, jobs=2, threads=4)
    assert used == [2, 2]
    monkeypatch.setattr(tune, "threads_per_job", lambda threads, jobs: 99 if threads is None else 0)
    tune.tune_xgboost(base, data, n_trials=1, jobs=1)  # no override: the CPUs available
    assert used[-1] == 99


def test_the_threads_reach_xgboost(green_train: pd.DataFrame, green_val: pd.DataFrame) -> None:
    config = models.training_config()
    data = models.month_pair_features(config, green_train, green_val)
    fit = models.fit_estimator(config, data.x_train, data.y_train, data.x_val, data.y_val, 1)
    booster_config = json.loads(fit.estimator.save_config())  # type: ignore[union-attr]
    assert booster_config["learner"]["generic_param"]["nthread"] == "1"


def test_backtest_workers_share_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from taxi_duration.flows.backtest import pair_threads
    from taxi_duration.settings import Settings
    from taxi_duration.specs import BacktestSpec

    monkeypatch.setattr(cpus, "available_cpus", lambda: 4)
    local = BacktestSpec.parse(start="2023-01", end="2023-03", workers=2)
    assert pair_threads(local, Settings()) == 2
    assert pair_threads(local.model_copy(update={"threads": 8}), Settings()) == 4
    remote = BacktestSpec.parse(start="2023-01", end="2023-03", dask_address="tcp://h:1")
    assert pair_threads(remote, Settings()) is None  # the workers' own XGBoost default
