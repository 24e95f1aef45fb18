"""TrainRequest: the months and files of a run, checked before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from tlc_samples import write_month

from taxi_duration.errors import DataError, InvalidInputError
from taxi_duration.months import Month
from taxi_duration.request import TrainRequest


def test_default_validation_is_the_next_month() -> None:
    request = TrainRequest.build("green", 2023, 1, None, None)
    assert request == TrainRequest("green", Month(2023, 1), Month(2023, 2), None, None)


def test_december_validates_on_january() -> None:
    request = TrainRequest.build("yellow", 2022, 12, None, None)
    assert request.val_month == Month(2023, 1)


def test_explicit_validation_month() -> None:
    request = TrainRequest.build("green", 2023, 3, 2023, 1)
    assert request.val_month == Month(2023, 1)


def test_no_validation() -> None:
    request = TrainRequest.build("green", 2023, 1, validation=False)
    assert request.val_month is None


def test_first_published_months_are_allowed() -> None:
    assert TrainRequest.build("green", 2013, 8).train_month == Month(2013, 8)
    assert TrainRequest.build("yellow", 2009, 1).train_month == Month(2009, 1)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"year": None, "month": 1}, "training month is required"),
        ({"year": 2023, "month": None}, "training month is required"),
        ({"month": 13}, "2023-13"),
        ({"month": 0}, "2023-00"),
        ({"color": "blue"}, "'blue'"),
        ({"year": 2012, "month": 5}, "2012-05.*2013-08"),
        ({"year": 2013, "month": 8, "val_year": 2013, "val_month": 7}, "2013-07.*2013-08"),
        ({"color": "yellow", "year": 2008, "month": 12}, "2008-12.*2009-01"),
        ({"val_year": 2023}, "val_year and val_month"),
        ({"val_month": 2}, "val_year and val_month"),
        ({"val_year": 2023, "val_month": 13}, "2023-13"),
        ({"validation": False, "val_year": 2023, "val_month": 2}, "--no-validation"),
        ({"validation": False, "val_path": "v.parquet"}, "--no-validation"),
    ],
)
def test_invalid_requests(kwargs: dict[str, object], named: str) -> None:
    arguments: dict[str, object] = {"color": "green", "year": 2023, "month": 1, **kwargs}
    with pytest.raises(InvalidInputError, match=named):
        TrainRequest.build(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(("option", "role"), [("train_path", "train"), ("val_path", "validation")])
def test_missing_local_file(option: str, role: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing.parquet"
    with pytest.raises(InvalidInputError) as caught:
        TrainRequest.build("green", 2023, 1, **{option: str(missing)})  # type: ignore[arg-type]
    assert str(missing) in str(caught.value)
    assert role in str(caught.value)


def test_local_files(tmp_path: Path) -> None:
    train = write_month(tmp_path, "green", Month(2023, 1), rows=20)
    val = write_month(tmp_path, "green", Month(2023, 2), rows=20)
    request = TrainRequest.build("green", 2023, 1, train_path=str(train), val_path=str(val))
    assert request.train_path == train
    assert request.val_path == val


def test_local_file_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    path.write_text("not parquet")
    with pytest.raises(DataError, match="not a readable parquet file"):
        TrainRequest.build("green", 2023, 1, train_path=str(path))
