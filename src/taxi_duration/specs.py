"""What each command asks for: one frozen, typed spec per command, checked once.

The CLI generates its options from a spec's fields and builds the spec from its arguments;
each flow takes the spec as its one parameter, so Prefect validates the same model for CLI,
UI and deployment runs. Every rule lives here, in a field's type or in a validator, and a
bad value raises ``InvalidInputError`` with one line naming the value and what is allowed,
before anything is downloaded. Adding an option means adding one field and using it.

Field metadata for the CLI (``json_schema_extra``): ``flag`` names the option when it is not
``--field-name``; ``cli_required`` makes it required on the command line (a scheduled flow
run may leave it out); ``positional`` makes it an argument without a flag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from taxi_duration.choices import (
    FIRST_PUBLISHED_MONTH,
    MAX_DEGRADATION,
    TrainingConfig,
    training_config,
)
from taxi_duration.errors import InvalidInputError
from taxi_duration.months import Month
from taxi_duration.spec_fields import (
    Color,
    FeatureSetName,
    MinImprovement,
    ModelKind,
    MonthNumber,
    PresetName,
    Window,
    check_month,
    choice,
    in_range,
    listed,
    local_file,
)


class Spec(BaseModel):
    """Frozen, and no field it does not know."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def parse(cls, **values: Any) -> Self:
        """The spec for ``values``; a bad one raises InvalidInputError with one line."""
        try:
            return cls.model_validate(values)
        except ValidationError as error:  # a type error the fields' own checks never saw
            first = error.errors()[0]
            name = ".".join(str(part) for part in first["loc"]) or cls.__name__
            raise InvalidInputError(
                f"{name} {first.get('input')!r} is invalid: {first['msg']}"
            ) from None


class DaskOptions(Spec):
    """Where a command runs on Dask: a local cluster of ``workers``, or an existing one."""

    workers: Annotated[int, in_range("workers", 1, 256)] | None = Field(
        None,
        description="worker processes of a local Dask cluster "
        "(backtest default 2; train default: none, in one process)",
    )
    dask_address: str | None = Field(
        None, description="an existing Dask scheduler, e.g. tcp://127.0.0.1:8786"
    )

    @property
    def on_dask(self) -> bool:
        return self.workers is not None or self.dask_address is not None

    @model_validator(mode="after")
    def _check_one_cluster(self) -> Self:
        if self.workers is not None and self.dask_address is not None:
            raise InvalidInputError("give --workers or --dask-address, not both")
        return self


class CheckOptions(Spec):
    """Whether a run's months must pass the data checks (``checks.py``) before training."""

    skip_checks: bool = Field(
        False,
        description="train even if a month fails the data checks (its figures are still "
        "logged, and the run is tagged taxi_duration.skip_checks)",
    )


class ThreadOptions(Spec):
    """How many XGBoost threads a command's fits may use."""

    threads: Annotated[int, in_range("threads", 1, 1024)] | None = Field(
        None,
        description="XGBoost threads in all at most, shared by parallel trials or workers; "
        "a fit uses one per 500,000 rows (default: TAXI_DURATION_THREADS, else the CPUs "
        "available: affinity and cgroup quota)",
    )


class ModelOptions(Spec):
    """What a command trains: a model and features, or a preset (a conflict raises)."""

    model: ModelKind | None = Field(None, description="default: xgboost")
    features: FeatureSetName | None = Field(None, description="default: default")
    preset: PresetName | None = Field(None, description="reference: the course's XGBoost, exactly")

    @property
    def config(self) -> TrainingConfig:
        return training_config(self.model, self.features, self.preset)


_MONTH_HELP = "the training month (a scheduled run without it takes the months from its date)"


class TrainingSpec(ThreadOptions, CheckOptions):
    """What ``train`` and ``tune`` share: the months, their files, the promotion margin."""

    color: Color = Field("green", description="taxi type")
    year: int | None = Field(
        None, description=_MONTH_HELP, json_schema_extra={"cli_required": True}
    )
    month: MonthNumber | None = Field(
        None, description="1-12", json_schema_extra={"cli_required": True}
    )
    val_year: int | None = Field(None, description="the validation month (default: the next)")
    val_month: MonthNumber | None = Field(None, description="1-12")
    window: Window = Field(
        1, description="train on the N consecutive months ending at the training month"
    )
    train_path: str | None = Field(None, description="local parquet file instead of downloading")
    val_path: str | None = Field(None, description="local parquet file for the validation month")
    register_version: bool = Field(
        True,
        description="off (--no-register): log the run, touch no model version or alias",
        json_schema_extra={"flag": "--register"},
    )
    min_improvement: MinImprovement = Field(
        0.0,
        description="RMSE (minutes) by which a new version must beat the champion: "
        "by strictly more than this",
    )

    def _validates(self) -> bool:
        return True

    @property
    def config(self) -> TrainingConfig:
        """What to train: the default XGBoost (``TrainSpec`` lets the user choose)."""
        return training_config()

    @property
    def train_month(self) -> Month | None:
        """None for a scheduled run until its months are chosen."""
        return None if self.year is None or self.month is None else Month(self.year, self.month)

    def required_train_month(self) -> Month:
        """The training month, which only a scheduled run may leave to the flow to choose."""
        if self.train_month is None:
            raise InvalidInputError("the training month is required: give year and month")
        return self.train_month

    def training_months(self) -> list[Month]:
        """The ``window`` consecutive months ending at the training month, oldest first."""
        months = [self.required_train_month()]
        while len(months) < self.window:
            months.insert(0, months[0].previous())
        return months

    @property
    def validation_month(self) -> Month | None:
        if not self._validates() or self.train_month is None:
            return None
        if self.val_year is not None and self.val_month is not None:
            return Month(self.val_year, self.val_month)
        return self.train_month.next()

    @property
    def train_file(self) -> Path | None:
        return None if self.train_path is None else Path(self.train_path)

    @property
    def val_file(self) -> Path | None:
        return None if self.val_path is None else Path(self.val_path)

    @model_validator(mode="after")
    def _check_months_and_files(self) -> Self:
        if (self.year is None) != (self.month is None):
            raise InvalidInputError("year and month go together: give both, or neither")
        if (self.val_year is None) != (self.val_month is None):
            raise InvalidInputError(
                "--val-year and --val-month (val_year, val_month) go together: give both, or none"
            )
        if self.train_month is None:
            if self.val_year is not None or self.train_path or self.val_path:
                raise InvalidInputError(
                    "the training month is required with a validation month or a data file: "
                    "give year and month"
                )
            return self  # a scheduled run: the flow chooses the months
        if not self._validates() and (self.val_year is not None or self.val_path is not None):
            raise InvalidInputError(
                "--no-validation (validation false) conflicts with a validation month or file"
            )
        check_month(self.color, self.train_month, "training")
        self._check_window()
        if self.validation_month is not None:
            check_month(self.color, self.validation_month, "validation")
        local_file(self.train_path, "train")
        local_file(self.val_path, "validation")
        return self

    def _check_window(self) -> None:
        months = self.training_months()
        first = FIRST_PUBLISHED_MONTH[self.color]
        if months[0] < first:
            last = months[-1]
            widest = (last.year - first.year) * 12 + last.month - first.month + 1
            raise InvalidInputError(
                f"window {self.window} reaches back to {months[0]}, before the first published "
                f"{self.color} month {first}: allowed 1-{widest} for training month {last}"
            )
        if self.train_path is not None and self.window > 1:
            raise InvalidInputError(
                f"window {self.window} needs {self.window} months; --train-path gives one: "
                "give --window 1 or leave out --train-path"
            )
        validation = self.validation_month
        if validation is not None and validation in months:
            raise InvalidInputError(
                f"validation month {validation} is inside the training window "
                f"{months[0]}..{months[-1]}: validate on a month outside it"
            )

    def with_months(self, train: Month, val: Month | None) -> Self:
        """The same spec for chosen months (a scheduled run), checked again."""
        values = self.model_dump()
        values.update(year=train.year, month=train.month, val_year=None, val_month=None)
        if val is not None:
            values.update(val_year=val.year, val_month=val.month)
        return self.parse(**values)


class TrainSpec(DaskOptions, ModelOptions, TrainingSpec):
    """``taxi-duration train`` and the ``train`` flow; on Dask with a cluster given."""

    validation: bool = Field(
        True, description="off (--no-validation): train on one month only, validate on none"
    )

    def _validates(self) -> bool:
        return self.validation

    @model_validator(mode="after")
    def _check_model(self) -> Self:
        config = self.config  # a preset that conflicts with --model or --features raises
        if self.on_dask and not config.uses_native_categorical:
            raise InvalidInputError(
                f"--model {config.model} --features {config.features} does not train on Dask: "
                "distributed training takes the default model (XGBoost, default features)"
            )
        return self


class TuneSpec(TrainingSpec):
    """``taxi-duration tune`` and the ``tune`` flow: always validated, on XGBoost."""

    trials: Annotated[int, in_range("trials", 1)] = Field(20, description="trials to run")
    timeout: Annotated[float, in_range("timeout", 0.0, unit="seconds")] | None = Field(
        None, description="stop starting trials after S seconds"
    )
    jobs: Annotated[int, in_range("jobs", 1, 64)] = Field(1, description="trials in parallel")
    seed: Annotated[int, in_range("seed", 0, 2**31 - 1)] = Field(42, description="random seed")

    @model_validator(mode="after")
    def _check_month_given(self) -> Self:
        self.required_train_month()
        return self


class PredictSpec(Spec):
    """``taxi-duration predict`` and the ``predict`` flow."""

    color: Color = Field("green", description="taxi type")
    year: int = Field(description="the month to score")
    month: MonthNumber = Field(description="1-12")
    output: str = Field(description="parquet file to write")
    input_path: str | None = Field(
        None,
        description="local parquet file instead of downloading",
        json_schema_extra={"flag": "--input"},
    )
    model_uri: str | None = Field(
        None, description="default: models:/<TAXI_DURATION_MODEL_NAME>@champion"
    )

    @property
    def scored_month(self) -> Month:
        return Month(self.year, self.month)

    @property
    def input_file(self) -> Path | None:
        return None if self.input_path is None else Path(self.input_path)

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_month(self.color, self.scored_month, "scored")
        if not self.output.strip():
            raise InvalidInputError("output '' is empty: give a parquet file to write")
        local_file(self.input_path, "input")
        return self


class MonitorSpec(Spec):
    """``taxi-duration monitor`` and the ``monitor`` flow."""

    color: Color = Field("green", description="taxi type: whose champion")
    year: int | None = Field(
        None,
        description="the month to judge the champion on (a scheduled run without it takes "
        "the newest published month)",
    )
    month: MonthNumber | None = Field(None, description="1-12")
    start: str | None = Field(
        None,
        description="judge every month from this one (YYYY-MM, with --to) instead of --year "
        "and --month",
        json_schema_extra={"flag": "--from"},
    )
    end: str | None = Field(
        None, description="last month of --from, YYYY-MM", json_schema_extra={"flag": "--to"}
    )
    max_degradation: Annotated[
        float, in_range("max_degradation", 0, unit="(a fraction of the validation RMSE)")
    ] = Field(
        MAX_DEGRADATION,
        description="degraded when the month's RMSE is more than this fraction above the "
        "champion's validation RMSE",
    )

    @property
    def monitored_month(self) -> Month | None:
        if self.year is None or self.month is None:
            return None
        return Month(self.year, self.month)

    def monitored_range(self) -> list[Month] | None:
        """The months of --from..--to, oldest first; None without a range."""
        if self.start is None or self.end is None:
            return None
        months, month = [], Month.parse(self.start)
        while month <= Month.parse(self.end):
            months.append(month)
            month = month.next()
        return months

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.year is None) != (self.month is None):
            raise InvalidInputError(
                "--year and --month (year, month) go together: give both, or neither for "
                "the newest published month"
            )
        if (self.start is None) != (self.end is None):
            raise InvalidInputError("--from and --to (start, end) go together: give both")
        if self.start is not None and self.year is not None:
            raise InvalidInputError(
                "--from/--to or --year/--month (start/end or year/month): give one, not both"
            )
        if self.monitored_month is not None:
            check_month(self.color, self.monitored_month, "monitored")
        if self.start is not None and self.end is not None:
            first, last = Month.parse(self.start), Month.parse(self.end)
            if first > last:
                raise InvalidInputError(f"--from {first} is after --to {last}: give --from <= --to")
            check_month(self.color, first, "first")
            check_month(self.color, last, "last")
        return self


class PromoteSpec(Spec):
    """``taxi-duration promote``: a version of a color's model made champion by hand."""

    color: Color = Field("green", description="taxi type: whose registered model")
    version: Annotated[int, in_range("version", 1)] = Field(
        description="the registered version to make the champion"
    )


DEFAULT_SERVE_PORT = 8000


class ServeSpec(Spec):
    """``taxi-duration serve``: the HTTP prediction service of a color's champion."""

    color: Color = Field("green", description="taxi type: whose champion to serve")
    host: str = Field(
        "127.0.0.1",
        description="address to listen on (default 127.0.0.1: this machine only; the "
        "service has no credentials of its own)",
    )
    port: Annotated[int, in_range("port", 1, 65535)] = Field(
        DEFAULT_SERVE_PORT, description="TCP port"
    )

    @model_validator(mode="after")
    def _check_host(self) -> Self:
        if not self.host.strip() or any(character.isspace() for character in self.host):
            raise InvalidInputError(
                f"host {self.host!r} is not an address: give e.g. 127.0.0.1 or 0.0.0.0"
            )
        return self


CACHE_ACTIONS = ("ls", "clear")


class CacheSpec(Spec):
    """``taxi-duration cache ls|clear``: the prepared-months cache (no flow)."""

    action: Annotated[str, choice("action", CACHE_ACTIONS), listed(CACHE_ACTIONS)] = Field(
        description="ls: list the cached months and their size; clear: remove them",
        json_schema_extra={"positional": True},
    )


class BacktestSpec(DaskOptions, ModelOptions, ThreadOptions, CheckOptions):
    """``taxi-duration backtest`` and the ``backtest`` flow."""

    color: Color = Field("green", description="taxi type")
    start: str = Field(
        description="first month, YYYY-MM",
        json_schema_extra={"flag": "--from", "cli_required": True},
    )
    end: str = Field(
        description="last month, YYYY-MM", json_schema_extra={"flag": "--to", "cli_required": True}
    )

    @property
    def first_month(self) -> Month:
        return Month.parse(self.start)

    @property
    def last_month(self) -> Month:
        return Month.parse(self.end)

    @model_validator(mode="after")
    def _check(self) -> Self:
        first, last = self.first_month, self.last_month
        if first > last:
            raise InvalidInputError(f"--from {first} is after --to {last}: give --from <= --to")
        if first == last:
            raise InvalidInputError(
                f"range {first}..{last} is one month: a backtest needs at least two "
                "(train on a month, validate on the next)"
            )
        check_month(self.color, first, "first")
        check_month(self.color, last, "last")
        self.config  # noqa: B018 (a preset that conflicts with --model or --features raises)
        return self
