"""A logged model's pip requirements name the XGBoost distribution installed here."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError

import pytest

from taxi_duration.tracking import runs


@pytest.mark.parametrize("installed", ["xgboost-cpu", "xgboost"])
def test_the_installed_xgboost_wheel_is_named(
    monkeypatch: pytest.MonkeyPatch, installed: str
) -> None:
    def version(name: str) -> str:
        if name.startswith("xgboost") and name != installed:
            raise PackageNotFoundError(name)
        return "1.0"

    monkeypatch.setattr(runs, "package_version", version)
    requirements = runs.pip_requirements()
    assert [r for r in requirements if r.startswith("xgboost")] == [f"{installed}==1.0"]
    assert "scikit-learn==1.0" in requirements
