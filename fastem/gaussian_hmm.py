"""Hidden Markov models with Gaussian emissions: ``GaussianHMM``, a drop-in for hmmlearn's.

State k emits x ~ N(mu_k, Sigma_k), Sigma_k of one of four forms (``covariance_type``:
"spherical" sigma_k^2 I, "diag", "full", or "tied", one matrix for every state).  The
emission log-densities come from GaussianMixture's kernels (``estimate_log_prob_<cov>``
with zero log-weights).  The M-step is hmmlearn's, with its priors (Huang, Acero and
Hon, *Spoken Language Processing*, pp. 443-445): with N_k = sum_t gamma_t(k),

    mu_k    = (means_weight * means_prior + sum_t gamma_t(k) x_t) / (means_weight + N_k)
    C_k     = sum_t gamma_t(k) (x_t - mu_k)(x_t - mu_k)^T
              + means_weight (mu_k - means_prior)(mu_k - means_prior)^T
    diag, spherical: Sigma_k = (covars_prior + diag C_k) / max(max(covars_weight - 1, 0)
                               + N_k, 1e-5)          (spherical: averaged over features)
    full:  Sigma_k = (covars_prior + C_k) / (max(covars_weight - D, 0) + N_k)
    tied:  Sigma   = (covars_prior + sum_k C_k) / (max(covars_weight - D, 0) + sum_k N_k)

The statistics are accumulated around the data's mean c (``sum gamma (x - c)`` and the
second moments of ``x - c``), and C_k is formed from them exactly, so a large offset in
the data does not cancel away the variances.

Missing observations: a row of X that is all NaN is a step whose observation is
unknown.  Every state explains it with probability one (log-density 0), so the chain
runs through it and the likelihood is marginalised exactly; its posterior counts toward
the start and transition statistics and not toward the emission statistics (its weight
there is zero), and ``decode`` / ``predict`` still give it a state.  A row with only some
entries NaN is refused (a Gaussian's marginal over a subset of features is not what the
kernels compute).
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import numpy as np

from ._hmm import BaseHMM, row_blocks
from ._validation import Interval, Options
from .gaussian_mixture import _cholesky_upper_precision
from .kernels._covariance import COVARIANCE_TYPES

if TYPE_CHECKING:
    from typing import Any, Optional


def _missing_rows(X):
    """The rows of X that are all NaN (missing observations; see the module docstring)."""
    return np.isnan(X[:, 0]) if X.shape[1] else np.zeros(X.shape[0], dtype=bool)


def _observed_mean(X):
    """The mean of X's observed rows, in float64, by blocks of rows (zeros if none)."""
    n, total = 0, np.zeros(X.shape[1])
    for _, block in row_blocks(X):
        block = block[~_missing_rows(block)]
        n += block.shape[0]
        total += block.sum(axis=0, dtype=np.float64)
    return total / max(n, 1)


def _observed_covariance(X, mean):
    """The covariance of X's observed rows about their ``mean`` with ``np.cov``'s
    N - 1, in float64, by blocks of rows."""
    d, n, scatter = X.shape[1], 0, np.zeros((X.shape[1], X.shape[1]))
    for _, block in row_blocks(X):
        y = block[~_missing_rows(block)].astype(np.float64) - mean
        n += y.shape[0]
        scatter += y.T @ y
    return scatter / (n - 1) if n > 1 else np.full((d, d), np.nan)


def _full_covars(covars, cov_type, n_components, n_features):
    """The covariance of every state as (K, D, D) matrices, from the stored form."""
    if cov_type == "full":
        return covars
    if cov_type == "tied":
        return np.broadcast_to(covars, (n_components, n_features, n_features)).copy()
    if cov_type == "diag":
        return np.einsum("kd,de->kde", covars, np.eye(n_features))
    return covars[:, None, None] * np.eye(n_features)[None]


def _usable_covariance(c, cov_type):
    """A state's covariance is finite and positive (definite, for "full")."""
    if cov_type == "full":
        return _cholesky_upper_precision(c) is not None
    return bool(np.isfinite(c).all() and (c > 0).all())


class GaussianRows:
    """X of real rows for the Gaussian HMMs: all-NaN rows are missing observations (a row
    only partly NaN is refused), and ``_center``, the observed rows' mean, is the point
    the M-step statistics are accumulated around (see the module docstring)."""

    def _check_input(self, X, *, owner, copy, name="X"):
        from ._validation import check_array

        X = check_array(X, name=name, owner=owner, copy=copy, allow_nan=True)
        for start, block in row_blocks(X):
            nan = np.isnan(block)
            partly = np.flatnonzero(nan.any(axis=1) & ~nan.all(axis=1))
            if not partly.size:
                continue
            row = start + int(partly[0])
            raise ValueError(
                f"Row {row} of {name} has some features NaN and others observed. {owner} "
                "treats a row that is all NaN as a missing observation (marginalised "
                "exactly); impute the partly missing rows, or set them wholly to NaN.")
        return X

    def _sequences(self, X, lengths, *, reset):
        data = super()._sequences(X, lengths, reset=reset)
        if reset or not hasattr(self, "_center"):  # (a loaded model: from this batch)
            # the statistics' center (see the module docstring)
            self._center = _observed_mean(data.X)
        return data

    def _start_covariance(self, X):
        """The covariance that starts ``covars_`` (hmmlearn's): the observed rows' own,
        plus ``min_covar`` on its diagonal (X: the data ``_center`` was taken of)."""
        return _observed_covariance(X, self._center) + self.min_covar * np.eye(X.shape[1])

    def _covariance_form(self, cv):
        """One state's (or component's) share of the (D, D) covariance ``cv`` in
        ``covariance_type``'s form: its mean variance (spherical), its diagonal (diag), or
        the matrix (full, tied)."""
        return {"spherical": lambda: cv.mean(), "diag": lambda: np.diag(cv)}.get(
            self.covariance_type, lambda: cv)()

    def _observed(self, X):
        return ~_missing_rows(X)

    def _fill_missing(self, X, post=None):
        """(X with its missing rows set to the mean of means_, so that the kernels see
        finite rows, the missing rows' mask, and ``post`` with those rows' weights zero:
        they count toward no emission statistic)."""
        missing = _missing_rows(X)
        if missing.any():
            fill = self.means_.reshape(-1, X.shape[1]).mean(axis=0).astype(X.dtype)
            X = np.where(missing[:, None], fill, X)
            if post is not None:
                post = np.where(missing[:, None], 0.0, post)
        return X, missing, post

    def _observed_rows(self, X):
        """(the rows of X that are not missing, their mask): as many rows as K-means needs
        to start the means.  X in memory gives an array (X itself when no row is
        missing); a memory map or ``Chunks`` gives a ``Chunks`` of them, read by blocks,
        which K-means fits as it would the array."""
        from ._stream import Chunks

        observed = np.concatenate([~_missing_rows(block) for _, block in row_blocks(X)]
                                  or [np.zeros(0, dtype=bool)])
        n = int(observed.sum())
        if n < self.n_components:
            raise ValueError(f"X has {n} observed rows (rows that are not all NaN); "
                             f"initializing means_ needs at least n_components = "
                             f"{self.n_components}.")
        if isinstance(X, np.ndarray) and not isinstance(X, np.memmap):
            return (X if n == X.shape[0] else X[observed]), observed
        dask_array = getattr(X, "dask_array", None)
        if dask_array is not None:  # (fastem.dask.DaskStackedRows) K-means on the workers
            return (dask_array if n == X.shape[0] else dask_array[observed]), observed
        return Chunks(lambda: (block[observed[a:a + block.shape[0]]]
                               for a, block in row_blocks(X))), observed


class GaussianHMM(GaussianRows, BaseHMM):
    """Hidden Markov model with Gaussian emissions, fitted by Baum-Welch.

    Parameters
    ----------
    n_components : int, default=1
        Number of states.
    covariance_type : {"spherical", "diag", "full", "tied"}, default="diag"
    min_covar : float, default=1e-3
        Added to the diagonal of the data's covariance that initializes ``covars_``.
    startprob_prior, transmat_prior : float or array, default=1.0
        Dirichlet priors of ``startprob_`` and of each row of ``transmat_`` (1: none).
    means_prior, means_weight : float or array, default=0
        Normal prior of the means: its mean and its weight in samples.
    covars_prior, covars_weight : float or array, default=1e-2, 1
        Prior of the covariances (see the module docstring).
    algorithm : {"viterbi", "map"}, default="viterbi"
        The decoder of ``decode`` and ``predict``.
    random_state : None, int or RandomState, default=None
    n_iter : int, default=10
        Maximum number of EM iterations.
    tol : float, default=1e-2
        Stop when the log-likelihood gains less than this.
    verbose : bool, default=False
        Print each iteration's log-likelihood and gain to stderr.
    params, init_params : str, default="stmc"
        What EM updates / what ``fit`` initializes: "s" startprob, "t" transmat, "m"
        means, "c" covars.  A parameter left out of ``init_params`` must be set by hand.
    implementation : {"log", "scaling"}, default="log"
        Forward-backward in log space or by scaling (faster; where it would underflow it
        falls back to log space by itself instead of failing).
    backend : {"auto", "numba", "cython", "numpy"} or None, default=None
    n_threads : int or None, default=None
        Sequences run in parallel on this many threads; the result is the same for any.

    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    means_ : ndarray of shape (n_components, n_features)
    n_features : int
    monitor_ : ConvergenceMonitor
        ``history`` (the log-likelihood of every iteration), ``iter``, ``converged``.

    ``covars_`` (a property, below) gives every state's covariance matrix.
    """

    _emission_letters = "mc"
    _emission_attributes = ("means_", "_covars_")
    _parameter_constraints = {
        **BaseHMM._parameter_constraints,
        "covariance_type": [Options(*COVARIANCE_TYPES)],
        "min_covar": [Interval(numbers.Real, 0.0, None)],
        "means_prior": [Interval(numbers.Real, None, None), "array-like"],
        "means_weight": [Interval(numbers.Real, 0.0, None), "array-like"],
        "covars_prior": [Interval(numbers.Real, None, None), "array-like"],
        "covars_weight": [Interval(numbers.Real, None, None), "array-like"],
    }

    def __init__(self, n_components: int = 1, covariance_type: str = "diag",
                 min_covar: float = 1e-3, startprob_prior: Any = 1.0, transmat_prior: Any = 1.0,
                 means_prior: Any = 0, means_weight: Any = 0, covars_prior: Any = 1e-2,
                 covars_weight: Any = 1, algorithm: str = "viterbi", random_state: Any = None,
                 n_iter: int = 10, tol: float = 1e-2, verbose: bool = False,
                 params: str = "stmc", init_params: str = "stmc", implementation: str = "log",
                 backend: Optional[str] = None, n_threads: Optional[int] = None) -> None:
        super().__init__(n_components, startprob_prior, transmat_prior, algorithm, random_state,
                         n_iter, tol, verbose, params, init_params, implementation, backend,
                         n_threads)
        self.covariance_type = covariance_type
        self.min_covar = min_covar
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight

    # ------------------------------------------------------------------ covars_
    @property
    def covars_(self):
        """Every state's covariance matrix, (n_components, n_features, n_features).

        Set it in the ``covariance_type``'s own shape: spherical (n_components,), diag
        (n_components, n_features), full (n_components, n_features, n_features), tied
        (n_features, n_features)."""
        return _full_covars(self._covars_, self.covariance_type, self.n_components,
                            self.means_.shape[1] if hasattr(self, "means_") else
                            self._covars_.shape[-1])

    @covars_.setter
    def covars_(self, covars):
        self._covars_ = self._checked_covars(covars)

    def _checked_covars(self, covars, n_features=None):
        cov, k = self.covariance_type, self.n_components
        c = np.array(covars, dtype=np.float64)
        d = n_features if n_features is not None else (c.shape[-1] if c.ndim > 1 else None)
        shape = {"spherical": (k,), "diag": (k, d), "full": (k, d, d), "tied": (d, d)}[cov]
        if c.shape != shape or not np.isfinite(c).all():
            raise ValueError(f"covars_ for covariance_type={cov!r} must be a finite array of "
                             f"shape {shape}; got shape {c.shape}.")
        if cov in ("spherical", "diag"):
            if (c <= 0).any():
                raise ValueError(f"{cov!r} covars_ must be positive.")
        else:
            for m in (c if cov == "full" else c[None]):
                if not np.allclose(m, m.T) or _cholesky_upper_precision(m) is None:
                    raise ValueError(f"{cov!r} covars_ must be symmetric, positive-definite.")
        return c

    # ------------------------------------------------------------------ init
    def _init_emissions(self, X, random_state):
        k, d = self.n_components, X.shape[1]
        self.n_features = d
        if self._needs_init("m", "means_"):
            from .kmeans import KMeans

            km = KMeans(k, random_state=self.random_state, n_init=10, backend=self.backend,
                        n_threads=self.n_threads).fit(self._observed_rows(X)[0])
            self.means_ = km.cluster_centers_.astype(np.float64)
        if self._needs_init("c", "_covars_"):
            form = self._covariance_form(self._start_covariance(X))
            self._covars_ = (form if self.covariance_type == "tied" else
                             np.broadcast_to(form, (k, *np.shape(form))).copy())

    def _check_emissions(self):
        k = self.n_components
        means = np.array(self.means_, dtype=np.float64)
        if means.ndim != 2 or means.shape[0] != k or not np.isfinite(means).all():
            raise ValueError(f"means_ must be a finite array of shape ({k}, n_features); got "
                             f"shape {means.shape}.")
        if hasattr(self, "n_features_in_") and means.shape[1] != self.n_features_in_:
            raise ValueError(f"means_ has {means.shape[1]} features but X has "
                             f"{self.n_features_in_}.")
        self.means_ = means
        self._covars_ = self._checked_covars(self._covars_, means.shape[1])
        self.n_features = means.shape[1]

    def _flat_emission_priors(self):
        d = self.means_.shape[1]
        weight_cap = 1 if self.covariance_type in ("spherical", "diag") else d
        return bool(np.all(np.asarray(self.means_weight) == 0)
                    and np.all(np.asarray(self.covars_prior) == 0)
                    and np.all(np.asarray(self.covars_weight) <= weight_cap))

    def _emission_sizes(self):
        k, d = self.n_components, self.means_.shape[1]
        return {"m": k * d, "c": {"spherical": k, "diag": k * d, "full": k * d * (d + 1) // 2,
                                  "tied": d * (d + 1) // 2}[self.covariance_type]}

    # ------------------------------------------------------------------ E-step
    def _precision_factors(self):
        """(prec_chol in the kernels' shape, log det U_k (K,)) of the covariances."""
        cov, c = self.covariance_type, self._covars_
        if cov in ("spherical", "diag"):
            prec_chol = 1.0 / np.sqrt(c)
            log_det = np.log(prec_chol) * (self.means_.shape[1] if cov == "spherical" else 1)
            return prec_chol, (log_det if cov == "spherical" else log_det.sum(axis=1))
        mats = c if cov == "full" else c[None]
        chol = np.stack([_cholesky_upper_precision(m) for m in mats])
        log_det = np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        if cov == "tied":
            return chol[0], np.full(self.n_components, log_det[0])
        return chol, log_det

    def _emission_log_prob(self, X):
        X, missing, _ = self._fill_missing(X)
        prec_chol, log_det = self._precision_factors()
        log_consts = np.ascontiguousarray(log_det - 0.5 * X.shape[1] * np.log(2 * np.pi))
        out = self._work().empty("log_emission", (X.shape[0], self.n_components))
        kern = self._kernels(self._runtime[0], "gaussian_mixture")
        getattr(kern, "estimate_log_prob_" + self.covariance_type)(
            X, np.ascontiguousarray(self.means_, dtype=X.dtype),
            np.ascontiguousarray(prec_chol, dtype=X.dtype), log_consts, out, self._runtime[1])
        out[missing] = 0.0  # an unobserved step: log-density 0 under every state
        return out

    def _emission_stats(self, X, post):
        """(N_k, sum gamma (x - c), second moments of x - c: (K, D) diagonal, or (K, D, D))."""
        k, d = post.shape[1], X.shape[1]
        X, _, post = self._fill_missing(X, post)
        nk, s1 = np.empty(k), np.empty((k, d))
        s2 = np.empty((k, 1, d) if self.covariance_type in ("spherical", "diag") else (k, d, d))
        self._hmm_kernels().weighted_moments(X, np.ascontiguousarray(self._center, np.float64),
                                             post, nk, s1, s2, self._runtime[1])
        return nk, s1, (s2[:, 0] if self.covariance_type in ("spherical", "diag") else s2)

    # ------------------------------------------------------------------ M-step
    def _emission_mstep(self, stats):
        nk, s1, s2 = stats
        cov, d = self.covariance_type, s1.shape[1]
        empty = np.flatnonzero(~(nk > 0))
        old_means, old_covars = self.means_, self._covars_
        prior_w = np.asarray(self.means_weight, dtype=np.float64)
        prior_m = np.asarray(self.means_prior, dtype=np.float64)
        if "m" in self.params:
            with np.errstate(invalid="ignore", divide="ignore"):
                means = (prior_w * prior_m + s1 + nk[:, None] * self._center) / (
                    prior_w + nk[:, None])
            means[empty] = old_means[empty]
            self.means_ = means
        if "c" in self.params:
            e = self.means_ - self._center  # the new means, around the center
            meandiff = self.means_ - prior_m
            c_prior = np.asarray(self.covars_prior, dtype=np.float64)
            c_weight = np.asarray(self.covars_weight, dtype=np.float64)
            if cov in ("spherical", "diag"):
                c_n = prior_w * meandiff ** 2 + (s2 - 2 * e * s1 + nk[:, None] * e * e)
                c_d = np.maximum(c_weight - 1, 0) + nk[:, None]
                covars = (c_prior + c_n) / np.maximum(c_d, 1e-5)
                if cov == "spherical":
                    covars = covars.mean(axis=1)
            else:
                cross = np.einsum("ki,kj->kij", s1, e)
                c_n = (prior_w * np.einsum("ki,kj->kij", meandiff, meandiff)
                       + s2 - cross - np.transpose(cross, (0, 2, 1))
                       + nk[:, None, None] * np.einsum("ki,kj->kij", e, e))
                cv_weight = np.maximum(c_weight - d, 0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    if cov == "tied":
                        covars = (c_prior + c_n.sum(axis=0)) / (cv_weight + nk.sum())
                    else:
                        covars = (c_prior + c_n) / (cv_weight + nk[:, None, None])
                covars = 0.5 * (covars + np.swapaxes(covars, -1, -2))
            if cov != "tied":
                bad = [k for k in range(self.n_components)
                       if k in empty or not _usable_covariance(covars[k], cov)]
                covars[bad] = old_covars[bad]
                empty = np.union1d(empty, bad)
            elif _cholesky_upper_precision(covars) is None:
                raise ValueError("The tied covariance is not positive definite: the data are "
                                 "degenerate (e.g. a constant feature). Use covars_prior > 0.")
            self._covars_ = covars
        return empty

    def _reseed_emissions(self, data, states, stats):
        """A re-seeded state's mean is one of the steps the other states explain worst,
        its covariance the data's (``_start_covariance``; a tied covariance stays)."""
        rows = self._worst_explained(data, states, len(states))
        if "m" in self.params and rows.shape[0]:
            self.means_[states] = rows[np.arange(len(states)) % rows.shape[0]]
        if "c" in self.params and self.covariance_type != "tied":
            self._covars_[states] = self._covariance_form(self._start_covariance(data.X))

    # ------------------------------------------------------------------ sampling
    def _generate_sample_from_state(self, state, random_state):
        return random_state.multivariate_normal(self.means_[state], self.covars_[state])
