"""Mixtures of independent categorical features (latent class analysis):
``CategoricalMixture``.

Feature j takes one of C_j categories, coded 0..C_j-1; component k has a probability
table theta_kj over them, and the features are independent given the component:

    log p(x | k) = sum_j log theta_kj[x_j]

A missing code (-1) is marginalised out exactly: its factor sums to one over the
categories, so the feature is simply left out of the product, and its M-step
normalises by the responsibilities of the samples where it was observed:

    theta_kjc = (sum_i w_i r_ik [x_ij = c] + alpha) / (sum_i w_i r_ik [x_ij observed]
                + C_j alpha)

Internally each row is one-hot encoded as a sparse row (one stored 1 per observed
feature, at column offset_j + x_ij) and the model runs on the CSR kernels of the
discrete family.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import numpy as np

from ._stream import Chunk
from ._discrete import DiscreteMixture, Encoded, check_probability_table, smoothed_log_probs
from ._validation import Interval, Options, _is_sparse, row_blocks

if TYPE_CHECKING:
    from typing import Any, Optional, Union

    from ._typing import ArrayLike


def _column_max(chunk):
    return chunk.X.max(axis=0)


def _first_unknown_code(chunk, n_categories):
    """(row, feature, code) of the chunk's first code beyond its feature's categories."""
    too_big = chunk.X >= n_categories[None, :]
    if not too_big.any():
        return None
    i, j = np.argwhere(too_big)[0]
    return int(chunk.start + i), int(j), chunk.X[i, j]


class CategoricalMixture(DiscreteMixture):
    """Mixture of independent categorical features (latent class model), fitted by EM.

    Parameters
    ----------
    n_components : int, default=1
    n_categories : None, int or array-like of int, default=None
        Categories per feature (codes 0..n-1).  None infers ``max code + 1`` per feature
        from the training data; an int applies to every feature.
    alpha : float > 0, default=1e-3
        Pseudo-count of a symmetric Dirichlet prior on every probability table.
    tol, max_iter, n_init, random_state, warm_start, verbose, verbose_interval
        As in ``GaussianMixture``.
    init_params : {"random_from_data", "random"}, default="random_from_data"
    weights_init : array-like (n_components,), default=None
    means_init : list of array-like, default=None
        Initial tables: for every feature an (n_components, n_categories_j) array of
        positive rows summing to 1.
    backend, n_threads, learning_decay, learning_offset
        As in ``GaussianMixture``; results are bit-identical for any ``n_threads``.

    Notes
    -----
    ``X``: integer category codes (n_samples, n_features); -1 marks a missing entry.

    Attributes
    ----------
    weights_ : ndarray (n_components,)
    probabilities_ : list of ndarray
        For every feature j, the (n_components, n_categories_[j]) table theta_kj.
    n_categories_ : ndarray of int (n_features,)
    converged_, n_iter_, lower_bound_, lower_bounds_, backend_, n_features_in_
    """

    _categorical = True
    _fitted_attributes = (*DiscreteMixture._fitted_attributes, "_log_theta", "n_categories_")

    def _restore_fitted_state(self):
        self._publish()

    def _check_fitted_state(self):
        super()._check_fitted_state()
        cats = self._fitted_array("n_categories_", (self.n_features_in_,), kind="i")
        if (cats < 1).any():
            raise ValueError("n_categories_ must be positive")
        table = self._fitted_array("_log_theta", (int(cats.sum()), self.n_components))
        self._check_log_tables("_log_theta", table, cats)

    _parameter_constraints = {**DiscreteMixture._common_constraints,
                              "init_params": [Options("random_from_data", "random")],
                              "n_categories": [None, Interval(numbers.Integral, 1, None),
                                               "array-like"]}

    def __init__(self, n_components: int = 1, *,
                 n_categories: Optional[Union[int, ArrayLike]] = None, alpha: float = 1e-3,
                 tol: float = 1e-3, max_iter: int = 100, n_init: Union[int, str] = 1,
                 init_params: str = "random_from_data", weights_init: Optional[ArrayLike] = None,
                 means_init: Optional[ArrayLike] = None, random_state: Any = None,
                 warm_start: bool = False, verbose: int = 0, verbose_interval: int = 10,
                 backend: Optional[str] = None, n_threads: Optional[int] = None,
                 learning_decay: float = 0.7, learning_offset: float = 10.0) -> None:
        self.n_categories = n_categories
        self._set_common(n_components, alpha, tol, max_iter, n_init, init_params, weights_init,
                         means_init, random_state, warm_start, verbose, verbose_interval,
                         backend, n_threads, learning_decay, learning_offset)

    # ------------------------------------------------------------------ data
    def _check_input(self, X, *, owner, copy, name="X"):
        if _is_sparse(X):
            raise TypeError(f"{owner} needs a dense array of integer category codes, not a "
                            "sparse matrix.")
        try:
            arr = np.asarray(X)
        except Exception as exc:  # ragged lists and the like
            raise ValueError(f"X could not be converted to a 2-D array of codes: {exc}") from exc
        if arr.ndim != 2:
            raise ValueError(f"Expected a 2-D array of category codes, got {arr.ndim} dimension(s)"
                             ". Reshape your data to (n_samples, n_features), e.g. "
                             "X.reshape(-1, 1) for a single feature.")
        if arr.shape[1] < 1:
            raise ValueError(f"0 feature(s) (shape={arr.shape}) while a minimum of 1 is "
                             f"required by {owner}.")
        if arr.shape[0] < 1:
            raise ValueError(f"Found X of shape {arr.shape} while {owner} needs at least one "
                             "sample: X is empty.")
        if arr.dtype.kind == "c":
            raise ValueError(f"Complex data not supported: X has dtype {arr.dtype}; "
                             f"{owner} needs integer category codes.")
        if arr.dtype.kind == "O":  # e.g. numbers in an object array: as numbers, if they are
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"X must hold integer category codes; got objects ({exc}). "
                                "Encode categories as 0..n-1 first (e.g. pandas .cat.codes)."
                                ) from exc
        if arr.dtype.kind == "b":
            arr = arr.astype(np.int64)
        elif arr.dtype.kind == "f":
            if np.isnan(arr).any():
                raise ValueError("X contains NaN; CategoricalMixture marks a missing entry with "
                                 "the code -1 (e.g. X = np.where(np.isnan(X), -1, X)).")
            if not np.isfinite(arr).all():
                raise ValueError("X contains infinity; it must hold integer category codes.")
            if (arr != np.round(arr)).any():
                raise ValueError("X must hold integer category codes; it has non-integer values.")
            arr = arr.astype(np.int64)
        elif arr.dtype.kind not in "iu":
            raise TypeError(f"X must hold integer category codes; got dtype {arr.dtype}. "
                            "Encode categories as 0..n-1 first (e.g. pandas .cat.codes).")
        if arr.dtype.kind == "i" and (arr < -1).any():
            raise ValueError("X contains negative codes other than -1 (the missing-entry code).")
        return arr

    def _validate_data(self, X, *, reset, copy=False):
        X = super()._validate_data(X, reset=reset, copy=copy)
        one = Chunk(0, X.shape[0], X, None, (), 1)
        self._check_codes(lambda fn, *args: [fn(one, *args)], X.shape[1], reset)
        return X

    def _check_rows(self, rows, reset):
        self._check_codes(rows.map, rows.n_features, reset)

    def _check_codes(self, map_blocks, d, reset):
        """Set n_categories_ (on ``reset``) and refuse codes beyond it; ``map_blocks(fn,
        *args)`` gives ``fn(chunk, *args)`` over the data's chunks in order."""
        if reset:
            if self.n_categories is None:  # inferred: max code + 1, nothing to refuse
                top = np.full(d, -1, dtype=np.int64)
                for block_top in map_blocks(_column_max):
                    np.maximum(top, block_top, out=top)
                self.n_categories_ = np.maximum(top + 1, 1)
                return
            self.n_categories_ = self._declared_categories(d)
        for bad in map_blocks(_first_unknown_code, self.n_categories_):
            if bad is not None:
                i, j, code = bad
                raise ValueError(
                    f"X[{i}, {j}] = {code} but feature {j} has "
                    f"{self.n_categories_[j]} categories (codes 0..{self.n_categories_[j] - 1}); "
                    + ("pass n_categories to declare more." if reset else
                       "this code was not seen (or declared) when the model was fitted."))

    def _declared_categories(self, d):
        cats = np.asarray(self.n_categories)
        if cats.ndim == 0:
            cats = np.full(d, cats)
        if cats.shape != (d,) or cats.dtype.kind not in "iu" or (cats < 1).any():
            raise ValueError(f"n_categories must be a positive int or {d} positive ints (one per "
                             f"feature); got {self.n_categories!r}.")
        return cats.astype(np.int64)

    def _offsets(self):
        return np.concatenate([[0], np.cumsum(self.n_categories_)])

    def _encode(self, X):
        """One-hot CSR: row i stores a 1 at column offset_j + x_ij for each observed j.

        Built in row chunks, so the only full-size arrays are the CSR's own (an int32
        column index and a float32 1 per observed entry)."""
        import scipy.sparse as sp

        offsets = self._offsets()
        n = X.shape[0]
        counts = np.empty(n, dtype=np.int64)
        for start, stop in row_blocks(*X.shape):
            counts[start:stop] = (X[start:stop] >= 0).sum(axis=1)
        nnz = int(counts.sum())
        index = np.int32 if max(offsets[-1], nnz) < 2**31 else np.int64
        indptr = np.zeros(n + 1, dtype=index)
        np.cumsum(counts, out=indptr[1:])
        columns = np.empty(nnz, dtype=index)
        for start, stop in row_blocks(*X.shape):
            block = X[start:stop]
            # row-major boolean indexing keeps each row's entries in feature order
            columns[indptr[start]:indptr[stop]] = (block + offsets[:-1][None, :])[block >= 0]
        csr = sp.csr_matrix((np.ones(nnz, dtype=np.float32), columns, indptr),
                            shape=(n, int(offsets[-1])))
        return Encoded(csr=csr, n_features=int(offsets[-1]))

    # ------------------------------------------------------------------ parameters
    def _operands(self, enc):
        return self._log_theta, None, np.ascontiguousarray(np.log(self.weights_))

    def _set_from_stats(self, nk, sum_x, sum_obs):
        offsets = self._offsets()
        # expected observed samples of feature j in component k, repeated per category
        per_feature = np.add.reduceat(sum_x, offsets[:-1], axis=0)
        totals = np.repeat(per_feature, self.n_categories_, axis=0)
        sizes = np.repeat(self.n_categories_, self.n_categories_)[:, None]
        self._log_theta = np.ascontiguousarray(
            smoothed_log_probs(sum_x, totals, sizes, self.alpha))
        self._publish()

    def _publish(self):
        offsets = self._offsets()
        theta = np.exp(self._log_theta)
        self.probabilities_ = [theta[offsets[j]:offsets[j + 1]].T.copy()
                               for j in range(len(self.n_categories_))]

    def _set_user_tables(self, n_features):
        tables = self.means_init
        if not isinstance(tables, (list, tuple)) or len(tables) != len(self.n_categories_):
            raise ValueError(f"means_init must be a list of {len(self.n_categories_)} tables, one "
                             "per feature, each (n_components, n_categories_j).")
        checked = [check_probability_table(t, (self.n_components, int(c)), f"means_init[{j}]",
                                           rows_sum_to_one=True)
                   for j, (t, c) in enumerate(zip(tables, self.n_categories_))]
        self._log_theta = np.ascontiguousarray(np.log(np.concatenate([t.T for t in checked])))
        self._publish()

    def _log_prior(self):
        return self.alpha * float(np.sum(self._log_theta))

    def _get_parameters(self):
        return self.weights_.copy(), self._log_theta.copy()

    def _set_parameters(self, params):
        self.weights_, self._log_theta = params
        self._publish()

    def _n_parameters(self):
        k = self.n_components
        return int(k * int(np.sum(self.n_categories_ - 1)) + k - 1)

    def sample(self, n_samples: int = 1) -> tuple:
        """Draw category codes from the fitted model: (X (n_samples, n_features) int64,
        y (n_samples,) the component of each sample)."""
        self._check_is_fitted()
        rng = self._sample_rng()
        labels = self._sample_components(n_samples, rng)
        X = np.empty((labels.size, len(self.probabilities_)), dtype=np.int64)
        for j, table in enumerate(self.probabilities_):
            cumulative = np.cumsum(table, axis=1)[labels]
            u = rng.random(labels.size)[:, None] * cumulative[:, -1:]
            X[:, j] = (u >= cumulative).sum(axis=1)  # inverse-CDF draw
        return X, labels.astype(np.int32)
