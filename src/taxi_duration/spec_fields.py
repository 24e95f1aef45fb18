"""The checked field types and checks the specs (specs.py) are built from.

A bad value raises ``InvalidInputError`` with one line naming the value and what is allowed;
the allowed values of a choice are also in the JSON schema, so the Prefect UI lists them.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, WithJsonSchema

from taxi_duration.choices import (
    COLORS,
    FEATURE_SETS,
    MODEL_KINDS,
    PRESETS,
    check_color_and_month,
    one_of,
)
from taxi_duration.errors import InvalidInputError
from taxi_duration.months import Month


def choice(name: str, allowed: Collection[str]) -> AfterValidator:
    """One of ``allowed``, else one line naming them."""
    return AfterValidator(lambda value: one_of(name, value, allowed))


def listed(allowed: Collection[str]) -> WithJsonSchema:
    """The UI shows the allowed values as a list."""
    return WithJsonSchema({"type": "string", "enum": list(allowed)})


def in_range(name: str, low: float | None, high: float | None = None, unit: str = "") -> Any:
    """A bound on a number: ``low`` <= value (<= ``high``); ``low`` excluded when a float."""

    def check(value: float) -> float:
        too_low = low is not None and (value < low if isinstance(low, int) else value <= low)
        if too_low or (high is not None and value > high):
            if high is not None:
                allowed = f"allowed {low:g}-{high:g}"
            elif isinstance(low, int):
                allowed = f"{low} or more"
            else:
                allowed = f"more than {low:g}"
            suffix = f" {unit}" if unit else ""
            raise InvalidInputError(f"{name} {value:g} is out of range: {allowed}{suffix}")
        return value

    return AfterValidator(check)


Color = Annotated[str, choice("color", COLORS), listed(COLORS)]
ModelKind = Annotated[str, choice("model", MODEL_KINDS), listed(MODEL_KINDS)]
FeatureSetName = Annotated[str, choice("features", FEATURE_SETS), listed(FEATURE_SETS)]
PresetName = Annotated[str, choice("preset", PRESETS), listed(PRESETS)]
MonthNumber = Annotated[int, in_range("month", 1, 12)]
MinImprovement = Annotated[float, in_range("min_improvement", 0, unit="(minutes of RMSE)")]
Window = Annotated[int, in_range("window", 1, 60, unit="months")]


def check_month(color: str, month: Month, role: str) -> None:
    """A month that can have data: not before the color's first, not after this month."""
    check_color_and_month(color, month)
    newest = Month.current()
    if month > newest:
        raise InvalidInputError(
            f"{role} month {month} is in the future: the newest month is {newest}"
        )


def local_file(path: str | None, role: str) -> Path | None:
    """The checked parquet file at ``path``, if one is given."""
    if path is None:
        return None
    from taxi_duration import ingest  # pyarrow reads the file's footer: only for a given file

    return ingest.check_local_file(Path(path), role)
