"""Promote: whether a newly registered version replaces the champion.

The new version becomes champion only if its validation RMSE beats the champion's on the
same trips by strictly more than ``min_improvement`` (minutes): with the default 0, any
improvement at all; a tie keeps the champion. Otherwise it is the challenger. The first
version ever registered becomes champion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from taxi_duration.evaluate import rmse

CHAMPION = "champion"
CHALLENGER = "challenger"

# A registered version's predictions for the validation trips, by version.
Scorer = Callable[[str], np.ndarray]


@dataclass(frozen=True)
class PromotionDecision:
    """The outcome and why, recorded on the version and in the run's summary."""

    promoted: bool
    reason: str
    new_rmse: float | None
    champion_rmse: float | None
    previous_champion: str | None  # the champion version before this decision

    @property
    def alias(self) -> str:
        return CHAMPION if self.promoted else CHALLENGER


def compare_on(truth: np.ndarray, new: np.ndarray, champion: np.ndarray) -> tuple[float, float]:
    """Both versions' RMSE on the trips that both of them predict (finite predictions)."""
    scored = np.isfinite(new) & np.isfinite(champion)
    return rmse(truth[scored], new[scored]), rmse(truth[scored], champion[scored])


def choose_champion(
    version: str,
    champion_version: str | None,
    truth: np.ndarray | None,
    score: Scorer,
    min_improvement: float = 0.0,
) -> PromotionDecision:
    """Whether ``version`` replaces the champion: both are scored on the validation trips
    (``truth``, their true durations) and compared."""

    def compared(champion: str) -> tuple[float, float]:
        assert truth is not None
        return compare_on(truth, score(version), score(champion))

    return champion_by(
        version, champion_version, None if truth is None else compared, min_improvement
    )


# Both versions' validation RMSE on the same trips, (new, champion), given the champion.
Comparison = Callable[[str], tuple[float, float]]


def champion_by(
    version: str,
    champion_version: str | None,
    compared: Comparison | None,
    min_improvement: float = 0.0,
) -> PromotionDecision:
    """Whether ``version`` replaces the champion, by their RMSEs on the validation month
    (``compared``; None: no validation month)."""
    if champion_version is None:
        return PromotionDecision(True, "first version: no champion yet", None, None, None)
    if compared is None:
        return PromotionDecision(
            False,
            "no validation month to compare on: the champion stays",
            None,
            None,
            champion_version,
        )
    new_rmse, champion_rmse = compared(champion_version)
    improvement = champion_rmse - new_rmse
    promoted = improvement > min_improvement
    if promoted:
        reason = (
            f"RMSE {new_rmse:.4f} beats champion v{champion_version}'s {champion_rmse:.4f} "
            f"by {improvement:.4f}, more than {min_improvement:g}"
        )
    else:
        reason = (
            f"RMSE {new_rmse:.4f} does not beat champion v{champion_version}'s "
            f"{champion_rmse:.4f} by more than {min_improvement:g}"
        )
    return PromotionDecision(promoted, reason, new_rmse, champion_rmse, champion_version)
