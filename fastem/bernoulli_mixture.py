"""Mixtures of independent Bernoulli (or binomial) features: ``BernoulliMixture``.

Each component k has a success probability mu_kj per feature; a sample's features are
independent given the component.  With ``n_trials=m`` each feature counts successes in
m trials (binomial); m=1 is the Bernoulli case, e.g. the "three coins" model: coin A
picks coin B or coin C, and only the chosen coin's tosses are seen.

    log p(x | k) = sum_j [x_j log mu_kj + (m - x_j) log(1 - mu_kj) + log C(m, x_j)]

A missing entry (NaN) is marginalised out exactly: its term is simply left out of the
sum (it sums to one over the unseen value), so it neither counts as 0 nor as 1, and
the M-step divides each feature's expected successes by its own expected number of
observed trials:

    mu_kj = (sum_i w_i r_ik x_ij + alpha) / (m sum_i w_i r_ik o_ij + 2 alpha)

with o_ij = 1 when x_ij is observed (see ``_discrete.py`` for alpha).
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import numpy as np

from ._discrete import DiscreteMixture, Encoded, check_probability_table, smoothed_log_probs
from ._validation import Interval, check_array, row_blocks

if TYPE_CHECKING:
    from typing import Any, Optional, Union

    from ._typing import ArrayLike


def _entry(name, i, j):
    """How an error names entry (i, j) of ``name`` (X, or a piece of streamed X)."""
    return f"{name}[{i}, {j}]" if name == "X" else f"row {i}, column {j} of {name}"


class BernoulliMixture(DiscreteMixture):
    """Mixture of independent Bernoulli / binomial features, fitted by EM.

    Parameters
    ----------
    n_components : int, default=1
    n_trials : int, default=1
        Trials per feature: 1 for 0/1 data, m for success counts out of m.
    alpha : float > 0, default=1e-3
        Pseudo-count of a symmetric Beta prior on every probability (added to the
        expected successes and to the expected failures), so no probability is 0 or 1.
    tol, max_iter, n_init, random_state, warm_start, verbose, verbose_interval
        As in ``GaussianMixture``.
    init_params : {"random_from_data", "random", "kmeans"}, default="random_from_data"
        Initial responsibilities: one random sample per component (hard), random
        responsibilities, or fastem's KMeans labels (data without missing entries).
    weights_init : array-like (n_components,), default=None
    means_init : array-like (n_components, n_features), default=None
        Initial success probabilities, strictly between 0 and 1.
    backend, n_threads, learning_decay, learning_offset
        As in ``GaussianMixture``; results are bit-identical for any ``n_threads``.

    Notes
    -----
    ``X`` holds 0/1 values (bool, int or float), or counts 0..n_trials; NaN marks a
    missing entry, which is marginalised out.  ``fit`` accepts ``sample_weight``.

    Attributes
    ----------
    weights_ : ndarray (n_components,)
    means_ : ndarray (n_components, n_features)
        Success probability of every feature in every component.
    converged_, n_iter_, lower_bound_, lower_bounds_, backend_, n_features_in_
        ``lower_bound_`` is the mean log-likelihood plus the prior term of the smoothing
        (see ``fastem._discrete``).
    """

    _allows_nan = True
    _positive_only = True
    _fitted_attributes = (*DiscreteMixture._fitted_attributes, "means_", "_log_p", "_log_q")

    def _check_fitted_state(self):
        super()._check_fitted_state()
        k, d = self.n_components, self.n_features_in_
        mu = self._fitted_array("means_", (k, d))
        if (mu <= 0).any() or (mu >= 1).any():
            raise ValueError("means_ must lie strictly between 0 and 1")
        # log p and log(1 - p) interleaved per feature: each pair sums to one
        log_p, log_q = (self._fitted_array(n, (d, k)) for n in ("_log_p", "_log_q"))
        pairs = np.stack([log_p, log_q], axis=1).reshape(2 * d, k)
        self._check_log_tables("_log_p / _log_q", pairs, np.full(d, 2))
    _parameter_constraints = {**DiscreteMixture._common_constraints,
                              "n_trials": [Interval(numbers.Integral, 1, None)]}

    def __init__(self, n_components: int = 1, *, n_trials: int = 1, alpha: float = 1e-3,
                 tol: float = 1e-3, max_iter: int = 100, n_init: Union[int, str] = 1,
                 init_params: str = "random_from_data", weights_init: Optional[ArrayLike] = None,
                 means_init: Optional[ArrayLike] = None, random_state: Any = None,
                 warm_start: bool = False, verbose: int = 0, verbose_interval: int = 10,
                 backend: Optional[str] = None, n_threads: Optional[int] = None,
                 learning_decay: float = 0.7, learning_offset: float = 10.0) -> None:
        self.n_trials = n_trials
        self._set_common(n_components, alpha, tol, max_iter, n_init, init_params, weights_init,
                         means_init, random_state, warm_start, verbose, verbose_interval,
                         backend, n_threads, learning_decay, learning_offset)

    # ------------------------------------------------------------------ data
    def _check_input(self, X, *, owner, copy, name="X"):
        X = check_array(X, name=name, owner=owner, copy=copy, allow_nan=True)
        m = int(self.n_trials)
        for start, stop in row_blocks(*X.shape):  # blocks bound the temporaries
            block = X[start:stop]
            bad = ~np.isnan(block) & ((block < 0) | (block > m) | (block != np.round(block)))
            if bad.any():
                i, j = np.argwhere(bad)[0]
                value = float(block[i, j])
                want = "0 or 1" if m == 1 else f"whole numbers of successes in 0..{m}"
                raise ValueError(
                    ("Negative values in data: " if value < 0 else "")
                    + f"{owner} needs {want} (NaN for a missing entry); "
                    f"{_entry(name, start + i, j)} is {value!r}."
                    + ("" if m > 1 else " For counts out of m trials, set n_trials=m."))
        return X

    def _encode(self, X):
        missing = any(np.isnan(X[a:b]).any() for a, b in row_blocks(*X.shape))
        return Encoded(X=X, missing=missing, log_base=self._log_binomial_coefficients(X))

    def _log_binomial_coefficients(self, X):
        """sum_j log C(m, x_ij) over the observed entries of each row (None when m = 1)."""
        from scipy.special import gammaln

        m = int(self.n_trials)
        if m == 1:
            return None
        out = np.empty(X.shape[0])
        for start, stop in row_blocks(*X.shape):
            x = X[start:stop].astype(np.float64)
            terms = gammaln(m + 1.0) - gammaln(x + 1.0) - gammaln(m - x + 1.0)
            out[start:stop] = np.where(np.isnan(x), 0.0, terms).sum(axis=1)
        return out

    # ------------------------------------------------------------------ parameters
    def _operands(self, enc):
        m = float(self.n_trials)
        coef = np.ascontiguousarray(self._log_p - self._log_q)
        obs_coef = np.ascontiguousarray(m * self._log_q)
        offset = np.log(self.weights_)
        if not enc.missing:  # every entry observed: the failure terms are per-component
            offset = offset + obs_coef.sum(axis=0)
        return coef, obs_coef, np.ascontiguousarray(offset)

    def _set_from_stats(self, nk, sum_x, sum_obs):
        trials = float(self.n_trials) * (sum_obs if sum_obs is not None else nk[None, :])
        trials = np.broadcast_to(trials, sum_x.shape)
        self._log_p = smoothed_log_probs(sum_x, trials, 2, self.alpha)
        self._log_q = smoothed_log_probs(trials - sum_x, trials, 2, self.alpha)
        self.means_ = np.exp(self._log_p).T.copy()

    def _set_user_tables(self, n_features):
        mu = check_probability_table(self.means_init, (self.n_components, n_features),
                                     "means_init", rows_sum_to_one=False)
        self._log_p, self._log_q = np.log(mu).T.copy(), np.log1p(-mu).T.copy()
        self.means_ = mu

    def _log_prior(self):
        return self.alpha * float(np.sum(self._log_p) + np.sum(self._log_q))

    def _get_parameters(self):
        return self.weights_.copy(), self.means_.copy(), self._log_p.copy(), self._log_q.copy()

    def _set_parameters(self, params):
        self.weights_, self.means_, self._log_p, self._log_q = params

    def _n_parameters(self):
        k, d = self.means_.shape
        return int(k * d + k - 1)

    def sample(self, n_samples: int = 1) -> tuple:
        """Draw samples from the fitted model: (X (n_samples, n_features) float64,
        y (n_samples,) the component of each sample)."""
        self._check_is_fitted()
        rng = self._sample_rng()
        labels = self._sample_components(n_samples, rng)
        X = rng.binomial(int(self.n_trials), self.means_[labels]).astype(np.float64)
        return X, labels.astype(np.int32)
