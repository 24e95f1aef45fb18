"""CLI argument errors: exit code 2, one line on stderr naming the bad value, nothing run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from taxi_duration import __version__, cli

# An argument error writes nothing: the workspace is checked empty.
pytestmark = pytest.mark.fresh_store

TRAIN = ["train", "--year", "2023", "--month", "1"]
TUNE = ["tune", "--year", "2023", "--month", "1"]
FHVHV_2019_01 = ["--color", "fhvhv", "--year", "2019", "--month", "1"]
# The function that runs a command once its arguments are checked.
FLOW_RUNNER = "_run"


@pytest.fixture(autouse=True)
def no_flow_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """An argument error must stop main before logging setup and the flow."""

    def forbidden(*args: object) -> None:
        raise AssertionError("main went past argument checking")

    monkeypatch.setattr(cli, "_configure_runtime", forbidden)
    monkeypatch.setattr(cli, FLOW_RUNNER, forbidden)


def _run(argv: list[str]) -> int:
    """main's exit code, whether it returns it or raises SystemExit (argparse)."""
    try:
        return cli.main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["train", "--year", "2023", "--month", "13"], "13"),
        (["train", "--year", "2023", "--month", "0"], "month 0"),
        (["train", "--year", "2005", "--month", "1"], "2005"),
        (["train", "--year", "2023", "--month", "jan"], "'jan'"),
        (["train", "--year", "twenty", "--month", "1"], "'twenty'"),
        (["train", "--year", "2023", "--month", "1.5"], "'1.5'"),
        ([*TRAIN, "--color", "blue"], "'blue'"),
        ([*TRAIN, "--model", "svm"], "'svm'"),
        ([*TRAIN, "--features", "all"], "'all'"),
        ([*TRAIN, "--preset", "fast"], "'fast'"),
        ([*TRAIN, "--val-year", "2023"], "--val-year"),
        ([*TRAIN, "--val-month", "2"], "--val-month"),
        ([*TRAIN, "--val-year", "2023", "--val-month", "13"], "13"),
        ([*TRAIN, "--no-validation", "--val-year", "2023", "--val-month", "2"], "--no-validation"),
        ([*TRAIN, "--no-validation", "--val-path", "v.parquet"], "--no-validation"),
        ([*TRAIN, "--preset", "reference", "--model", "linear"], "linear"),
        ([*TRAIN, "--preset", "reference", "--features", "separate"], "separate"),
        (["train", "--year", "2012", "--month", "5"], "2012-05"),
        (
            ["train", "--year", "2013", "--month", "8", "--val-year", "2013", "--val-month", "7"],
            "2013-07",
        ),
        (
            [
                "train",
                "--color",
                "yellow",
                "--year",
                "2009",
                "--month",
                "1",
                "--val-year",
                "2008",
                "--val-month",
                "12",
            ],
            "2008",
        ),
        ([*TRAIN, "--train-path", "missing/train.parquet"], "missing/train.parquet"),
        ([*TRAIN, "--val-path", "missing/val.parquet"], "missing/val.parquet"),
        (["train", "--year", "2023"], "--month"),
        (["train", "--month", "1"], "--year"),
        ([], "command"),
        (["fly"], "'fly'"),
        ([*TRAIN, "--bogus"], "--bogus"),
    ],
)
def test_train_argument_error(
    argv: list[str], named: str, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run(argv)
    out, err = capsys.readouterr()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.endswith("\n")
    assert err.startswith("taxi-duration")
    assert "error:" in err
    assert named in err
    assert "Traceback" not in err
    assert out == ""
    assert list(workspace.iterdir()) == []  # no data/ or mlflow/ folder


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        ([*TUNE, "--trials", "0"], "trials 0"),
        ([*TUNE, "--trials", "many"], "'many'"),
        ([*TUNE, "--jobs", "0"], "jobs 0"),
        ([*TUNE, "--timeout", "-5"], "-5"),
        ([*TUNE, "--timeout", "soon"], "'soon'"),
        ([*TUNE, "--no-validation"], "--no-validation"),
        ([*TUNE, "--model", "linear"], "--model"),
        (["tune", "--year", "2012", "--month", "5"], "2012-05"),
        ([*TUNE, "--val-year", "2023"], "--val-year"),
    ],
)
def test_tune_argument_error(
    argv: list[str], named: str, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run(argv)
    out, err = capsys.readouterr()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert named in err
    assert "Traceback" not in err
    assert out == ""
    assert list(workspace.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        ([*TRAIN, "--preset", "reference", "--model", "linear"], ("--preset reference", "xgboost")),
        (["train", "--year", "2012", "--month", "5"], ("2012-05", "2013-08", "green")),
        (
            ["train", "--year", "2013", "--month", "8", "--val-year", "2013", "--val-month", "7"],
            ("2013-07", "2013-08", "green"),
        ),
        ([*TRAIN, "--train-path", "missing/train.parquet"], ("train file", "does not exist")),
        # High-volume for-hire trips are published from 2019-02, in every command.
        (["train", *FHVHV_2019_01], ("month 2019-01", "first published fhvhv month 2019-02")),
        (["tune", *FHVHV_2019_01], ("month 2019-01", "first published fhvhv month 2019-02")),
        (
            ["predict", *FHVHV_2019_01, "--output", "p.parquet"],
            ("month 2019-01", "first published fhvhv month 2019-02"),
        ),
        (
            ["backtest", "--color", "fhvhv", "--from", "2019-01", "--to", "2019-03"],
            ("month 2019-01", "first published fhvhv month 2019-02"),
        ),
        (
            ["train", "--color", "fhvhv", "--year", "2019", "--month", "3", "--window", "3"],
            ("window 3 reaches back to 2019-01", "fhvhv month 2019-02", "allowed 1-2"),
        ),
    ],
)
def test_validation_errors_name_what_is_allowed(
    argv: list[str], named: tuple[str, ...], workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2  # returned by main, not raised by argparse
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    for text in named:
        assert text in err


def test_train_path_that_is_not_parquet(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = workspace / "train.parquet"
    path.write_text("VendorID,trip_distance\n")
    code = cli.main([*TRAIN, "--train-path", str(path)])
    err = capsys.readouterr().err
    assert code == 2  # like a missing file: the user's own input is bad
    assert len(err.splitlines()) == 1
    assert str(path) in err
    assert "Traceback" not in err
    assert sorted(p.name for p in workspace.iterdir()) == ["train.parquet"]


@pytest.mark.parametrize(
    ("argv", "usage"),
    [(["--help"], "usage: taxi-duration"), (["train", "--help"], "usage: taxi-duration train")],
)
def test_help(
    argv: list[str], usage: str, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(usage)
    if argv[0] == "train":
        for option in ("--year", "--month", "--color", "--preset", "--no-validation"):
            assert option in out
    else:
        assert "train" in out
    assert list(workspace.iterdir()) == []


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"taxi-duration {__version__}"


_SPY_ON_XGBOOST = """
import builtins, os, sys
from taxi_duration import cli
imported_with_cli = "xgboost" in sys.modules
seen = {}
real_import = builtins.__import__
def spy(name, *args, **kwargs):
    if name == "xgboost" and "policy" not in seen:
        seen["policy"] = os.environ.get("OMP_WAIT_POLICY")
    return real_import(name, *args, **kwargs)
builtins.__import__ = spy
def run_until_xgboost(spec):  # the flow, as far as the step that loads XGBoost
    from taxi_duration import models
    raise SystemExit(0)
cli._configure_runtime = lambda verbose: None
cli._run = run_until_xgboost
try:
    cli.main(["train", "--year", "2023", "--month", "1"])
finally:
    print(imported_with_cli, seen.get("policy"))
"""


def test_the_cli_sets_the_run_defaults_before_it_loads_xgboost(tmp_path: Path) -> None:
    """OpenMP reads its wait policy once, when XGBoost loads it: spinning threads made
    training 10x slower beside a competing process."""
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    result = subprocess.run(
        [sys.executable, "-c", _SPY_ON_XGBOOST], env=env, cwd=tmp_path, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert result.stdout.split() == ["False", "PASSIVE"], result.stderr


# What the CLI needs only once a run starts: loading any of them takes seconds.
HEAVY_LIBRARIES = (
    "pandas", "numpy", "pyarrow", "scipy", "sklearn", "xgboost", "prefect", "mlflow", "uvicorn",
    "starlette",
)  # fmt: skip
_IMPORTED_AFTER = """
import sys
from taxi_duration import cli
try:
    cli.main(sys.argv[1:])
except SystemExit:
    pass
print("imported:", *sorted({name.split(".")[0] for name in sys.modules}))
"""


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["serve", "--color", "purple"], "'purple'"),
        (["serve", "--port", "0"], "port 0"),
        (["serve", "--port", "65536"], "port 65536"),
        (["serve", "--port", "http"], "'http'"),
        (["serve", "--host", ""], "host ''"),
        (["serve", "--host", "a b"], "host 'a b'"),
        (["serve", "--prot", "8000"], "--port"),
    ],
)
def test_serve_argument_error(
    argv: list[str], named: str, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run(argv)
    out, err = capsys.readouterr()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert named in err
    assert "Traceback" not in err
    assert out == ""
    assert list(workspace.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["train", "--help"],
        ["tune", "--help"],
        ["backtest", "--help"],
        ["stack", "--help"],
        ["serve", "--help"],
        ["serve", "--port", "0"],
        ["train", "--year", "2023", "--yaer", "1"],
        ["train", "--year", "2023", "--month", "13"],
        [*TRAIN, "--color", "blue"],
        [*TRAIN, "--preset", "reference", "--model", "linear"],
        ["backtest", "--from", "2023-02", "--to", "2023-01"],
    ],
)
def test_help_and_argument_errors_load_no_heavy_library(argv: list[str], tmp_path: Path) -> None:
    """So that they answer at once (issue #13: --help took 1.6 s, importing XGBoost)."""
    result = subprocess.run(
        [sys.executable, "-c", _IMPORTED_AFTER, *argv], cwd=tmp_path, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    imported = set(result.stdout.splitlines()[-1].split()[1:])  # after the help, if any
    assert "taxi_duration" in imported, result.stderr
    assert imported.isdisjoint(HEAVY_LIBRARIES), imported & set(HEAVY_LIBRARIES)


def test_the_cache_commands_load_neither_prefect_nor_mlflow(tmp_path: Path) -> None:
    """``cache ls`` lists files: it answered after seconds of Prefect's logging set-up."""
    env = {**os.environ, "TAXI_DURATION_DATA_DIR": str(tmp_path / "data")}
    for action, said in (("ls", "Cached 0 prepared months"), ("clear", "Removed 0 prepared")):
        result = subprocess.run(
            [sys.executable, "-c", _IMPORTED_AFTER, "cache", action], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert said in result.stdout, result.stdout + result.stderr
        imported = set(result.stdout.splitlines()[-1].split()[1:])
        assert imported.isdisjoint({"prefect", "mlflow", "xgboost", "sklearn"}), imported


def test_every_command_prints_its_result() -> None:
    from taxi_duration.printers import PRINTERS

    assert set(PRINTERS) == set(cli.COMMANDS)
