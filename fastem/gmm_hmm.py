"""Hidden Markov models with Gaussian-mixture emissions: ``GMMHMM``, a drop-in for
hmmlearn's.

State k emits x from a mixture of ``n_mix`` Gaussians, ``sum_m w_km N(x; mu_km,
Sigma_km)``; ``covariance_type`` is "spherical" (K, M), "diag" (K, M, D), "full"
(K, M, D, D), or "tied" (K, D, D): one matrix per state, shared by its components (not
GaussianHMM's meaning).  The K x M components run through GaussianMixture's density
kernels as one flat mixture (a tied state's matrix repeated for each of its
components); a state's log-density is the logsumexp of its components'.

The M-step is hmmlearn 0.3's, priors included.  With ``r_t(k, m)`` the posterior of
component m within state k, ``N_km = sum_t gamma_t(k) r_t(k, m)`` and the previous
means ``mu'``:

    w_km     = (N_km + weights_prior_km - 1) / (N_k + sum_m (weights_prior_km - 1))
    mu_km    = (means_weight_km means_prior_km + sum_t gamma r x_t) / (N_km + means_weight_km)
    S_km     = sum_t gamma_t(k) r_t(k, m) (x_t - mu'_km)(x_t - mu'_km)^T
    full:      Sigma_km = (covars_prior^T + means_weight (mu - means_prior)(...)^T + S_km)
                          / (N_km + covars_weight + D + 2)
    diag:      Sigma_km = (means_weight (mu - means_prior)^2 + 2 covars_weight + diag S_km)
                          / (N_km + 1 + 2 (covars_prior + 1))
    spherical: Sigma_km = (means_weight |mu - means_prior|^2 + 2 covars_weight + tr S_km)
                          / (D (N_km + 1) + 2 (covars_prior + 1))
    tied:      Sigma_k  = (covars_prior^T + sum_m means_weight (...)(...)^T + sum_m S_km)
                          / (N_k + M + covars_weight + D + 1)

hmmlearn scatters the covariances around the previous means ``mu'`` (its statistics are
gathered before the means move); so does this, so that the fits agree, which also makes
the update a generalized EM step: the likelihood is not checked for monotonicity.  The
defaults of ``covars_prior`` / ``covars_weight`` (None) are hmmlearn's per type, which
make the update the maximum-likelihood one.  As in ``GaussianHMM``, the statistics are
accumulated around the data's mean, and an all-NaN row of X is a missing observation.
A state with no occupancy is re-seeded (``BaseHMM._renew``); a component with none in a
state that has some keeps its parameters, with a CollapseWarning, where hmmlearn gives NaN.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import numpy as np

from ._hmm import BaseHMM, _check_distribution, rows_where
from ._validation import Interval, Options
from .gaussian_hmm import GaussianRows, _full_covars, _usable_covariance
from .gaussian_mixture import _cholesky_upper_precision
from .kernels._covariance import COVARIANCE_TYPES

if TYPE_CHECKING:
    from typing import Any, Optional


def _logsumexp_groups(lp, k, m):
    """(N, K): logsumexp over each state's M columns of lp (N, K * M), and the
    within-state responsibilities (N, K * M)."""
    g = lp.reshape(lp.shape[0], k, m)
    top = g.max(axis=2, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(under="ignore", divide="ignore"):
        e = np.exp(g - top)
        total = e.sum(axis=2, keepdims=True)
        log_state = np.log(total) + top
        resp = e / np.where(total > 0, total, 1.0)
    return log_state[:, :, 0], resp.reshape(lp.shape)


class GMMHMM(GaussianRows, BaseHMM):
    """Hidden Markov model with Gaussian-mixture emissions, fitted by Baum-Welch.

    Parameters
    ----------
    n_components : int, default=1
        Number of states.
    n_mix : int, default=1
        Number of Gaussian components of each state's mixture.
    min_covar : float, default=1e-3
        Added to the diagonal of the data's covariance that initializes ``covars_``.
    startprob_prior, transmat_prior : float or array, default=1.0
        Dirichlet priors of ``startprob_`` and of each row of ``transmat_`` (1: none).
    weights_prior : float or array, default=1.0
        Dirichlet prior of each state's mixture weights (1: none).
    means_prior, means_weight : float or array, default=0.0
        Normal prior of the means: its mean and its weight in samples.
    covars_prior, covars_weight : float, array or None, default=None
        Prior of the covariances (see the module docstring); None: hmmlearn's default
        for the covariance type (no prior).
    algorithm : {"viterbi", "map"}, default="viterbi"
    covariance_type : {"spherical", "diag", "full", "tied"}, default="diag"
    random_state, n_iter, tol, verbose, implementation, backend, n_threads
        As ``GaussianHMM``.
    params, init_params : str, default="stmcw"
        "s" startprob, "t" transmat, "m" means, "c" covars, "w" mixture weights.

    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    weights_ : ndarray of shape (n_components, n_mix)
    means_ : ndarray of shape (n_components, n_mix, n_features)
    covars_ : ndarray
        (n_components, n_mix) spherical, (n_components, n_mix, n_features) diag,
        (n_components, n_mix, n_features, n_features) full, (n_components, n_features,
        n_features) tied.
    monitor_ : ConvergenceMonitor

    ``aic`` / ``bic`` count ``n_components * (n_mix - 1)`` free mixture weights
    (hmmlearn 0.3 counts ``n_mix - 1``).
    """

    _emission_letters = "mcw"
    _emission_attributes = ("weights_", "means_", "covars_")
    _parameter_constraints = {
        **BaseHMM._parameter_constraints,
        "n_mix": [Interval(numbers.Integral, 1, None)],
        "covariance_type": [Options(*COVARIANCE_TYPES)],
        "min_covar": [Interval(numbers.Real, 0.0, None)],
        "weights_prior": [Interval(numbers.Real, 0.0, None), "array-like"],
        "means_prior": [Interval(numbers.Real, None, None), "array-like"],
        "means_weight": [Interval(numbers.Real, 0.0, None), "array-like"],
        "covars_prior": [None, Interval(numbers.Real, None, None), "array-like"],
        "covars_weight": [None, Interval(numbers.Real, None, None), "array-like"],
    }

    def __init__(self, n_components: int = 1, n_mix: int = 1, min_covar: float = 1e-3,
                 startprob_prior: Any = 1.0, transmat_prior: Any = 1.0,
                 weights_prior: Any = 1.0, means_prior: Any = 0.0, means_weight: Any = 0.0,
                 covars_prior: Any = None, covars_weight: Any = None,
                 algorithm: str = "viterbi", covariance_type: str = "diag",
                 random_state: Any = None, n_iter: int = 10, tol: float = 1e-2,
                 verbose: bool = False, params: str = "stmcw", init_params: str = "stmcw",
                 implementation: str = "log", backend: Optional[str] = None,
                 n_threads: Optional[int] = None) -> None:
        super().__init__(n_components, startprob_prior, transmat_prior, algorithm, random_state,
                         n_iter, tol, verbose, params, init_params, implementation, backend,
                         n_threads)
        self.n_mix = n_mix
        self.min_covar = min_covar
        self.weights_prior = weights_prior
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight
        self.covariance_type = covariance_type

    @property
    def _row_width(self):
        return self.n_components * self.n_mix  # the kernels' columns: every component

    # ------------------------------------------------------------------ priors
    def _priors(self):
        """The priors broadcast to their shapes, with hmmlearn's per-type defaults:
        (weights_prior (K, M), means_prior (K, M, D), means_weight (K, M), covars_prior,
        covars_weight)."""
        k, m, d, cov = self.n_components, self.n_mix, self.means_.shape[2], self.covariance_type
        defaults = {"full": (0.0, -(1.0 + d + 1.0)), "tied": (0.0, -(m + d + 1.0)),
                    "diag": (-1.5, 0.0), "spherical": (-(m + 2.0) / 2.0, 0.0)}[cov]
        c_prior = defaults[0] if self.covars_prior is None else self.covars_prior
        c_weight = defaults[1] if self.covars_weight is None else self.covars_weight
        shapes = {"full": ((k, m, d, d), (k, m)), "tied": ((k, d, d), (k,)),
                  "diag": ((k, m, d), (k, m, d)), "spherical": ((k, m), (k, m))}[cov]
        out = []
        for name, value, shape in (("weights_prior", self.weights_prior, (k, m)),
                                   ("means_prior", self.means_prior, (k, m, d)),
                                   ("means_weight", self.means_weight, (k, m)),
                                   ("covars_prior", c_prior, shapes[0]),
                                   ("covars_weight", c_weight, shapes[1])):
            try:
                out.append(np.broadcast_to(np.asarray(value, dtype=np.float64), shape))
            except ValueError:
                raise ValueError(f"{name} must be a scalar or broadcast to shape {shape} for "
                                 f"covariance_type={cov!r}; got shape "
                                 f"{np.shape(value)}.") from None
        return tuple(out)

    def _flat_emission_priors(self):
        return False  # a generalized EM step (see the module docstring): no monotonicity

    # ------------------------------------------------------------------ init and checks
    def _covars_shape(self, d):
        k, m = self.n_components, self.n_mix
        return {"spherical": (k, m), "diag": (k, m, d), "full": (k, m, d, d),
                "tied": (k, d, d)}[self.covariance_type]

    def _init_emissions(self, X, random_state):
        from .kmeans import KMeans

        k, m, d = self.n_components, self.n_mix, X.shape[1]
        self.n_features = d

        start = []  # the start covariance, taken (one pass over X) at most once

        def start_covariance():
            if not start:
                start.append(self._start_covariance(X))
            return start[0]

        if self._needs_init("m", "means_"):
            observed_rows, observed = self._observed_rows(X)
            # hmmlearn's: K-means into the states, then K-means of each state's rows into
            # its components (a state with fewer rows than n_mix: draws around the
            # centers' mean; hmmlearn takes those from numpy's global generator)
            km = KMeans(k, random_state=self.random_state, n_init=10, backend=self.backend,
                        n_threads=self.n_threads).fit(observed_rows)
            centroid = km.cluster_centers_.mean(axis=0)
            labels = np.full(observed.shape[0], -1)
            labels[observed] = np.asarray(km.labels_)  # (computed, on a Dask array)
            means = []
            for state in range(k):
                rows = rows_where(X, labels == state)
                if rows.shape[0] >= m:
                    means.append(KMeans(m, random_state=self.random_state, n_init=10,
                                        backend=self.backend, n_threads=self.n_threads)
                                 .fit(rows).cluster_centers_.astype(np.float64))
                else:
                    means.append(random_state.multivariate_normal(centroid, start_covariance(),
                                                                  size=m))
            self.means_ = np.stack(means)
        if self._needs_init("w", "weights_"):
            self.weights_ = np.full((k, m), 1.0 / m)
        if self._needs_init("c", "covars_"):
            self.covars_ = np.broadcast_to(self._covariance_form(start_covariance()),
                                           self._covars_shape(d)).copy()

    def _check_emissions(self):
        k, m = self.n_components, self.n_mix
        means = np.array(self.means_, dtype=np.float64)
        if means.ndim != 3 or means.shape[:2] != (k, m) or not np.isfinite(means).all():
            raise ValueError(f"means_ must be a finite array of shape ({k}, {m}, n_features) "
                             f"(n_components, n_mix, n_features); got shape {means.shape}.")
        d = means.shape[2]
        if hasattr(self, "n_features_in_") and d != self.n_features_in_:
            raise ValueError(f"means_ has {d} features but X has {self.n_features_in_}.")
        self.means_ = means
        self.weights_ = _check_distribution(self.weights_, (k, m), "weights_")
        cov, shape = self.covariance_type, self._covars_shape(d)
        c = np.array(self.covars_, dtype=np.float64)
        if c.shape != shape or not np.isfinite(c).all():
            raise ValueError(f"covars_ for covariance_type={cov!r} must be a finite array of "
                             f"shape {shape}; got shape {c.shape}.")
        if cov in ("spherical", "diag"):
            if (c <= 0).any():
                raise ValueError(f"{cov!r} covars_ must be positive.")
        elif not all(np.allclose(a, a.T) and _cholesky_upper_precision(a) is not None
                     for a in c.reshape(-1, d, d)):
            raise ValueError(f"{cov!r} covars_ must be symmetric, positive-definite.")
        self.covars_ = c
        self.n_features = d
        self._priors()  # their shapes, checked now rather than in the M-step

    def _emission_sizes(self):
        k, m, d = self.n_components, self.n_mix, self.means_.shape[2]
        return {"m": k * m * d, "w": k * (m - 1),
                "c": {"spherical": k * m, "diag": k * m * d, "full": k * m * d * (d + 1) // 2,
                      "tied": k * d * (d + 1) // 2}[self.covariance_type]}

    # ------------------------------------------------------------------ E-step
    def _component_log_prob(self, X):
        """log w_km + log N(x; mu_km, Sigma_km), (N, K * M), state-major columns."""
        k, m, d = self.n_components, self.n_mix, X.shape[1]
        cov, c = self.covariance_type, self.covars_
        if cov in ("spherical", "diag"):
            prec_chol = 1.0 / np.sqrt(c.reshape((k * m,) + c.shape[2:]))
            log_det = np.log(prec_chol) * d if cov == "spherical" else np.log(prec_chol).sum(1)
            kind = cov
        else:
            mats = c.reshape(-1, d, d)
            chol = np.stack([_cholesky_upper_precision(a) for a in mats])
            if cov == "tied":  # each state's matrix, for each of its components
                chol = np.repeat(chol, m, axis=0)
            prec_chol = chol
            log_det = np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
            kind = "full"
        with np.errstate(divide="ignore"):
            log_w = np.log(self.weights_).ravel()
        log_consts = np.ascontiguousarray(log_det - 0.5 * d * np.log(2 * np.pi) + log_w)
        out = np.empty((X.shape[0], k * m))
        kern = self._kernels(self._runtime[0], "gaussian_mixture")
        getattr(kern, "estimate_log_prob_" + kind)(
            X, np.ascontiguousarray(self.means_.reshape(k * m, d), dtype=X.dtype),
            np.ascontiguousarray(prec_chol, dtype=X.dtype), log_consts, out, self._runtime[1])
        return out

    def _emission_log_prob(self, X):
        X, missing, _ = self._fill_missing(X)
        log_state, _ = _logsumexp_groups(self._component_log_prob(X), self.n_components,
                                         self.n_mix)
        log_state[missing] = 0.0  # an unobserved step: probability one under every state
        return log_state

    def _emission_stats(self, X, post):
        """(N_km (K, M), sum gamma r (x - c) (K, M, D), second moments of x - c:
        (K, M, D) diagonal or (K, M, D, D))."""
        k, m, d = self.n_components, self.n_mix, X.shape[1]
        X, _, post = self._fill_missing(X, post)
        _, resp = _logsumexp_groups(self._component_log_prob(X), k, m)
        weights = np.repeat(post, m, axis=1) * resp  # gamma_t(k) r_t(k, m)
        nk, s1 = np.empty(k * m), np.empty((k * m, d))
        rows = 1 if self.covariance_type in ("spherical", "diag") else d
        s2 = np.empty((k * m, rows, d))
        self._hmm_kernels().weighted_moments(X, np.ascontiguousarray(self._center, np.float64),
                                             weights, nk, s1, s2, self._runtime[1])
        s2 = s2[:, 0] if rows == 1 else s2
        return nk.reshape(k, m), s1.reshape(k, m, d), s2.reshape((k, m) + s2.shape[1:])

    # ------------------------------------------------------------------ M-step
    def _emission_mstep(self, stats):
        nk, s1, s2 = stats
        cov, d, center = self.covariance_type, s1.shape[2], self._center
        w_prior, m_prior, m_weight, c_prior, c_weight = self._priors()
        n_state = nk.sum(axis=1)
        empty_states = np.flatnonzero(~(n_state > 0))
        old_means, old_covars = self.means_, self.covars_
        # scatter around the previous means, from the statistics around the center
        e = old_means - center
        if cov in ("spherical", "diag"):
            scatter = s2 - 2 * e * s1 + nk[..., None] * e * e
        else:
            cross = np.einsum("kmi,kmj->kmij", s1, e)
            scatter = (s2 - cross - np.swapaxes(cross, -1, -2)
                       + nk[..., None, None] * np.einsum("kmi,kmj->kmij", e, e))
        if "w" in self.params:
            w_n = nk + w_prior - 1.0
            with np.errstate(invalid="ignore", divide="ignore"):
                weights = w_n / (n_state + (w_prior - 1.0).sum(axis=1))[:, None]
            bad = ~np.all(np.isfinite(weights) & (weights >= 0), axis=1)
            weights[bad] = self.weights_[bad]
            empty_states = np.union1d(empty_states, np.flatnonzero(bad))
            self.weights_ = weights
        empty = np.zeros(nk.shape, dtype=bool)
        if "m" in self.params:
            m_n = m_weight[..., None] * m_prior + s1 + nk[..., None] * center
            m_d = nk + m_weight
            m_d = np.where((self.weights_ == 0) & (m_n == 0).all(axis=-1), 1.0, m_d)
            with np.errstate(invalid="ignore", divide="ignore"):
                means = m_n / m_d[..., None]
            empty |= ~np.isfinite(means).all(axis=-1)
            means[empty] = old_means[empty]
            self.means_ = means
        if "c" in self.params:
            cm = self.means_ - m_prior
            with np.errstate(invalid="ignore", divide="ignore"):
                if cov == "full":
                    c_n = (np.swapaxes(c_prior, -1, -2) + m_weight[..., None, None]
                           * np.einsum("kmi,kmj->kmij", cm, cm) + scatter)
                    covars = c_n / (nk + 1 + c_weight + d + 1)[..., None, None]
                elif cov == "diag":
                    c_n = m_weight[..., None] * cm ** 2 + 2 * c_weight + scatter
                    covars = c_n / (nk[..., None] + 1 + 2 * (c_prior + 1))
                elif cov == "spherical":
                    c_n = m_weight * np.einsum("kmi,kmi->km", cm, cm) + 2 * c_weight \
                        + scatter.sum(axis=-1)
                    covars = c_n / (d * (nk + 1) + 2 * (c_prior + 1))
                else:  # tied: one matrix per state
                    c_n = (np.einsum("km,kmi,kmj->kij", m_weight, cm, cm)
                           + np.swapaxes(c_prior, -1, -2) + scatter.sum(axis=1))
                    covars = c_n / (n_state + self.n_mix + c_weight + d + 1)[:, None, None]
            if cov == "tied":
                bad = [s for s in range(self.n_components)
                       if not _usable_covariance(0.5 * (covars[s] + covars[s].T), "full")]
                covars = 0.5 * (covars + np.swapaxes(covars, -1, -2))
                covars[bad] = old_covars[bad]
                empty_states = np.union1d(empty_states, bad)
            else:
                if cov == "full":
                    covars = 0.5 * (covars + np.swapaxes(covars, -1, -2))
                kind = "full" if cov == "full" else "diag"
                flat = covars.reshape((-1,) + covars.shape[2:])
                for q in range(flat.shape[0]):
                    if not _usable_covariance(np.atleast_1d(flat[q]), kind):
                        empty.flat[q] = True
                covars[empty] = old_covars[empty]
            self.covars_ = covars
        partly = np.setdiff1d(np.flatnonzero(empty.any(axis=1)), empty_states)
        if partly.size:  # a component inside a live state: kept (its state re-seeds none)
            import warnings

            from .gaussian_mixture import CollapseWarning

            warnings.warn(f"A mixture component of state(s) {partly.tolist()} had no "
                          "occupancy in this iteration; its parameters were kept (hmmlearn "
                          "would give NaN). Consider a smaller n_mix.", CollapseWarning,
                          stacklevel=4)
        return empty_states

    def _reseed_emissions(self, data, states, stats):
        """A re-seeded state's components sit on the steps the other states explain worst
        (n_mix of them each), with equal weights and the data's covariance."""
        m = self.n_mix
        rows = self._worst_explained(data, states, len(states) * m)
        if "m" in self.params and rows.shape[0]:
            for j, k in enumerate(states):
                self.means_[k] = rows[np.arange(j * m, (j + 1) * m) % rows.shape[0]]
        if "w" in self.params:
            self.weights_[states] = 1.0 / m
        if "c" in self.params:
            self.covars_[states] = self._covariance_form(self._start_covariance(data.X))

    # ------------------------------------------------------------------ sampling
    def _generate_sample_from_state(self, state, random_state):
        m = random_state.choice(self.n_mix, p=self.weights_[state])
        if self.covariance_type == "tied":
            cov = self.covars_[state]
        else:
            cov = _full_covars(self.covars_[:, m], self.covariance_type, self.n_components,
                               self.means_.shape[2])[state]
        return random_state.multivariate_normal(self.means_[state, m], cov)
