"""A model's fingerprint changes with its data, its parameters and its code, and only then."""

from __future__ import annotations

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


def test_the_code_version_is_a_stable_hash_of_the_package_source() -> None:
    assert len(code_version()) == 64
    assert code_version() == code_version()
