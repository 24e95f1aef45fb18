"""The command specs: every rule checked once, before anything runs, as one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from tlc_samples import write_month

from taxi_duration import cli
from taxi_duration.errors import InvalidInputError
from taxi_duration.months import Month
from taxi_duration.specs import BacktestSpec, MonitorSpec, PredictSpec, TrainSpec, TuneSpec


def test_default_validation_is_the_next_month() -> None:
    spec = TrainSpec.parse(year=2023, month=1)
    assert (spec.train_month, spec.validation_month) == (Month(2023, 1), Month(2023, 2))


def test_december_validates_on_january() -> None:
    assert TrainSpec.parse(color="yellow", year=2022, month=12).validation_month == Month(2023, 1)


def test_explicit_validation_month() -> None:
    assert TrainSpec.parse(year=2023, month=3, val_year=2023, val_month=1).validation_month == (
        Month(2023, 1)
    )


def test_no_validation() -> None:
    assert TrainSpec.parse(year=2023, month=1, validation=False).validation_month is None


def test_first_published_months_are_allowed() -> None:
    assert TrainSpec.parse(year=2013, month=8).train_month == Month(2013, 8)
    assert TrainSpec.parse(color="yellow", year=2009, month=1).train_month == Month(2009, 1)


def test_a_spec_without_months_is_a_scheduled_run() -> None:
    spec = TrainSpec()
    assert spec.train_month is None
    chosen = spec.with_months(Month(2023, 1), Month(2023, 2))
    assert (chosen.train_month, chosen.validation_month) == (Month(2023, 1), Month(2023, 2))
    assert spec.with_months(Month(2023, 1), None).validation_month == Month(2023, 2)


def test_a_window_is_the_months_ending_at_the_training_month_oldest_first() -> None:
    assert TrainSpec.parse(year=2023, month=2).training_months() == [Month(2023, 2)]
    spec = TrainSpec.parse(year=2023, month=2, window=3)
    assert spec.training_months() == [Month(2022, 12), Month(2023, 1), Month(2023, 2)]
    assert spec.validation_month == Month(2023, 3)
    assert TuneSpec.parse(year=2013, month=9, window=2).training_months()[0] == Month(2013, 8)


def test_specs_are_frozen() -> None:
    spec = TrainSpec.parse(year=2023, month=1)
    with pytest.raises(Exception, match="frozen"):
        spec.year = 2022  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"year": None, "month": 1}, "year and month go together"),
        ({"year": 2023, "month": None}, "year and month go together"),
        ({"month": 13}, "month 13 is out of range: allowed 1-12"),
        ({"month": 0}, "month 0 is out of range"),
        ({"color": "blue"}, "color 'blue' is unknown: allowed are"),
        ({"year": 2012, "month": 5}, "2012-05.*2013-08"),
        ({"year": 2013, "month": 8, "val_year": 2013, "val_month": 7}, "2013-07.*2013-08"),
        ({"color": "yellow", "year": 2008, "month": 12}, "2008-12.*2009-01"),
        ({"year": 2999, "month": 1}, "2999-01 is in the future: the newest month is"),
        ({"val_year": 2999, "val_month": 1}, "validation month 2999-01 is in the future"),
        ({"val_year": 2023}, "--val-year and --val-month"),
        ({"val_month": 2}, "--val-year and --val-month"),
        ({"val_year": 2023, "val_month": 13}, "month 13"),
        ({"validation": False, "val_year": 2023, "val_month": 2}, "--no-validation"),
        ({"validation": False, "val_path": "v.parquet"}, "--no-validation"),
        ({"model": "svm"}, "model 'svm' is unknown: allowed are xgboost, linear"),
        ({"model": "XGBoost"}, "'XGBoost'"),
        ({"features": "nope"}, "features 'nope' is unknown: allowed are default, pu_do"),
        ({"preset": "fast"}, "preset 'fast' is unknown: allowed are reference"),
        ({"preset": "reference", "model": "linear"}, "--model linear conflicts with --preset"),
        ({"min_improvement": -0.5}, "min_improvement -0.5 is out of range: 0 or more"),
        ({"min_improvement": "lots"}, "min_improvement 'lots' is invalid"),
        ({"bogus": 1}, "bogus 1 is invalid"),
        ({"window": 0}, "window 0 is out of range: allowed 1-60 months"),
        (
            {"year": 2013, "month": 9, "window": 3},
            "window 3 reaches back to 2013-07, before the first published green month 2013-08: "
            "allowed 1-2 for training month 2013-09",
        ),
        ({"window": 2, "val_year": 2022, "val_month": 12}, "2022-12 is inside the training window"),
        ({"window": 2, "train_path": "t.parquet"}, "window 2 needs 2 months; --train-path"),
    ],
)
def test_invalid_train_specs(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidInputError, match=named):
        TrainSpec.parse(**{"year": 2023, "month": 1, **kwargs})


def test_the_current_month_is_allowed_and_the_next_is_not() -> None:
    now = Month.current()
    assert TrainSpec.parse(year=now.year, month=now.month, validation=False).train_month == now
    later = now.next()
    with pytest.raises(InvalidInputError, match=f"{later} is in the future"):
        TrainSpec.parse(year=later.year, month=later.month, validation=False)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"trials": 0}, "trials 0 is out of range: 1 or more"),
        ({"jobs": 0}, "jobs 0 is out of range: allowed 1-64"),
        ({"timeout": 0}, "timeout 0 is out of range: more than 0 seconds"),
        ({"seed": -1}, "seed -1"),
        ({"year": None, "month": None}, "training month is required"),
        ({"validation": False}, "validation False is invalid"),  # tune always validates
    ],
)
def test_invalid_tune_specs(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidInputError, match=named):
        TuneSpec.parse(**{"year": 2023, "month": 1, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"output": " "}, "output '' is empty"),
        ({"month": 13}, "month 13"),
        ({"year": 2999}, "scored month 2999-01 is in the future"),
        ({"input_path": "missing.parquet"}, "input file missing.parquet does not exist"),
    ],
)
def test_invalid_predict_specs(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidInputError, match=named):
        PredictSpec.parse(**{"year": 2023, "month": 1, "output": "p.parquet", **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"month": None}, "--year and --month \\(year, month\\) go together"),
        ({"year": None}, "--year and --month \\(year, month\\) go together"),
        ({"month": 13}, "month 13"),
        ({"year": 2999}, "monitored month 2999-03 is in the future"),
        ({"color": "blue"}, "color 'blue' is unknown"),
        ({"max_degradation": -0.5}, "max_degradation -0.5 is out of range: 0 or more"),
        ({"start": "2023-01", "end": "2023-02"}, "give one, not both"),
        ({"year": None, "month": None, "start": "2023-01"}, "--from and --to"),
        ({"year": None, "month": None, "start": "2023-03", "end": "2023-01"}, "is after --to"),
    ],
)
def test_invalid_monitor_specs(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidInputError, match=named):
        MonitorSpec.parse(**{"year": 2023, "month": 3, **kwargs})


def test_a_monitor_spec_without_a_month_is_a_scheduled_run() -> None:
    assert MonitorSpec().monitored_month is None
    assert str(MonitorSpec.parse(year=2023, month=3).monitored_month) == "2023-03"
    assert MonitorSpec().max_degradation == 0.1
    ranged = MonitorSpec.parse(start="2022-11", end="2023-02")
    assert [str(month) for month in ranged.monitored_range() or []] == [
        "2022-11",
        "2022-12",
        "2023-01",
        "2023-02",
    ]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"end": "2999-01"}, "last month 2999-01 is in the future"),
        ({"workers": 0}, "workers 0 is out of range"),
        ({"workers": 2, "dask_address": "tcp://127.0.0.1:1"}, "not both"),
        ({"preset": "reference", "features": "separate"}, "separate conflicts with --preset"),
    ],
)
def test_invalid_backtest_specs(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidInputError, match=named):
        BacktestSpec.parse(**{"start": "2023-01", "end": "2023-03", **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"workers": 0}, "workers 0 is out of range"),
        ({"workers": 2, "dask_address": "tcp://127.0.0.1:1"}, "not both"),
        ({"workers": 2, "model": "linear"}, "--model linear --features default does not train on"),
        ({"dask_address": "tcp://h:1", "preset": "reference"}, "--features pu_do does not train"),
    ],
)
def test_invalid_distributed_train_specs(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidInputError, match=named):
        TrainSpec.parse(**{"year": 2023, "month": 1, **kwargs})


def test_a_train_spec_is_on_dask_with_a_cluster_given() -> None:
    assert not TrainSpec.parse(year=2023, month=1).on_dask
    assert TrainSpec.parse(year=2023, month=1, workers=2).on_dask
    assert TrainSpec.parse(year=2023, month=1, dask_address="tcp://127.0.0.1:8786").on_dask


@pytest.mark.parametrize(("option", "role"), [("train_path", "train"), ("val_path", "validation")])
def test_missing_local_file(option: str, role: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing.parquet"
    with pytest.raises(InvalidInputError) as caught:
        TrainSpec.parse(year=2023, month=1, **{option: str(missing)})
    assert str(missing) in str(caught.value)
    assert role in str(caught.value)


def test_local_files(tmp_path: Path) -> None:
    train = write_month(tmp_path, "green", Month(2023, 1), rows=20)
    val = write_month(tmp_path, "green", Month(2023, 2), rows=20)
    spec = TrainSpec.parse(year=2023, month=1, train_path=str(train), val_path=str(val))
    assert (spec.train_file, spec.val_file) == (train, val)


def test_local_file_not_parquet_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    path.write_text("not parquet")
    with pytest.raises(InvalidInputError, match="not a readable parquet file") as caught:
        TrainSpec.parse(year=2023, month=1, train_path=str(path))
    assert caught.value.exit_code == 2


def test_allowed_values_reach_the_ui_schema() -> None:
    """Prefect renders a flow's parameter from this schema: the choices are listed."""
    properties = TrainSpec.model_json_schema()["properties"]
    assert properties["color"]["enum"] == ["yellow", "green", "fhvhv"]
    models_allowed = [option.get("enum") for option in properties["model"]["anyOf"]]
    assert ["xgboost", "linear"] in models_allowed


# ---- from arguments to spec, through the real parser (no stub) ---------------------------


def _spec(argv: list[str]) -> object:
    return cli.spec_from_args(cli.build_parser().parse_args(argv))


def test_train_arguments_map_to_the_spec(tmp_path: Path) -> None:
    train = write_month(tmp_path, "yellow", Month(2022, 12), rows=20)
    argv = [
        *("train", "--color", "yellow", "--year", "2022", "--month", "12"),
        *("--model", "linear", "--features", "pu_do", "--min-improvement", "0.25"),
        *("--train-path", str(train), "--no-validation"),
    ]
    assert _spec(argv) == TrainSpec(
        color="yellow",
        year=2022,
        month=12,
        model="linear",
        features="pu_do",
        min_improvement=0.25,
        train_path=str(train),
        validation=False,
    )


def test_no_register_is_the_register_field_off() -> None:
    spec = _spec(["train", "--year", "2023", "--month", "1", "--no-register"])
    assert spec == TrainSpec(year=2023, month=1, register_version=False)


def test_skip_checks_is_a_switch_off_by_default_on_train_tune_and_backtest() -> None:
    months = {
        "train": ["--year", "2023", "--month", "1"],
        "tune": ["--year", "2023", "--month", "1"],
        "backtest": ["--from", "2023-01", "--to", "2023-03"],
    }
    for command, arguments in months.items():
        assert _spec([command, *arguments]).skip_checks is False  # type: ignore[attr-defined]
        skipped = _spec([command, *arguments, "--skip-checks"])
        assert skipped.skip_checks is True, command  # type: ignore[attr-defined]
    assert _spec(["train", *months["train"], "--skip-checks"]) == TrainSpec(
        year=2023, month=1, skip_checks=True
    )


def test_defaults_come_from_the_spec() -> None:
    assert _spec(["train", "--year", "2023", "--month", "1"]) == TrainSpec(year=2023, month=1)
    assert _spec(["tune", "--year", "2023", "--month", "1"]) == TuneSpec(year=2023, month=1)


def test_tune_predict_and_backtest_arguments_map_to_their_specs() -> None:
    tune = ["tune", "--year", "2023", "--month", "1", "--val-year", "2023", "--val-month", "3"]
    assert _spec([*tune, "--trials", "3", "--jobs", "2", "--timeout", "9.5", "--seed", "7"]) == (
        TuneSpec(
            year=2023, month=1, val_year=2023, val_month=3, trials=3, jobs=2, timeout=9.5, seed=7
        )
    )
    predict = ["predict", "--year", "2023", "--month", "2", "--output", "p.parquet"]
    assert _spec([*predict, "--model-uri", "models:/m/3"]) == PredictSpec(
        year=2023, month=2, output="p.parquet", model_uri="models:/m/3"
    )
    backtest = ["backtest", "--from", "2023-01", "--to", "2023-03", "--preset", "reference"]
    assert _spec([*backtest, "--workers", "3"]) == BacktestSpec(
        start="2023-01", end="2023-03", preset="reference", workers=3
    )
