"""Zone statistics: median duration and speed per pickup zone, dropoff zone and pair of the
training month, smoothed towards the zones' and the month's (``ZoneStatistics``).

Target statistics (``default``): the training rows get them out of fold, each row from the
other folds' trips (``training_statistics``), so that no trip sees its own duration; any
other rows get the whole training month's (``fit_zone_statistics``), which a fitted
preprocessor carries. Medians are counted per bucket of values, without sorting every row
(``complement_medians``).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from taxi_duration.cpus import available_cpus
from taxi_duration.errors import InvalidInputError
from taxi_duration.features.encoding import categorical_keys, factorized, numeric_values

# Zone statistics are arrays indexed by zone id 1..265; slot 0 stands for a missing or
# unknown id and is never counted, so it always gets the month's value. Pairs are indexed
# by pickup slot * ZONE_SLOTS + dropoff slot.
ZONE_SLOTS = 266
PAIR_SLOTS = ZONE_SLOTS**2


def pair_slots(pickup: np.ndarray, dropoff: np.ndarray) -> np.ndarray:
    """The pair slot of zone slots: pickup x ZONE_SLOTS + dropoff."""
    return np.asarray(pickup * ZONE_SLOTS + dropoff)


# Smoothing: a pair's median weighs as its trips against this many trips' worth of its zones'
# (the mean of its pickup's and dropoff's); a zone's against the month's.
PAIR_PRIOR_TRIPS = 10.0
ZONE_PRIOR_TRIPS = 20.0
# Training rows get statistics from the other folds' trips, never their own.
STATISTIC_FOLDS = 5
_FOLD_SEED = 42


def zone_slots(frame: pd.DataFrame, name: str) -> np.ndarray:
    """Zone ids 1..265 as themselves; missing or other ids as 0."""
    feature = factorized(frame, name)
    if feature is not None:  # a lookup per row in a table per category
        slot_of_code = np.append(_slots_of_keys(feature.keys), 0)  # code -1 picks the 0
        slots: np.ndarray = slot_of_code[feature.codes]
        return slots
    return _slots_of_keys(categorical_keys(frame, name))


def _slots_of_keys(keys: np.ndarray) -> np.ndarray:
    return np.where((keys >= 1) & (keys < ZONE_SLOTS), keys, 0)


def known_distance(frame: pd.DataFrame) -> np.ndarray:
    """trip_distance where positive; a recorded 0 (or less) is unknown (NaN), not a 0-mile trip.

    An infinite distance is unknown too, so that no statistic divides by it.
    """
    distance = numeric_values(frame, "trip_distance")
    return np.where(np.isfinite(distance) & (distance > 0), distance, np.nan)


# Medians without sorting every row. The values are cut into buckets (contiguous ranges
# holding about as many rows each); counting rows per slot, bucket and fold tells, for every
# variant (all rows, each fold's complement), which bucket holds a slot's middle values and
# their rank in it. Only the rows of those buckets are then sorted, as 64-bit keys: the slot
# and bucket, the value's top bits in an order-preserving form, the fold. The value keeps at
# least 29 of float64's 52 mantissa bits: a median within 2e-9 (relative) of the exact one,
# finer than the float32 the model is given.
_FOLD_BITS = 3
_SIGN = np.uint64(1 << 63)
_FINE_BITS = 16  # the buckets are cut along a histogram of this many bits of the values
_MAX_COUNTS = 1 << 22  # slots x buckets x folds counted at most (32 MiB)
_MAX_BUCKETS = 1024


def _sortable(values: np.ndarray) -> np.ndarray:
    """Finite float64 as uint64 in the same order: the sign bit set on positives, every bit
    flipped on negatives."""
    bits = values.view(np.uint64)
    keys = bits ^ _SIGN
    negative = np.signbit(values)
    if negative.any():
        keys[negative] = ~bits[negative]
    return keys


def _unsortable(keys: np.ndarray) -> np.ndarray:
    bits = np.where(keys & _SIGN, keys & ~_SIGN, ~keys)
    return bits.view(np.float64)


def _buckets(keys: np.ndarray, n_buckets: int) -> np.ndarray:
    """Each key's bucket, 0..n_buckets-1: ordered as the keys, about as full as each other."""
    low = keys.min()
    shift = max(int(keys.max() - low).bit_length() - _FINE_BITS, 0)
    fine = ((keys - low) >> np.uint64(shift)).astype(np.int32)
    per_fine = np.bincount(fine)
    rows_before = np.cumsum(per_fine) - per_fine
    bucket_of_fine = (rows_before * n_buckets // len(keys)).astype(np.int32)
    buckets: np.ndarray = bucket_of_fine[fine]
    return buckets


def _ranked_values(
    cells: np.ndarray,
    keys: np.ndarray,
    folds: np.ndarray | None,
    n_cells: int,
    wanted: Sequence[tuple[np.ndarray, np.ndarray]],
) -> list[np.ndarray]:
    """Per variant, the values at the wanted (cell, rank) pairs: ranks from 0 among the
    cell's rows (variant 0) or among its rows outside fold f (variant f + 1)."""
    cell_bits = (n_cells - 1).bit_length()
    value_bits = 64 - cell_bits - _FOLD_BITS
    packed = keys >> np.uint64(64 - value_bits) << np.uint64(_FOLD_BITS)
    if cell_bits:
        packed |= cells.astype(np.uint64) << np.uint64(64 - cell_bits)
    if folds is not None:
        packed |= folds.astype(np.uint64)
    packed.sort()
    count = np.bincount(cells, minlength=n_cells)
    starts = np.cumsum(count) - count
    fold_of = (packed & np.uint64((1 << _FOLD_BITS) - 1)).astype(np.uint8)
    rank_type = np.int32 if len(packed) < np.iinfo(np.int32).max else np.int64
    values = []
    for variant, (cell, rank) in enumerate(wanted):
        start = starts[cell]
        if variant == 0:
            positions = start + rank
        else:
            # ranks[i]: how many rows outside the fold the sorted keys hold up to i.
            ranks = np.cumsum(fold_of != variant - 1, dtype=rank_type)
            before = np.where(start > 0, ranks[np.maximum(start - 1, 0)], 0)
            positions = np.searchsorted(ranks, (before + rank + 1).astype(rank_type))
        top = (packed[positions] >> np.uint64(_FOLD_BITS)) & np.uint64((1 << value_bits) - 1)
        values.append(_unsortable(top << np.uint64(64 - value_bits)))
    return values


def complement_medians(
    slots: np.ndarray, values: np.ndarray, folds: np.ndarray | None, size: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Median and number of the values per slot (0..size-1): over all rows, then, given each
    row's fold (0..STATISTIC_FOLDS-1), over each fold's complement (the other folds' rows).

    A slot without values has median 0 and count 0. The values must be finite.
    """
    n_folds = 1 if folds is None else STATISTIC_FOLDS
    n_variants = 1 if folds is None else 1 + STATISTIC_FOLDS
    if len(values) == 0:
        return [(np.zeros(size), np.zeros(size))] * n_variants
    keys = _sortable(np.asarray(values, dtype=np.float64))
    # No more buckets than rows (a small month is sorted about whole), and the folds' counts
    # within _MAX_COUNTS. Not fewer without folds: the medians of all rows come out the same.
    counted_cells = min(_MAX_COUNTS // STATISTIC_FOLDS, max(len(values), _MAX_BUCKETS))
    n_buckets = max(2, min(_MAX_BUCKETS, counted_cells // size))
    cells = slots.astype(np.int64) * n_buckets + _buckets(keys, n_buckets)
    counted = cells * n_folds if folds is None else cells * n_folds + folds
    counts = np.bincount(counted, minlength=size * n_buckets * n_folds)
    del counted
    counts = counts.reshape(size, n_buckets, n_folds)
    total = counts.sum(axis=2)
    by_variant = [total] + [
        total - counts[:, :, fold] for fold in range(n_folds if folds is not None else 0)
    ]
    wanted, numbers, present_slots = [], [], []
    for count in by_variant:
        cumulative = np.cumsum(count, axis=1)
        number = cumulative[:, -1]
        present = np.flatnonzero(number)
        # The lower and upper middle ranks of each present slot (one and the same if odd).
        middle = np.concatenate([(number[present] - 1) // 2, number[present] // 2])
        slot = np.concatenate([present, present])
        cumulative = cumulative[slot]
        bucket = (cumulative <= middle[:, None]).sum(axis=1)
        before = np.where(
            bucket > 0, cumulative[np.arange(len(slot)), np.maximum(bucket - 1, 0)], 0
        )
        wanted.append((slot * n_buckets + bucket, middle - before))
        numbers.append(number)
        present_slots.append(present)
    # Only the rows of the buckets that hold a middle value are sorted.
    target = np.zeros(size * n_buckets, dtype=bool)
    for cell, _ in wanted:
        target[cell] = True
    chosen = target[cells]
    middle_values = _ranked_values(
        cells[chosen],
        keys[chosen],
        None if folds is None else folds[chosen],
        size * n_buckets,
        wanted,
    )
    out = []
    for number, present, found in zip(numbers, present_slots, middle_values, strict=True):
        median = np.zeros(size)
        lower, upper = found[: len(present)], found[len(present) :]
        median[present] = (lower + upper) / 2  # as pandas' median of an even count
        out.append((median, number.astype(float)))
    return out


def _smoothed(
    median: np.ndarray, count: np.ndarray, prior: np.ndarray | float, weight: float
) -> np.ndarray:
    return np.asarray((count * median + weight * prior) / (count + weight))


@dataclass(frozen=True)
class GroupMedians:
    """Median and number of one value (duration or speed) per zone and pair, and the month's.

    ``pickup`` and ``dropoff`` are (medians, counts) indexed by zone slot, ``pair`` by pair
    slot (pickup slot x ZONE_SLOTS + dropoff slot); a slot without trips has count 0.
    """

    month: float
    pickup: tuple[np.ndarray, np.ndarray]
    dropoff: tuple[np.ndarray, np.ndarray]
    pair: tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class ZoneStatistics:
    """Median duration (minutes) and speed (miles/minute) per pair, pickup and dropoff zone.

    Fitted on one month's trips. A pair seen few times leans on its zones, a zone on the
    month; a pair never seen gets its zones', a zone never seen the month's.
    """

    pickup_duration: np.ndarray
    pickup_speed: np.ndarray
    dropoff_duration: np.ndarray
    dropoff_speed: np.ndarray
    pair_duration: np.ndarray
    pair_speed: np.ndarray
    pair_trips: np.ndarray  # trips per pair, on the scale of a whole month

    @classmethod
    def of_medians(
        cls, duration: GroupMedians, speed: GroupMedians, scale: float = 1.0
    ) -> ZoneStatistics:
        """Smoothed statistics from the medians and counts of durations and of speeds."""
        fields: dict[str, np.ndarray] = {}
        for kind, medians in (("duration", duration), ("speed", speed)):
            zone = {}
            for side, (median, count) in (("pickup", medians.pickup), ("dropoff", medians.dropoff)):
                zone[side] = _smoothed(median, count, medians.month, ZONE_PRIOR_TRIPS)
                fields[f"{side}_{kind}"] = zone[side]
            median, count = medians.pair
            prior = ((zone["pickup"][:, None] + zone["dropoff"][None, :]) / 2).ravel()
            fields[f"pair_{kind}"] = _smoothed(median, count, prior, PAIR_PRIOR_TRIPS)
            if kind == "duration":
                fields["pair_trips"] = count * scale
        return cls(**fields)

    def lookup(
        self, pickup: np.ndarray, dropoff: np.ndarray, distance: np.ndarray
    ) -> dict[str, np.ndarray]:
        """The STATISTIC_FEATURES of trips given their zone slots and known distances."""
        return self.lookup_slots(pickup, dropoff, pair_slots(pickup, dropoff), distance)

    def lookup_slots(
        self, pickup: np.ndarray, dropoff: np.ndarray, pair: np.ndarray, distance: np.ndarray
    ) -> dict[str, np.ndarray]:
        """``lookup`` given the pair slots too."""
        pair_speed = self.pair_speed[pair]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            # NaN where the distance is unknown; inf (beyond float64) is missing as well.
            expected = distance / pair_speed
        return {
            "pair_median_duration": self.pair_duration[pair],
            "pair_median_speed": pair_speed,
            "pickup_median_duration": self.pickup_duration[pickup],
            "pickup_median_speed": self.pickup_speed[pickup],
            "dropoff_median_duration": self.dropoff_duration[dropoff],
            "dropoff_median_speed": self.dropoff_speed[dropoff],
            "pair_trips": self.pair_trips[pair],
            "expected_duration": expected,
        }


def statistic_inputs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        zone_slots(frame, "PULocationID"),
        zone_slots(frame, "DOLocationID"),
        known_distance(frame),
    )


def fit_statistics(
    pickup: np.ndarray,
    dropoff: np.ndarray,
    distance: np.ndarray,
    duration: np.ndarray,
    folds: np.ndarray | None = None,
    threads: int = 1,
) -> list[ZoneStatistics]:
    """The trips' statistics from zone slots, known distances (NaN: unknown) and durations;
    then, given each trip's fold, each fold's from the other folds' trips, with counts scaled
    to read like the whole month's.

    Each of the eight groupings (month, pickup, dropoff and pair, of durations and of speeds)
    is one ``complement_medians``; they run on ``threads`` threads (numpy counts and sorts
    without the GIL).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        speed = distance / duration
    everywhere = np.ones(len(duration), dtype=bool)
    groupings = {
        "month": (None, everywhere, 1),
        "pickup": (pickup, pickup > 0, ZONE_SLOTS),
        "dropoff": (dropoff, dropoff > 0, ZONE_SLOTS),
        "pair": (pair_slots(pickup, dropoff), (pickup > 0) & (dropoff > 0), PAIR_SLOTS),
    }
    jobs = [(kind, name) for kind in ("duration", "speed") for name in groupings]

    def medians(job: tuple[str, str]) -> list[tuple[np.ndarray, np.ndarray]]:
        kind, name = job
        values = duration if kind == "duration" else speed
        slots, valid, size = groupings[name]
        keep = valid & np.isfinite(values)
        return complement_medians(
            np.zeros(int(keep.sum()), dtype=np.intp) if slots is None else slots[keep],
            values[keep],
            None if folds is None else folds[keep],
            size,
        )

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        by_job = dict(zip(jobs, pool.map(medians, jobs), strict=True))

    def group_medians(kind: str, variant: int) -> GroupMedians:
        month, trips = by_job[kind, "month"][variant]
        return GroupMedians(
            month=float(month[0]) if trips[0] > 0 else np.nan,
            pickup=by_job[kind, "pickup"][variant],
            dropoff=by_job[kind, "dropoff"][variant],
            pair=by_job[kind, "pair"][variant],
        )

    # Variant 0 is every trip; variant f + 1 fold f's complement, its counts scaled.
    scales = [1.0]
    if folds is not None:
        n_rows = len(duration)
        scales += [
            n_rows / max(int(np.count_nonzero(folds != fold)), 1) for fold in range(STATISTIC_FOLDS)
        ]
    return [
        ZoneStatistics.of_medians(group_medians("duration", v), group_medians("speed", v), scale)
        for v, scale in enumerate(scales)
    ]


def _training_inputs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if "duration" not in frame:
        raise InvalidInputError("zone statistics are fitted on trips with a 'duration' column")
    return (*statistic_inputs(frame), frame["duration"].to_numpy(dtype=np.float64))


def fit_zone_statistics(frame: pd.DataFrame) -> ZoneStatistics:
    """The whole month's statistics, for rows other than its own (validation, scoring)."""
    return fit_statistics(*_training_inputs(frame), threads=available_cpus())[0]


def statistic_folds(n_rows: int, stream: int | None = None) -> np.ndarray:
    """Each row's fold (0..STATISTIC_FOLDS-1): a seeded balanced split, the same every time.

    ``stream`` numbers one of several independent splits (a Dask partition's).
    """
    seed = _FOLD_SEED if stream is None else [_FOLD_SEED, stream]
    # permutation(n_rows) % STATISTIC_FOLDS, in bytes: a shuffle draws the same swaps
    # whatever it shuffles.
    folds = (np.arange(n_rows) % STATISTIC_FOLDS).astype(np.uint8)
    np.random.default_rng(seed).shuffle(folds)
    return folds


@dataclass(frozen=True)
class TrainingStatistics:
    """A training month's statistics (``whole``, what a preprocessor carries) and its own
    rows' STATISTIC_FEATURES, each from the other folds' trips (``rows``): one fit for both."""

    whole: ZoneStatistics
    rows: dict[str, np.ndarray]


def training_statistics(frame: pd.DataFrame) -> TrainingStatistics:
    """``fit_zone_statistics`` and ``out_of_fold_statistics`` of a month, from one fit."""
    pickup, dropoff, distance, duration = _training_inputs(frame)
    folds = statistic_folds(len(frame))
    whole, *by_fold = fit_statistics(
        pickup, dropoff, distance, duration, folds=folds, threads=available_cpus()
    )
    rows = _statistics_by_fold(pickup, dropoff, distance, folds, by_fold)
    return TrainingStatistics(whole=whole, rows=rows)


def out_of_fold_statistics(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """STATISTIC_FEATURES of the training rows, each from the other folds' trips only."""
    return training_statistics(frame).rows


def statistics_by_fold(
    frame: pd.DataFrame, folds: np.ndarray, by_fold: Sequence[ZoneStatistics]
) -> dict[str, np.ndarray]:
    """STATISTIC_FEATURES of rows, each row's from the statistics of its fold."""
    return _statistics_by_fold(*statistic_inputs(frame), folds, by_fold)


def _statistics_by_fold(
    pickup: np.ndarray,
    dropoff: np.ndarray,
    distance: np.ndarray,
    folds: np.ndarray,
    by_fold: Sequence[ZoneStatistics],
) -> dict[str, np.ndarray]:
    # The folds' tables end to end: a row's entry is at its fold's offset plus its slot (one
    # gather per feature, not a masked one per fold).
    stacked = ZoneStatistics(
        **{
            field.name: np.concatenate([getattr(fold, field.name) for fold in by_fold])
            for field in fields(ZoneStatistics)
        }
    )
    folds = folds.astype(np.intp)
    pair = folds * PAIR_SLOTS + pair_slots(pickup, dropoff)
    folds *= ZONE_SLOTS
    return stacked.lookup_slots(folds + pickup, folds + dropoff, pair, distance)
