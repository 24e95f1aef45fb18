"""Every command: ``--help`` works; a bad argument is one line on stderr and exit code 2.

Complements tests/unit/test_cli_args.py (train, tune); every command the parser has must have
a case here (a new one cannot be left out). In process, with the flow runner and runtime setup
forbidden: an argument error must stop ``main`` before anything runs or is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from taxi_duration import cli

# An argument error writes nothing: the workspace is checked empty.
pytestmark = pytest.mark.fresh_store


@pytest.fixture(autouse=True)
def no_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object) -> None:
        raise AssertionError("main went past argument checking")

    monkeypatch.setattr(cli, "_configure_runtime", forbidden)
    monkeypatch.setattr(cli, "_run", forbidden)


def _commands() -> list[str]:
    parser = cli.build_parser()
    subparsers = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    return sorted(subparsers.choices)


def _exit_code(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)


def test_every_command_is_listed() -> None:
    assert {"train", "tune", "predict", "promote"} <= set(_commands())


@pytest.mark.parametrize("command", _commands())
def test_help_on_every_command(
    command: str, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code([command, "--help"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"usage: taxi-duration {command}")
    assert captured.err == ""
    assert list(workspace.iterdir()) == []


PREDICT = ["predict", "--year", "2023", "--month", "1", "--output", "out.parquet"]
BACKTEST = ["backtest", "--from", "2023-01", "--to", "2023-03"]


BAD_ARGUMENTS = [
    # train and tune (more in tests/unit/test_cli_args.py)
    (["train", "--year", "2023", "--month", "13"], "month 13"),
    (["tune", "--year", "2023", "--month", "1", "--trials", "0"], "trials 0"),
    # predict
    (["predict", "--year", "2023", "--month", "1"], "--output"),
    (["predict", "--month", "1", "--output", "o.parquet"], "--year"),
    ([*PREDICT[:4], "13", *PREDICT[5:]], "month 13"),
    (["predict", "--year", "20x3", "--month", "1", "--output", "o"], "'20x3'"),
    (["predict", "--year", "2012", "--month", "1", "--output", "o"], "2012-01"),
    ([*PREDICT, "--color", "blue"], "'blue'"),
    ([*PREDICT, "--input", "missing.parquet"], "missing.parquet does not exist"),
    ([*PREDICT, "--bogus"], "--bogus"),
    # promote
    (["promote"], "--version"),
    (["promote", "--version", "0"], "version 0"),
    (["promote", "--version", "two"], "'two'"),
    (["promote", "--version", "1", "extra"], "extra"),
    # backtest
    (["backtest", "--from", "2023-01"], "--to"),
    (["backtest", "--from", "2023-13", "--to", "2023-03"], "2023-13"),
    (["backtest", "--from", "January", "--to", "2023-03"], "January"),
    (["backtest", "--from", "2023-03", "--to", "2023-01"], "after --to"),
    (["backtest", "--from", "2023-03", "--to", "2023-03"], "one month"),
    (["backtest", "--from", "2012-01", "--to", "2012-03"], "2012-01"),
    ([*BACKTEST, "--workers", "0"], "workers 0"),
    ([*BACKTEST, "--workers", "2", "--dask-address", "tcp://x:1"], "not both"),
    ([*BACKTEST, "--model", "forest"], "'forest'"),
    ([*BACKTEST, "--preset", "reference", "--model", "linear"], "reference"),
    # monitor
    (["monitor", "--year", "2023"], "--year and --month"),
    (["monitor", "--year", "2023", "--month", "13"], "month 13"),
    (["monitor", "--from", "2023-03"], "--from and --to"),
    (["monitor", "--from", "2023-03", "--to", "2023-01"], "after --to"),
    (
        ["monitor", "--year", "2023", "--month", "3", "--from", "2023-01", "--to", "2023-02"],
        "not both",
    ),
    (
        ["monitor", "--year", "2023", "--month", "3", "--max-degradation", "-1"],
        "max_degradation -1",
    ),
    (["monitor", "--year", "2023", "--month", "3", "--color", "blue"], "'blue'"),
    # serve (more in tests/unit/test_cli_args.py)
    (["serve", "--port", "0"], "port 0"),
    (["serve", "--color", "purple"], "'purple'"),
    # stack
    (["stack"], "action"),
    (["stack", "sideways"], "'sideways'"),
    # no command at all, or an unknown one
    ([], "command"),
    (["fly"], "'fly'"),
    # cache
    (["cache", "sideways"], "'sideways'"),
]


def test_every_command_has_bad_arguments_below() -> None:
    covered = {argv[0] for argv, _ in BAD_ARGUMENTS if argv}
    assert set(_commands()) <= covered, f"no bad-argument case for {set(_commands()) - covered}"


@pytest.mark.parametrize("command", _commands())
def test_an_unknown_option_of_every_command_is_one_line_and_exit_code_2(
    command: str, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code([command, "--no-such-option"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "--no-such-option" in lines[0] or "required" in lines[0], lines[0]
    assert captured.out == ""
    assert list(workspace.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "named"),
    BAD_ARGUMENTS,
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_bad_argument_is_one_line_and_exit_code_2(
    argv: list[str], named: str, workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("taxi-duration")
    assert "error:" in lines[0]
    assert named in lines[0]
    assert "Traceback" not in captured.err
    assert captured.out == ""
    assert list(workspace.iterdir()) == []


def test_predict_input_that_is_not_parquet_is_one_line(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = workspace / "trips.parquet"
    path.write_text("not parquet\n")
    code = _exit_code([*PREDICT, "--input", str(path)])
    err = capsys.readouterr().err
    assert code != 0
    assert len(err.strip().splitlines()) == 1
    assert str(path) in err
    assert "not a readable parquet file" in err
