"""Zone-pair statistics: out of fold for training rows, fallbacks for rare and unseen pairs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from taxi_duration.choices import STATISTIC_FEATURES, feature_set
from taxi_duration.errors import InvalidInputError
from taxi_duration.features import zone_statistics
from taxi_duration.features.preprocessor import Preprocessor
from taxi_duration.features.zone_statistics import (
    PAIR_PRIOR_TRIPS,
    ZONE_PRIOR_TRIPS,
    ZoneStatistics,
    fit_zone_statistics,
    out_of_fold_statistics,
)

# The default set and expected_duration (distance over the pair's median speed), which the
# default leaves out because it is monotone in distance; the statistic is tested all the same.
WITH_EXPECTED_DURATION = dataclasses.replace(
    feature_set("default"), numeric=(*feature_set("default").numeric, "expected_duration")
)


def _smoothed(median: float, count: int, prior: float, weight: float) -> float:
    return (count * median + weight * prior) / (count + weight)


@pytest.fixture
def small_month() -> pd.DataFrame:
    """Pair 1->2: three trips of 10, 12, 14 minutes; pair 3->4: two of 20 and 30."""
    return pd.DataFrame(
        {
            "pickup_datetime": pd.to_datetime(["2023-01-02 10:00"] * 5),
            "PULocationID": [1, 1, 1, 3, 3],
            "DOLocationID": [2, 2, 2, 4, 4],
            "trip_distance": [2.0, 2.4, 2.8, 5.0, 6.0],
            "duration": [10.0, 12.0, 14.0, 20.0, 30.0],
        }
    )


def _query(pickup: list[float], dropoff: list[float], distance: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "pickup_datetime": pd.to_datetime(["2023-02-01 10:00"] * len(pickup)),
            "PULocationID": pickup,
            "DOLocationID": dropoff,
            "trip_distance": distance,
        }
    )


def test_a_seen_pair_leans_on_its_zones_by_how_often_it_was_seen(
    small_month: pd.DataFrame,
) -> None:
    stats = Preprocessor.fit(small_month, WITH_EXPECTED_DURATION).transform_frame(
        _query([1.0], [2.0], [3.0])
    )
    month = 14.0  # median of 10, 12, 14, 20, 30
    pickup = _smoothed(12.0, 3, month, ZONE_PRIOR_TRIPS)
    dropoff = _smoothed(12.0, 3, month, ZONE_PRIOR_TRIPS)
    pair = _smoothed(12.0, 3, (pickup + dropoff) / 2, PAIR_PRIOR_TRIPS)
    assert stats["pickup_median_duration"][0] == pytest.approx(pickup, rel=1e-6)
    assert stats["dropoff_median_duration"][0] == pytest.approx(dropoff, rel=1e-6)
    assert stats["pair_median_duration"][0] == pytest.approx(pair, rel=1e-6)
    assert stats["pair_trips"][0] == 3
    speed = stats["pair_median_speed"][0]
    assert stats["expected_duration"][0] == pytest.approx(3.0 / speed, rel=1e-6)


def test_an_unseen_pair_falls_back_to_its_zones_then_to_the_month(
    small_month: pd.DataFrame,
) -> None:
    pre = Preprocessor.fit(small_month, WITH_EXPECTED_DURATION)
    # 1->4: both zones seen, the pair never; 100->200: neither zone seen; NaN: no zone.
    out = pre.transform_frame(_query([1.0, 100.0, np.nan], [4.0, 200.0, np.nan], [3.0] * 3))
    month = 14.0
    pickup_1 = _smoothed(12.0, 3, month, ZONE_PRIOR_TRIPS)
    dropoff_4 = _smoothed(25.0, 2, month, ZONE_PRIOR_TRIPS)
    pair = out["pair_median_duration"].to_numpy()
    assert pair[0] == pytest.approx((pickup_1 + dropoff_4) / 2, rel=1e-6)
    assert out["pair_trips"].tolist() == [0, 0, 0]
    for row in (1, 2):
        assert pair[row] == pytest.approx(month)
        assert out["pickup_median_duration"][row] == pytest.approx(month)
        assert out["dropoff_median_duration"][row] == pytest.approx(month)
    month_speed = float(np.median(small_month["trip_distance"] / small_month["duration"]))
    assert out["pair_median_speed"][1] == pytest.approx(month_speed, rel=1e-6)


def test_statistics_need_the_duration(small_month: pd.DataFrame) -> None:
    with pytest.raises(InvalidInputError, match="duration"):
        fit_zone_statistics(small_month.drop(columns=["duration"]))
    with pytest.raises(InvalidInputError, match="duration"):
        out_of_fold_statistics(small_month.drop(columns=["duration"]))


def test_out_of_fold_statistics_never_use_a_rows_own_duration(green_train: pd.DataFrame) -> None:
    before = out_of_fold_statistics(green_train)
    rng = np.random.default_rng(0)
    for row in rng.choice(len(green_train), size=5, replace=False):
        changed = green_train.copy()
        changed.iloc[row, changed.columns.get_loc("duration")] = 59.5
        after = out_of_fold_statistics(changed)
        for name in STATISTIC_FEATURES:
            # The row's own statistics are the same whatever its duration ...
            assert after[name][row] == before[name][row], (name, row)
        # ... while the other folds' rows of its zones do see it.
        moved = before["pickup_median_duration"] != after["pickup_median_duration"]
        assert moved.any()


def test_a_pair_seen_once_gets_nothing_from_its_own_trip(small_month: pd.DataFrame) -> None:
    month = pd.concat([small_month] * 10, ignore_index=True)
    month.loc[0, ["PULocationID", "DOLocationID"]] = [7, 8]  # a pair (and zones) seen once
    oof = out_of_fold_statistics(month)
    assert oof["pair_trips"][0] == 0
    others = month.drop(index=0)
    # Unseen zones and pair: the month's median duration, from the other trips only.
    assert oof["pair_median_duration"][0] == pytest.approx(others["duration"].median())
    assert oof["pair_median_duration"][0] != pytest.approx(month.loc[0, "duration"])


def test_training_rows_out_of_fold_other_rows_the_whole_month(
    green_train: pd.DataFrame, green_val: pd.DataFrame
) -> None:
    config = WITH_EXPECTED_DURATION
    pre = Preprocessor.fit(green_train, config)
    whole: ZoneStatistics = fit_zone_statistics(green_train)
    assert pre.statistics is not None
    np.testing.assert_array_equal(pre.statistics.pair_duration, whole.pair_duration)
    val = pre.transform_frame(green_val)
    train_oof = pre.transform_frame(green_train, training=True)
    train_whole = pre.transform_frame(green_train)
    expected = out_of_fold_statistics(green_train)
    for name in STATISTIC_FEATURES:
        np.testing.assert_array_equal(train_oof[name], expected[name].astype(np.float32))
    assert not np.array_equal(
        train_oof["pair_median_duration"], train_whole["pair_median_duration"]
    )
    assert val["pair_median_duration"].notna().all()
    # Deterministic: the same month gets the same folds.
    second = out_of_fold_statistics(green_train)
    for name in STATISTIC_FEATURES:
        np.testing.assert_array_equal(second[name], expected[name])


def test_out_of_fold_pair_counts_read_like_a_whole_month(small_month: pd.DataFrame) -> None:
    """A training row's count is its pair's other trips, as a later trip would see them."""
    month = pd.concat([small_month] * 10, ignore_index=True)  # pair 1->2: 30 trips
    oof = out_of_fold_statistics(month)
    frequent = (month["PULocationID"] == 1).to_numpy()
    # 29 other trips, 4/5 of them in the other folds, scaled back up by 5/4.
    assert oof["pair_trips"][frequent].mean() == pytest.approx(29, rel=0.1)


def test_the_folds_fitted_on_threads_give_what_one_thread_gives(
    green_train: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The groupings' medians run on the available CPUs (numpy sorts without the GIL): same
    values."""
    monkeypatch.setattr(zone_statistics, "available_cpus", lambda: 1)
    serial = out_of_fold_statistics(green_train)
    whole = fit_zone_statistics(green_train)
    monkeypatch.setattr(zone_statistics, "available_cpus", lambda: 4)
    threaded = out_of_fold_statistics(green_train)
    for name in STATISTIC_FEATURES:
        np.testing.assert_array_equal(threaded[name], serial[name])
    again = fit_zone_statistics(green_train)
    for field in dataclasses.fields(ZoneStatistics):
        np.testing.assert_array_equal(getattr(again, field.name), getattr(whole, field.name))


def _pandas_medians(
    slots: np.ndarray, values: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    grouped = pd.Series(values).groupby(slots)
    median, count = np.zeros(size), np.zeros(size)
    median[grouped.median().index] = grouped.median().to_numpy()
    count[grouped.size().index] = grouped.size().to_numpy()
    return median, count


@pytest.mark.parametrize("rows", [7, 2_000, 300_000])
def test_complement_medians_are_pandas_medians_of_all_rows_and_of_each_folds_complement(
    rows: int,
) -> None:
    """Counted in buckets, only the middle buckets sorted: pandas' medians (within 2e-9),
    for every row and for the rows outside each fold; ties, negatives, empty slots."""
    rng = np.random.default_rng(rows)
    size = 300
    # Most rows in a few slots (many buckets each), the rest spread thin; slot 0 unused.
    slots = np.where(rng.random(rows) < 0.7, rng.integers(1, 4, rows), rng.integers(1, size, rows))
    values = np.round(rng.gamma(2.0, 7.0, rows) * 60) / 60 + 1  # whole seconds: many ties
    values[rng.random(rows) < 0.05] *= -3.5
    folds = zone_statistics.statistic_folds(rows)
    variants = zone_statistics.complement_medians(slots, values, folds, size)
    assert len(variants) == 1 + zone_statistics.STATISTIC_FOLDS
    for variant, (median, count) in enumerate(variants):
        rest = folds != variant - 1  # variant 0: every row
        expected_median, expected_count = _pandas_medians(slots[rest], values[rest], size)
        np.testing.assert_array_equal(count, expected_count)
        np.testing.assert_allclose(median, expected_median, rtol=2e-9, atol=0)
        assert median[0] == 0
        assert count[0] == 0
    (median, count), *_ = variants
    (alone,) = zone_statistics.complement_medians(slots, values, None, size)
    np.testing.assert_array_equal(alone[0], median)
    np.testing.assert_array_equal(alone[1], count)


def test_the_folds_are_a_seeded_balanced_split_the_same_as_ever() -> None:
    """The folds as they were first drawn (a permutation of the rows, modulo the folds), so
    that models trained before and after give their rows the same statistics."""
    for rows, stream in ((1_003, None), (250, 7)):
        seed = [42, stream] if stream is not None else 42
        expected = np.random.default_rng(seed).permutation(rows) % zone_statistics.STATISTIC_FOLDS
        np.testing.assert_array_equal(zone_statistics.statistic_folds(rows, stream), expected)


def test_one_fit_gives_the_months_statistics_and_its_rows_out_of_fold(
    green_train: pd.DataFrame,
) -> None:
    fitted = zone_statistics.training_statistics(green_train)
    whole = fit_zone_statistics(green_train)
    for field in dataclasses.fields(ZoneStatistics):
        np.testing.assert_array_equal(getattr(fitted.whole, field.name), getattr(whole, field.name))
    rows = out_of_fold_statistics(green_train)
    for name in STATISTIC_FEATURES:
        np.testing.assert_array_equal(fitted.rows[name], rows[name])


def test_zone_slots_of_categorical_zones_are_those_of_plain_ids() -> None:
    """Prepared months hold zones as categoricals (looked up per category): the same slots
    as plain ids, 0 for missing, unknown and out-of-range ids."""
    ids = np.array([1.0, 265.0, 0.0, 266.0, np.nan, 132.0, -4.0, 1e9, 132.0])
    expected = np.array([1, 265, 0, 0, 0, 132, 0, 0, 132])
    for column in (pd.Series(ids), pd.Series(pd.Categorical(ids))):
        slots = zone_statistics.zone_slots(pd.DataFrame({"PULocationID": column}), "PULocationID")
        np.testing.assert_array_equal(slots, expected)
