"""Linear regression: the compact LSQR gives scikit-learn's fit, and falls back to it."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LinearRegression
from tlc_samples import make_trips

from taxi_duration import linear
from taxi_duration.choices import feature_set
from taxi_duration.features.preprocessor import Preprocessor
from taxi_duration.linear import compact_lsqr, fit_linear_regression
from taxi_duration.models import fit_estimator, training_config
from taxi_duration.months import Month
from taxi_duration.prepare import normalize_raw_trips


def _rmse(model: LinearRegression, x: sp.csr_matrix, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((model.predict(x) - y) ** 2)))


def _random_binary(
    rows: int, columns: int, density: float, seed: int
) -> tuple[sp.csr_matrix, np.ndarray]:
    """A well-posed 0/1 design (full rank, uneven rows) and a target linear in it."""
    rng = np.random.default_rng(seed)
    x = sp.random(rows, columns, density=density, format="csr", rng=rng)
    x.data[:] = 1.0
    y = 3.0 + x @ rng.normal(0, 2, columns) + rng.normal(0, 0.5, rows)
    return x, y


def _trips(rows: int = 3_000, seed: int = 0) -> pd.DataFrame:
    raw = make_trips("green", Month(2023, 1), rows=rows, seed=seed)
    frame = normalize_raw_trips(raw)
    frame["duration"] = (
        raw["lpep_dropoff_datetime"] - raw["lpep_pickup_datetime"]
    ).dt.total_seconds() / 60
    frame = frame[frame["duration"].between(1, 60)].reset_index(drop=True)
    for zone in ("PULocationID", "DOLocationID"):
        frame[zone] = frame[zone].astype("category")
    return frame


@pytest.fixture(scope="module")
def trips() -> pd.DataFrame:
    return _trips()


def _design(frame: pd.DataFrame, features: str) -> tuple[sp.csr_matrix, np.ndarray]:
    preprocessor = Preprocessor.fit(frame, feature_set(features))
    return preprocessor.transform_sparse(frame), frame["duration"].to_numpy()


# --- the compact LSQR equals scikit-learn's -----------------------------------------------


def test_well_posed_binary_design_equals_sklearn() -> None:
    x, y = _random_binary(2_000, 40, 0.15, seed=1)
    ours, expected = fit_linear_regression(x, y), LinearRegression().fit(x, y)
    np.testing.assert_allclose(ours.predict(x), expected.predict(x), rtol=1e-8)
    np.testing.assert_allclose(ours.coef_, expected.coef_, rtol=1e-7, atol=1e-9)
    assert ours.intercept_ == pytest.approx(expected.intercept_, abs=1e-6)
    # And the least-squares solution (full rank), to LSQR's tolerance (1e-6).
    centered = x.toarray() - x.toarray().mean(axis=0)
    exact = np.linalg.lstsq(centered, y - y.mean(), rcond=None)[0]
    np.testing.assert_allclose(ours.coef_, exact, atol=1e-5)


def test_collinear_one_hot_blocks_give_the_min_norm_fit(trips: pd.DataFrame) -> None:
    """PU and DO blocks each sum to the intercept: LSQR's minimum-norm solution."""
    x, y = _design(trips, "separate")
    ours, expected = fit_linear_regression(x, y), LinearRegression().fit(x, y)
    assert _rmse(ours, x, y) == pytest.approx(_rmse(expected, x, y), rel=1e-9)
    assert ours.intercept_ == pytest.approx(expected.intercept_, abs=1e-3)
    np.testing.assert_allclose(ours.predict(x), expected.predict(x), atol=1e-2)
    # Minimum norm: orthogonal to the null space, i.e. each block's coefficients sum to 0.
    n_do = sum(
        name.startswith("DOLocationID=")
        for name in Preprocessor.fit(trips, feature_set("separate")).feature_names
    )
    for block in (ours.coef_[:n_do], ours.coef_[n_do:]):
        assert abs(block.sum()) < 1e-6 * np.linalg.norm(ours.coef_)
    # The exact least-squares fit is no better: converged.
    centered = x.toarray() - x.toarray().mean(axis=0)
    exact = np.linalg.lstsq(centered, y - y.mean(), rcond=None)[0]
    exact_rmse = float(np.sqrt(np.mean((centered @ exact - (y - y.mean())) ** 2)))
    assert _rmse(ours, x, y) == pytest.approx(exact_rmse, rel=1e-7)


def test_single_large_block(trips: pd.DataFrame) -> None:
    """PU_DO pairs alone: one block, eliminated whole; nothing dense but intercept and y."""
    x, y = _design(trips, "pu_do")
    pairs = x[:, :-1]  # without trip_distance: one-hot only
    assert pairs.shape[1] > 1_000
    ours, expected = fit_linear_regression(pairs, y), LinearRegression().fit(pairs, y)
    assert _rmse(ours, pairs, y) == pytest.approx(_rmse(expected, pairs, y), rel=1e-9)
    assert ours.intercept_ == pytest.approx(expected.intercept_, abs=1e-3)


def test_rows_with_unseen_categories(trips: pd.DataFrame) -> None:
    """Rows with fewer entries (zones unseen in the fitted vocabulary), some empty."""
    other = _trips(rows=2_000, seed=5)
    other.loc[0:99, "PULocationID"] = np.nan
    other.loc[50:149, "DOLocationID"] = np.nan
    preprocessor = Preprocessor.fit(trips.head(200), feature_set("separate"))
    x, y = preprocessor.transform_sparse(other), other["duration"].to_numpy()
    lengths = np.diff(x.indptr)
    for entries in (0, 1, 2):
        assert (lengths == entries).any()
    ours, expected = fit_linear_regression(x, y), LinearRegression().fit(x, y)
    assert _rmse(ours, x, y) == pytest.approx(_rmse(expected, x, y), rel=1e-9)
    assert ours.intercept_ == pytest.approx(expected.intercept_, abs=1e-3)


def test_unsorted_and_duplicate_entries_are_canonicalized() -> None:
    x, y = _random_binary(500, 12, 0.3, seed=2)
    coo = x.tocoo()
    shuffled = np.random.default_rng(0).permutation(coo.nnz)
    unsorted = sp.csr_matrix(
        (coo.data[shuffled], (coo.row[shuffled], coo.col[shuffled])), shape=x.shape
    )
    ours = fit_linear_regression(unsorted, y)
    np.testing.assert_allclose(ours.predict(x), LinearRegression().fit(x, y).predict(x), rtol=1e-8)


# --- the pieces -------------------------------------------------------------------------


@pytest.mark.parametrize("max_cells", [1 << 22, 1])  # bincount, or sparse summation
def test_gram_matrix(max_cells: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(linear, "_MAX_BINCOUNT_CELLS", max_cells)
    x, _ = _random_binary(800, 25, 0.2, seed=3)
    np.testing.assert_array_equal(linear._gram(x).toarray(), (x.T @ x).toarray())


def test_compact_design_has_the_gram_matrix_of_the_data(trips: pd.DataFrame) -> None:
    x, y = _design(trips, "separate")
    gram = linear._gram(x)
    column_sums = np.asarray(x.sum(axis=0)).ravel()
    xty = x.T @ y
    design, ones, target = linear._compact_design(
        gram, column_sums, xty, x.shape[0], float(y.sum()), float(y @ y)
    )
    compact = np.column_stack([sp.csr_matrix(design).toarray(), ones, target])
    full = sp.hstack([x, np.ones((x.shape[0], 1)), y[:, None]]).toarray()
    expected = full.T @ full
    assert compact.shape[0] == x.shape[1] + 2  # p + 2 rows, not one per trip
    np.testing.assert_allclose(compact.T @ compact, expected, rtol=1e-9, atol=1e-6)


# --- falling back to scikit-learn ---------------------------------------------------------


def _sklearn_fallback(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "taxi_duration.linear"]


def test_numeric_column_falls_back_to_sklearn(
    trips: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    """trip_distance makes LSQR stop early, where rounding decides: only sklearn matches."""
    x, y = _design(trips, "pu_do")
    with caplog.at_level(logging.INFO, logger="taxi_duration.linear"):
        ours = fit_linear_regression(x, y)
    assert any("not one-hot" in message for message in _sklearn_fallback(caplog))
    expected = LinearRegression().fit(x, y)
    np.testing.assert_array_equal(ours.coef_, expected.coef_)
    assert ours.intercept_ == expected.intercept_


def test_too_many_dense_columns_falls_back(
    trips: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(linear, "MAX_DENSE_COLUMNS", 10)
    x, y = _design(trips, "separate")
    with caplog.at_level(logging.INFO, logger="taxi_duration.linear"):
        ours = fit_linear_regression(x, y)
    assert any("dense columns" in message for message in _sklearn_fallback(caplog))
    np.testing.assert_array_equal(ours.coef_, LinearRegression().fit(x, y).coef_)


def test_dense_input_falls_back() -> None:
    x, y = _random_binary(300, 8, 0.3, seed=4)
    ours = fit_linear_regression(x.toarray(), y)
    np.testing.assert_array_equal(ours.coef_, LinearRegression().fit(x.toarray(), y).coef_)


def test_non_finite_target_is_sklearns_error() -> None:
    x, y = _random_binary(300, 8, 0.3, seed=4)
    y[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_linear_regression(x, y)


@pytest.mark.parametrize(
    ("x", "y"),
    [
        (sp.csr_matrix((0, 3)), np.empty(0)),
        (sp.csr_matrix(np.ones((3, 2))), np.ones((3, 2))),
    ],
)
def test_unhandled_shapes_raise_fallback(x: sp.csr_matrix, y: np.ndarray) -> None:
    with pytest.raises(linear.FallbackError):
        compact_lsqr(x, y)


# --- the fitted estimator -----------------------------------------------------------------


def test_estimator_predicts_and_pickles_like_sklearns(trips: pd.DataFrame) -> None:
    x, y = _design(trips, "separate")
    model = fit_linear_regression(x, y)
    assert isinstance(model, LinearRegression)
    assert model.n_features_in_ == x.shape[1]
    assert isinstance(model.intercept_, np.float64)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    with pytest.raises(ValueError, match="features"):
        model.predict(x[:, :-1])


def test_fit_estimator_uses_it(trips: pd.DataFrame) -> None:
    x, y = _design(trips, "separate")
    result = fit_estimator(training_config("linear", "separate"), x, y)
    assert isinstance(result.estimator, LinearRegression)
    np.testing.assert_array_equal(result.estimator.coef_, fit_linear_regression(x, y).coef_)
