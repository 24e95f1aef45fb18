"""Promote: whether a newly registered version replaces the champion.

The new version becomes champion only if its validation RMSE beats the champion's on the
same month by at least ``min_improvement`` (minutes); otherwise it is the challenger. The
first version ever registered becomes champion.
"""

from __future__ import annotations

from dataclasses import dataclass

CHAMPION = "champion"
CHALLENGER = "challenger"


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


def decide_promotion(
    new_rmse: float | None,
    champion_version: str | None,
    champion_rmse: float | None,
    min_improvement: float = 0.0,
) -> PromotionDecision:
    """Compare a new version's RMSE with the champion's on the same validation month."""
    if min_improvement < 0:
        raise ValueError(f"min_improvement {min_improvement:g} is negative")
    if champion_version is None:
        return PromotionDecision(True, "first version: no champion yet", new_rmse, None, None)
    if new_rmse is None or champion_rmse is None:
        return PromotionDecision(
            False,
            "no validation month to compare on: the champion stays",
            new_rmse,
            champion_rmse,
            champion_version,
        )
    improvement = champion_rmse - new_rmse
    if improvement > min_improvement or (min_improvement == 0 and improvement > 0):
        reason = (
            f"RMSE {new_rmse:.4f} beats champion v{champion_version}'s {champion_rmse:.4f} "
            f"by {improvement:.4f}"
        )
        return PromotionDecision(True, reason, new_rmse, champion_rmse, champion_version)
    reason = (
        f"RMSE {new_rmse:.4f} does not beat champion v{champion_version}'s "
        f"{champion_rmse:.4f} by more than {min_improvement:g}"
    )
    return PromotionDecision(False, reason, new_rmse, champion_rmse, champion_version)
