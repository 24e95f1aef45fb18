"""Backtest steps (month pairs, results table, chart) and the backtest CLI's argument errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from taxi_duration import backtest, cli
from taxi_duration.errors import BacktestFailedError, InvalidInputError
from taxi_duration.months import Month
from taxi_duration.specs import BacktestSpec


def test_month_pairs_of_a_range_cross_the_year() -> None:
    first, last = Month(2022, 11), Month(2023, 2)
    assert [(str(t), str(v)) for t, v in backtest.month_pairs(first, last)] == [
        ("2022-11", "2022-12"),
        ("2022-12", "2023-01"),
        ("2023-01", "2023-02"),
    ]
    assert backtest.months_between(first, last)[-1] == Month(2023, 2)


@pytest.mark.parametrize(
    ("start", "end", "named"),
    [
        ("2023-03", "2023-01", "after"),
        ("2023-03", "2023-03", "one month"),
        ("2023-13", "2023-14", "2023-13"),
        ("march", "2023-04", "'march'"),
    ],
)
def test_bad_ranges_are_refused(start: str, end: str, named: str) -> None:
    with pytest.raises(InvalidInputError, match=named):
        BacktestSpec.parse(start=start, end=end)


def _summary(**errors: str) -> backtest.BacktestSummary:
    results = [
        backtest.PairResult("2023-01", "2023-02", rows=100, rmse=5.5, baseline_rmse=6.0),
        backtest.PairResult("2023-02", "2023-03", error=errors.get("second")),
    ]
    if errors.get("second") is None:
        results[1] = backtest.PairResult("2023-02", "2023-03", rows=90, rmse=5.0, baseline_rmse=6.5)
    return backtest.BacktestSummary(
        color="green",
        start="2023-01",
        end="2023-03",
        model="linear",
        features="pu_do",
        preset=None,
        baseline="reference",
        results=results,
    )


def test_summary_json_table_and_failures() -> None:
    summary = _summary(second="green 2023-03 is not published at x (HTTP 404)")
    data = summary.to_dict()
    assert data["failed"] == 1
    assert {"train", "val", "rows", "rmse", "baseline_rmse", "error"} <= set(data["results"][0])
    table = summary.table()
    assert table[0]["pair"] == "2023-01 -> 2023-02"
    assert table[1]["error"].startswith("green 2023-03 is not published")
    message = backtest.failure_message(summary)
    assert message.startswith("1 of 2 pairs failed: 2023-02->2023-03: green 2023-03")


def test_failure_error_survives_pickling() -> None:
    import pickle

    summary = _summary(second="broken")
    error = pickle.loads(pickle.dumps(BacktestFailedError("boom", summary)))
    assert str(error) == "boom"
    assert error.summary.results[1].error == "broken"
    assert error.exit_code == 1


def test_chart_is_a_png(tmp_path: Path) -> None:
    path = backtest.rmse_chart(_summary(), tmp_path / "chart.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    failed = backtest.rmse_chart(_summary(second="x"), tmp_path / "failed.png")
    assert failed.stat().st_size > 0


@pytest.fixture
def no_flow_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object) -> None:
        raise AssertionError("main went past argument checking")

    monkeypatch.setattr(cli, "_configure_runtime", forbidden)
    monkeypatch.setattr(cli, "_run", forbidden)


BACKTEST = ["backtest", "--from", "2023-01", "--to", "2023-03"]


@pytest.mark.usefixtures("no_flow_runs")
@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["backtest", "--from", "2023-03", "--to", "2023-01"], "after"),
        (["backtest", "--from", "2023-01", "--to", "2023-01"], "one month"),
        (["backtest", "--from", "2023-1x", "--to", "2023-03"], "'2023-1x'"),
        (["backtest", "--from", "2023-00", "--to", "2023-03"], "2023-00"),
        (["backtest", "--to", "2023-03"], "--from"),
        ([*BACKTEST, "--workers", "0"], "workers 0"),
        ([*BACKTEST, "--workers", "2", "--dask-address", "tcp://127.0.0.1:1"], "not both"),
        ([*BACKTEST, "--model", "svm"], "'svm'"),
        ([*BACKTEST, "--preset", "reference", "--model", "linear"], "linear"),
        (["backtest", "--from", "2012-01", "--to", "2013-01"], "2012-01"),
    ],
)
def test_backtest_argument_errors_exit_2_with_one_line(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = cli.main(argv)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert named in err


def test_backtest_printer_and_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = _summary(second="green 2023-03 is not published")
    monkeypatch.setattr(cli, "_configure_runtime", lambda verbose: None)
    monkeypatch.setattr(cli, "_run", lambda *args: summary.to_dict())
    assert cli.main([*BACKTEST, "--json"]) == 1
    out = capsys.readouterr().out
    assert "failed: green 2023-03 is not published" in out
    assert '"failed": 1' in out.strip().splitlines()[-1]
