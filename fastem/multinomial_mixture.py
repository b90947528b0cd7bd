"""Mixtures of multinomials (count vectors, e.g. bag-of-words documents):
``MultinomialMixture``.

Component k has a probability vector theta_k over the n_features outcomes (words); a
row x of counts with total n has

    log p(x | k) = log n! - sum_j log x_j! + sum_j x_j log theta_kj

The M-step is theta_kj = (sum_i w_i r_ik x_ij + alpha) / (sum_j' sum_i w_i r_ik x_ij'
+ n_features alpha) (see ``_discrete.py`` for alpha).  ``X`` may be a dense array or a
``scipy.sparse`` matrix; sparse input is used as CSR (converted only if it is in
another format) and never densified: the sparse kernels touch the stored entries only.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import numpy as np

from ._discrete import DiscreteMixture, Encoded, check_probability_table, smoothed_log_probs
from ._validation import _is_sparse, check_array_or_csr, row_blocks

if TYPE_CHECKING:
    from typing import Any, Optional, Union

    from ._typing import ArrayLike


#: (scikit-learn's checks of the positive_only tag look for "Negative values in data")
_NEGATIVE = ("Negative values in data: X contains negative counts; MultinomialMixture needs "
             "counts >= 0.")


def _chunks(arr):
    """Row (or entry) blocks: checks on them keep boolean temporaries small."""
    return (arr[a:b] for a, b in row_blocks(arr.shape[0], arr.size // max(1, arr.shape[0])))


def _weighted_total(enc, chunk):
    return float(chunk.w @ enc.totals)


class MultinomialMixture(DiscreteMixture):
    """Mixture of multinomials over count vectors, fitted by EM.

    Parameters
    ----------
    n_components : int, default=1
    alpha : float > 0, default=1e-3
        Pseudo-count of a symmetric Dirichlet prior on every theta_k, so no probability
        is 0.
    tol, max_iter, n_init, random_state, warm_start, verbose, verbose_interval
        As in ``GaussianMixture``.
    init_params : {"random_from_data", "random", "kmeans"}, default="random_from_data"
        "kmeans" needs dense X.
    weights_init : array-like (n_components,), default=None
    means_init : array-like (n_components, n_features), default=None
        Initial theta: positive rows summing to 1.
    backend, n_threads, learning_decay, learning_offset
        As in ``GaussianMixture``; results are bit-identical for any ``n_threads``.

    Notes
    -----
    ``X``: non-negative counts (fractional values, e.g. tf-idf weights, are accepted),
    dense or ``scipy.sparse``.  ``fit`` accepts ``sample_weight``.

    Attributes
    ----------
    weights_ : ndarray (n_components,)
    means_ : ndarray (n_components, n_features)
        theta: each row a probability vector over the features.
    mean_total_ : float
        Weighted mean row total of the training data (the default length in ``sample``).
    converged_, n_iter_, lower_bound_, lower_bounds_, backend_, n_features_in_
    """

    _accepts_sparse = True
    _positive_only = True
    _fitted_attributes = (*DiscreteMixture._fitted_attributes, "means_", "_log_theta",
                          "mean_total_")

    def _check_fitted_state(self):
        super()._check_fitted_state()
        k, d = self.n_components, self.n_features_in_
        self._fitted_array("means_", (k, d))
        self._check_log_tables("_log_theta", self._fitted_array("_log_theta", (d, k)), [d])
        if not (isinstance(self.mean_total_, float) and self.mean_total_ >= 0):
            raise ValueError("mean_total_ must be a float >= 0")
    _parameter_constraints = dict(DiscreteMixture._common_constraints)

    def __init__(self, n_components: int = 1, *, alpha: float = 1e-3, tol: float = 1e-3,
                 max_iter: int = 100, n_init: Union[int, str] = 1,
                 init_params: str = "random_from_data", weights_init: Optional[ArrayLike] = None,
                 means_init: Optional[ArrayLike] = None, random_state: Any = None,
                 warm_start: bool = False, verbose: int = 0, verbose_interval: int = 10,
                 backend: Optional[str] = None, n_threads: Optional[int] = None,
                 learning_decay: float = 0.7, learning_offset: float = 10.0) -> None:
        self._set_common(n_components, alpha, tol, max_iter, n_init, init_params, weights_init,
                         means_init, random_state, warm_start, verbose, verbose_interval,
                         backend, n_threads, learning_decay, learning_offset)

    # ------------------------------------------------------------------ data
    def _check_input(self, X, *, owner, copy, name="X"):
        """Counts: ``check_array_or_csr`` (a sparse X as canonical CSR, never densified),
        then no negative entry."""
        X = check_array_or_csr(X, name=name, owner=owner, copy=copy)
        if any((c < 0).any() for c in _chunks(X.data if _is_sparse(X) else X)):
            raise ValueError(_NEGATIVE)
        return X

    def _encode(self, X):
        from scipy.special import gammaln

        # log n_i! - sum_j log x_ij!, and the row totals n_i, in chunks of rows so that
        # temporaries stay small
        n = X.shape[0]
        totals, log_fact = np.empty(n), np.empty(n)
        if _is_sparse(X):
            per_row = max(1, X.nnz // max(1, n))
            for start, stop in row_blocks(n, per_row):
                lo, hi = X.indptr[start], X.indptr[stop]
                row = np.repeat(np.arange(stop - start), np.diff(X.indptr[start:stop + 1]))
                v = X.data[lo:hi].astype(np.float64)
                totals[start:stop] = np.bincount(row, weights=v, minlength=stop - start)
                log_fact[start:stop] = np.bincount(row, weights=gammaln(v + 1.0),
                                                   minlength=stop - start)
        else:
            for start, stop in row_blocks(*X.shape):
                block = X[start:stop].astype(np.float64)
                totals[start:stop] = block.sum(axis=1)
                log_fact[start:stop] = gammaln(block + 1.0).sum(axis=1)
        log_base = gammaln(totals + 1.0) - log_fact
        if _is_sparse(X):
            return Encoded(csr=X, n_features=X.shape[1], log_base=log_base, totals=totals)
        return Encoded(X=X, log_base=log_base, totals=totals)

    def _em_initialize(self, parts, random_state):
        self.mean_total_ = sum(parts.map(_weighted_total)) / parts.total_weight
        super()._em_initialize(parts, random_state)

    # ------------------------------------------------------------------ parameters
    def _operands(self, enc):
        return self._log_theta, None, np.ascontiguousarray(np.log(self.weights_))

    def _set_from_stats(self, nk, sum_x, sum_obs):
        totals = sum_x.sum(axis=0, keepdims=True)  # expected words per component
        self._log_theta = np.ascontiguousarray(
            smoothed_log_probs(sum_x, totals, sum_x.shape[0], self.alpha))
        self.means_ = np.exp(self._log_theta).T.copy()

    def _set_user_tables(self, n_features):
        theta = check_probability_table(self.means_init, (self.n_components, n_features),
                                        "means_init", rows_sum_to_one=True)
        self._log_theta = np.ascontiguousarray(np.log(theta).T)
        self.means_ = theta

    def _log_prior(self):
        return self.alpha * float(np.sum(self._log_theta))

    def _get_parameters(self):
        return self.weights_.copy(), self.means_.copy(), self._log_theta.copy()

    def _set_parameters(self, params):
        self.weights_, self.means_, self._log_theta = params

    def _n_parameters(self):
        k, d = self.means_.shape
        return int(k * (d - 1) + k - 1)

    def sample(self, n_samples: int = 1, *, n_trials: Optional[int] = None) -> tuple:
        """Draw count vectors from the fitted model.

        ``n_trials``: the total count of each drawn row (an int), by default the
        rounded mean row total of the training data.  Returns (X (n_samples,
        n_features) float64, y (n_samples,) the component of each sample).
        """
        self._check_is_fitted()
        if n_trials is None:
            n_trials = int(round(self.mean_total_))
        if not isinstance(n_trials, numbers.Integral) or n_trials < 0:
            raise ValueError(f"n_trials must be an int >= 0; got {n_trials!r}.")
        rng = self._sample_rng()
        labels = self._sample_components(n_samples, rng)
        theta = self.means_ / self.means_.sum(axis=1, keepdims=True)
        X = np.vstack([rng.multinomial(n_trials, theta[k]) for k in labels]).astype(np.float64)
        return X, labels.astype(np.int32)
