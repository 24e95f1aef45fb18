"""A model's fingerprint changes with its data, its parameters and its code, and only then."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

import taxi_duration
from taxi_duration import fingerprint
from taxi_duration.fingerprint import code_version, model_fingerprint

DATA = {"training": "a" * 64, "validation": "b" * 64}
PARAMS = {"model": "xgboost", "max_depth": 8, "train_month": "2023-01"}


def test_the_same_inputs_give_the_same_fingerprint_whatever_the_order() -> None:
    reordered = dict(reversed(PARAMS.items()))
    assert model_fingerprint(DATA, PARAMS, "code") == model_fingerprint(DATA, reordered, "code")


def test_data_parameters_and_code_each_change_it() -> None:
    base = model_fingerprint(DATA, PARAMS, "code")
    assert model_fingerprint({**DATA, "validation": "c" * 64}, PARAMS, "code") != base
    assert model_fingerprint({"training": DATA["training"]}, PARAMS, "code") != base
    assert model_fingerprint(DATA, {**PARAMS, "max_depth": 9}, "code") != base
    assert model_fingerprint(DATA, PARAMS, "other code") != base


def _sha256_of_sources(package: Path) -> str:
    """The documented recipe, written again: each .py file's relative path and bytes."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def test_the_code_version_is_a_stable_hash_of_the_package_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = Path(taxi_duration.__file__).parent
    assert code_version() == _sha256_of_sources(package)
    copy = tmp_path / "taxi_duration"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(fingerprint, "_PACKAGE_DIR", copy)
    uncached = fingerprint.code_version.__wrapped__
    assert uncached() == code_version()  # the same source elsewhere: the same version
    (copy / "months.py").write_text((copy / "months.py").read_text() + "\n# an edit\n")
    assert uncached() != code_version()
