"""scikit-learn's sparse linear regression, without passing over every trip at each iteration.

scikit-learn fits a sparse ``LinearRegression`` with LSQR on the centered design: each
iteration multiplies by the whole matrix (millions of rows) twice, minutes for a yellow
month. LSQR only ever uses the design through inner products, so it can run instead on any
matrix with the same Gram matrix: here one of ``p + 2`` rows (``p`` columns, intercept,
target) built in one pass over the data. The iteration is then scikit-learn's own (scipy's
``lsqr``, its operator, tolerances and start from zero, hence its minimum-norm answer on
collinear one-hot blocks), in exact arithmetic the same run, in well under a second.

Which designs: one-hot only (every stored value is 1, like the ``separate`` feature set).
There LSQR converges, and the result agrees with scikit-learn's as closely as scikit-learn
agrees with itself on the same rows in another order (RMSE to ~1e-8, intercept to ~1e-4).
With a numeric column such as ``trip_distance`` (``pu_do``, ``default``) the problem is
ill-conditioned, LSQR stops early and where it stops depends on rounding (scikit-learn on
the same rows in another order moves the RMSE by up to 0.4%): only scikit-learn's own run
reproduces its numbers, so there, and for anything else not handled (dense input,
non-finite values, a dense part over ``MAX_DENSE_COLUMNS``), scikit-learn fits.

The compact matrix: columns are split into a set S whose Gram block is diagonal (a one-hot
block's columns never share a row) and the rest R (other columns, intercept, target). Then
``[[sqrt(D), B / sqrt(D)], [0, W']]`` with ``W W' = E - B' D^-1 B`` (the Schur complement,
dense and as small as the blocks besides the largest) has exactly that Gram matrix.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, lsqr
from sklearn.linear_model import LinearRegression
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

logger = logging.getLogger(__name__)

# Largest dense part (columns outside the diagonal set, plus intercept and target).
MAX_DENSE_COLUMNS = 4000
# Pairs of one-hot positions spanning at most this many Gram cells are summed by bincount.
_MAX_BINCOUNT_CELLS = 1 << 22
# The compact design is kept as a dense array up to this many cells (BLAS beats sparse).
_MAX_DENSE_CELLS = 1 << 22


class FallbackError(Exception):
    """The compact solver does not apply; scikit-learn fits instead."""


def fit_linear_regression(x: sp.spmatrix | np.ndarray, y: np.ndarray) -> LinearRegression:
    """A fitted ``LinearRegression``: scikit-learn's fit of ``(x, y)``, fast on one-hot x."""
    try:
        # Small dense algebra: one BLAS thread is faster, and steady on a busy machine.
        with threadpool_limits(limits=1, user_api="blas"):
            coef, intercept = compact_lsqr(x, y)
    except FallbackError as reason:
        logger.info("linear regression by scikit-learn: %s", reason)
        return LinearRegression().fit(x, y)
    estimator = LinearRegression()
    estimator.coef_ = coef
    estimator.intercept_ = np.float64(intercept)
    estimator.n_features_in_ = int(x.shape[1])
    return estimator


def compact_lsqr(x: sp.spmatrix | np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """``(coef, intercept)`` as scikit-learn's sparse ``LinearRegression`` computes them.

    Raises FallbackError when ``x`` is not a one-hot sparse design this handles.
    """
    matrix = _one_hot_csr(x)
    n_rows, n_columns = matrix.shape
    target = np.asarray(y)
    if target.ndim != 1 or len(target) != n_rows:
        raise FallbackError(f"y of shape {target.shape} for {n_rows} rows")
    target = target.astype(np.float64, copy=False)
    if not np.isfinite(target).all():
        raise FallbackError("y has non-finite values")

    gram = _gram(matrix)
    column_sums = np.bincount(matrix.indices, minlength=n_columns).astype(np.float64)
    xty = np.asarray(matrix.T @ target, dtype=np.float64)
    compact, intercept_column, target_column = _compact_design(
        gram, column_sums, xty, n_rows, float(target.sum()), float(target @ target)
    )
    # scikit-learn's operator (``LinearRegression.fit``, sparse branch) on the compact rows.
    x_offset = column_sums / n_rows
    y_offset = float(target.sum()) / n_rows
    compact_t = compact.T.copy() if isinstance(compact, np.ndarray) else compact.T.tocsr()

    def matvec(b: np.ndarray) -> np.ndarray:
        return np.asarray(compact @ b - intercept_column * b.dot(x_offset))

    def rmatvec(b: np.ndarray) -> np.ndarray:
        return np.asarray(compact_t @ b - x_offset * intercept_column.dot(b))

    operator = LinearOperator(compact.shape, matvec=matvec, rmatvec=rmatvec, dtype=np.float64)
    tol = LinearRegression().tol
    rhs = target_column - y_offset * intercept_column  # the centered target
    coef = np.asarray(lsqr(operator, rhs, atol=tol, btol=tol)[0], dtype=np.float64)
    return coef, y_offset - float(x_offset @ coef)


def _one_hot_csr(x: sp.spmatrix | np.ndarray) -> sp.csr_matrix:
    if not sp.issparse(x):
        raise FallbackError("dense input")
    matrix = sp.csr_matrix(x)
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise FallbackError(f"empty design {matrix.shape}")
    if not (matrix.data == 1).all():
        raise FallbackError("not one-hot: numeric columns make LSQR stop early, by rounding")
    if not matrix.has_canonical_format:
        matrix = matrix.copy()
        matrix.sum_duplicates()
        if not (matrix.data == 1).all():
            raise FallbackError("not one-hot: repeated entries")
    return matrix


def _gram(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """``X.T @ X`` of a 0/1 matrix (sparse, float64), by bincount of column pairs.

    Rows are cut in stored positions: the k-th entry of every row. One-hot rows store one
    entry per block in block order, so a position falls in one block and a pair of
    positions in a small rectangle of the Gram matrix.
    """
    n_columns = matrix.shape[1]
    lengths = np.diff(matrix.indptr)
    width = int(lengths.max())
    rows = [np.arange(n_columns)]
    columns = [np.arange(n_columns)]
    values = [np.bincount(matrix.indices, minlength=n_columns).astype(np.float64)]
    if width > 1:
        index, stored = _by_position(matrix, lengths, width)
        for first in range(width):
            for second in range(first + 1, width):
                both = None if stored is None else stored[:, first] & stored[:, second]
                block = _pair_counts(index[:, first], index[:, second], both)
                # Sorted indices within a row: first < second, an upper-triangle entry.
                rows += [block[0], block[1]]
                columns += [block[1], block[0]]
                values += [block[2], block[2]]
    gram = sp.coo_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))),
        shape=(n_columns, n_columns),
    ).tocsr()
    gram.sum_duplicates()
    return gram


def _by_position(
    matrix: sp.csr_matrix, lengths: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Column indices as a (rows, width) array, and which cells hold an entry (None: all)."""
    n_rows = matrix.shape[0]
    if (lengths == width).all():
        return matrix.indices.reshape(n_rows, width), None
    row = np.repeat(np.arange(n_rows), lengths)
    position = np.arange(len(matrix.indices)) - np.repeat(matrix.indptr[:-1], lengths)
    stored = np.zeros((n_rows, width), dtype=bool)
    stored[row, position] = True
    # An empty cell takes the smallest index stored at its position: the range stays tight.
    index = np.zeros((n_rows, width), dtype=matrix.indices.dtype)
    for k in range(width):
        at_k = position == k
        if at_k.any():
            index[:, k] = matrix.indices[at_k].min()
    index[row, position] = matrix.indices
    return index, stored


def _pair_counts(
    first: np.ndarray, second: np.ndarray, both: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How many rows hold each (first, second) index pair: rows, columns, counts (nonzero)."""
    if both is not None:
        first, second = first[both], second[both]
    if len(first) == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0)
    first_low, first_high = int(first.min()), int(first.max())
    second_low, second_high = int(second.min()), int(second.max())
    span = second_high - second_low + 1
    cells = (first_high - first_low + 1) * span
    if cells <= _MAX_BINCOUNT_CELLS:
        key = (first.astype(np.int64) - first_low) * span + (second - second_low)
        counts = np.bincount(key, minlength=cells)
        present = np.flatnonzero(counts)
        return (
            present // span + first_low,
            present % span + second_low,
            counts[present].astype(np.float64),
        )
    block = sp.coo_matrix((np.ones(len(first)), (first, second))).tocsr()
    block.sum_duplicates()
    coo = block.tocoo()
    return coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data


def _diagonal_set(gram: sp.csr_matrix) -> np.ndarray:
    """A large set of pairwise orthogonal columns (a boolean mask).

    Greedy maximal independent sets of the Gram matrix's off-diagonal graph, in column
    order (which takes the first one-hot block whole) and by increasing degree; the larger.
    """
    off_diagonal = gram.copy()
    off_diagonal.setdiag(0)
    off_diagonal.eliminate_zeros()
    degree = np.diff(off_diagonal.indptr)
    best = np.zeros(gram.shape[0], dtype=bool)
    for order in (np.arange(gram.shape[0]), np.argsort(degree, kind="stable")):
        chosen = _greedy_independent(off_diagonal, order)
        if chosen.sum() > best.sum():
            best = chosen
    return best


def _greedy_independent(graph: sp.csr_matrix, order: np.ndarray) -> np.ndarray:
    indptr, indices = graph.indptr, graph.indices
    chosen = np.zeros(graph.shape[0], dtype=bool)
    blocked = np.zeros(graph.shape[0], dtype=bool)
    for column in order.tolist():
        if not blocked[column]:
            chosen[column] = True
            blocked[indices[indptr[column] : indptr[column + 1]]] = True
    return chosen


def _compact_design(
    gram: sp.csr_matrix,
    column_sums: np.ndarray,
    xty: np.ndarray,
    n_rows: int,
    y_sum: float,
    y_squares: float,
) -> tuple[np.ndarray | sp.csr_matrix, np.ndarray, np.ndarray]:
    """A matrix with the Gram matrix of ``[X, 1, y]``: its X part, 1 column and y column."""
    n_columns = gram.shape[0]
    diagonal_set = _diagonal_set(gram)
    s_columns = np.flatnonzero(diagonal_set)
    t_columns = np.flatnonzero(~diagonal_set)
    n_rest = len(t_columns) + 2  # R: the T columns, the intercept, the target
    if n_rest > MAX_DENSE_COLUMNS:
        raise FallbackError(f"{n_rest} dense columns (more than {MAX_DENSE_COLUMNS})")

    s_diagonal = gram.diagonal()[s_columns]  # counts: positive for a trained vocabulary
    s_root = np.sqrt(s_diagonal)
    s_inverse_root = np.divide(1.0, s_root, out=np.zeros_like(s_root), where=s_root > 0)
    # Gram of S with R, and of R with itself.
    coupling = sp.hstack(
        [
            gram[s_columns][:, t_columns],
            sp.csr_matrix(column_sums[s_columns][:, None]),
            sp.csr_matrix(xty[s_columns][:, None]),
        ],
        format="csr",
    )
    rest = np.empty((n_rest, n_rest))
    rest[:-2, :-2] = gram[t_columns][:, t_columns].toarray()
    rest[:-2, -2] = rest[-2, :-2] = column_sums[t_columns]
    rest[:-2, -1] = rest[-1, :-2] = xty[t_columns]
    rest[-2, -2], rest[-2, -1], rest[-1, -2], rest[-1, -1] = n_rows, y_sum, y_sum, y_squares
    upper_right = sp.diags(s_inverse_root) @ coupling
    schur = rest - np.asarray((upper_right.T @ upper_right).todense())
    lower = _square_root(schur, reference=np.diag(rest)).T

    n_compact = len(s_columns) + n_rest
    stacked = sp.vstack(
        [
            sp.hstack([sp.diags(s_root), upper_right], format="csr"),
            sp.hstack([sp.csr_matrix((n_rest, len(s_columns))), sp.csr_matrix(lower)]),
        ],
        format="csc",
    )
    # Columns of ``stacked``: S, then R. Back to the design's order.
    position = np.empty(n_columns, dtype=np.int64)
    position[s_columns] = np.arange(len(s_columns))
    position[t_columns] = len(s_columns) + np.arange(len(t_columns))
    design = stacked[:, position]
    intercept_column = stacked[:, n_compact - 2].toarray().ravel()
    target_column = stacked[:, n_compact - 1].toarray().ravel()
    if n_compact * n_columns <= _MAX_DENSE_CELLS:
        return design.toarray(), intercept_column, target_column
    return design.tocsr(), intercept_column, target_column


def _square_root(matrix: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``W`` with ``W @ W.T == matrix`` for a symmetric positive semi-definite ``matrix``.

    Scaled to unit diagonal first; a column whose diagonal is negligible next to
    ``reference`` (what it was before elimination) is taken as exactly explained (zero).
    """
    symmetric = (matrix + matrix.T) / 2
    diagonal = np.diag(symmetric)
    live = diagonal > 1e-12 * np.maximum(reference, np.finfo(float).tiny)
    root = np.zeros(symmetric.shape)
    if live.any():
        scale = np.sqrt(diagonal[live])
        scaled = symmetric[np.ix_(live, live)] / np.outer(scale, scale)
        eigenvalues, eigenvectors = scipy.linalg.eigh(scaled, driver="evd")
        factor = eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))
        root[np.ix_(live, np.flatnonzero(live))] = scale[:, None] * factor
    return root
