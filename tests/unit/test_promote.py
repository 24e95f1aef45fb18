"""The champion/challenger rule: promoted only by strictly more than ``min_improvement``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from taxi_duration.promote import choose_champion, compare_on

TRUTH = np.zeros(4)


def _scorer(rmse_by_version: dict[str, float]) -> Callable[[str], np.ndarray]:
    """Predictions whose RMSE against TRUTH (zeros) is exactly the version's figure."""
    return lambda version: np.full(len(TRUTH), rmse_by_version[version])


def test_the_first_version_is_champion() -> None:
    decision = choose_champion("1", None, TRUTH, _scorer({}), min_improvement=1.0)
    assert decision.promoted
    assert decision.alias == "champion"
    assert decision.previous_champion is None


@pytest.mark.parametrize(
    ("new_rmse", "min_improvement", "promoted"),
    [
        (4.0, 0.0, True),  # better
        (5.0, 0.0, False),  # a tie keeps the champion
        (6.0, 0.0, False),  # worse
        (4.5, 0.5, False),  # better by exactly the margin: not more than it
        (4.4990, 0.5, True),  # better by just more than the margin
        (4.5010, 0.5, False),  # better by just less than the margin
    ],
)
def test_promoted_only_by_more_than_the_margin(
    new_rmse: float, min_improvement: float, promoted: bool
) -> None:
    score = _scorer({"4": new_rmse, "3": 5.0})
    decision = choose_champion("4", "3", TRUTH, score, min_improvement)
    assert decision.promoted is promoted
    assert decision.alias == ("champion" if promoted else "challenger")
    assert (decision.new_rmse, decision.champion_rmse) == (pytest.approx(new_rmse), 5.0)
    assert decision.previous_champion == "3"
    assert "v3" in decision.reason
    if not promoted:
        assert f"by more than {min_improvement:g}" in decision.reason


def test_both_versions_are_compared_on_the_trips_both_predict() -> None:
    truth = np.array([10.0, 20.0, 30.0, 40.0])
    new = np.array([10.0, np.nan, 30.0, 44.0])
    old = np.array([12.0, 20.0, np.inf, 40.0])
    new_rmse, old_rmse = compare_on(truth, new, old)
    # Only trips 0 and 3 are predicted by both.
    assert new_rmse == pytest.approx(np.sqrt((0**2 + 4**2) / 2))
    assert old_rmse == pytest.approx(np.sqrt((2**2 + 0**2) / 2))


def test_both_versions_are_scored_on_the_same_trips() -> None:
    truth = np.array([10.0, 20.0, 30.0])
    predictions = {"7": np.array([10.0, 20.0, 31.0]), "6": np.array([13.0, np.nan, 30.0])}
    asked: list[str] = []

    def score(version: str) -> np.ndarray:
        asked.append(version)
        return predictions[version]

    decision = choose_champion("7", "6", truth, score, min_improvement=0.0)
    assert sorted(asked) == ["6", "7"]
    assert decision.promoted
    assert decision.new_rmse == pytest.approx(np.sqrt(1 / 2))  # trip 1: no prediction by v6
    assert decision.champion_rmse == pytest.approx(np.sqrt(9 / 2))


def test_nothing_is_scored_without_a_champion_or_a_validation_month() -> None:
    def score(version: str) -> np.ndarray:
        raise AssertionError("scored without need")

    assert choose_champion("1", None, np.array([1.0]), score).promoted
    kept = choose_champion("2", "1", None, score)
    assert not kept.promoted
    assert "no validation month" in kept.reason
