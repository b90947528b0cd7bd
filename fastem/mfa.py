"""A mixture of factor analyzers fitted by EM (Ghahramani and Hinton 1996):
``MixtureOfFactorAnalyzers``.

Component k is a factor model x = W_k^T z + mu_k + e, z ~ N(0, I_q), e ~ N(0, Psi_k)
with Psi_k diagonal (one per component, or one shared by all), and prior weight pi_k:
a Gaussian mixture whose covariances C_k = W_k^T W_k + Psi_k have K (D q + D) numbers
instead of K D (D + 1) / 2.  Missing (NaN) entries are marginalised exactly: a row
is its observed coordinates.

E-step (the ``factor_stats`` kernel, ``kernels/*/factor_analysis``): every row's
responsibilities, the posterior of its factors under each component and the
statistics of the reference kernel's docstring, through the q x q matrix I + W_o
Psi_o^-1 W_o^T (the Woodbury identity): O(N K D q) a pass, never a D x D inverse.

M-step: the factors extended by a constant, z~ = (z, 1), make each coordinate d of
component k a weighted linear regression of y_d = x_d - mu_d (the current mean) on
z~, over the rows that observe d:

    (w_kd, delta_kd) = b_kd A_kd^-1,  b_kd = sum_i r_ik z~_i y_id,
                                       A_kd = sum_i r_ik E[z~ z~^T | x_i, k]
    mu_kd <- mu_kd + delta_kd,  W_k[:, d] <- w_kd
    Psi_kd <- (sum_i r_ik y_id^2 - (w_kd, delta_kd) . b_kd) / sum_i r_ik   (rows observing d)
    pi_k <- sum_i r_ik / N

(for complete data A_kd is one matrix for all d and this is Ghahramani and Hinton's
update).  Shared noise pools the residuals and counts over the components.  A noise
variance is kept at or above ``reg_covar``: the constrained maximum of the expected
complete log-likelihood in that variance, so EM still never lowers the likelihood.
The statistics are about each component's current mean (no cancellation in E[x^2] -
mean^2), so the update runs on differences.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import numpy as np

from ._threads import limit_blas_threads
from ._validation import Interval, Options, check_array
from .base import MIXTURE_CONSTRAINTS, ONLINE_CONSTRAINTS, BaseMixture, floored_counts
from .factor_analysis import (_has_missing, _stats_chunk, column_means,
                              factor_m_step)

if TYPE_CHECKING:
    from typing import Any, Optional

#: Rows of the initial moments' numpy blocks.
_INIT_BLOCK = 4096


def _log_prob(X, kern, params, n_threads):
    out = np.empty((X.shape[0], params[0].shape[0]))
    kern.factor_log_prob(X, *params, out, n_threads)
    return out


def _log_norm(log_prob):
    """(log sum_k exp, argmax) of every row (-inf, 0 for a row of -inf)."""
    from .kernels.reference.gaussian_mixture import logsumexp_rows

    return logsumexp_rows(log_prob), np.argmax(log_prob, axis=1).astype(np.int32)


def _labels_chunk(chunk, kern, params):
    return _log_norm(_log_prob(chunk.X, kern, params, chunk.n_threads))[1]


def _blocks(chunk, k):
    """(rows as float64 with NaN as 0, observed indicator, w_i r_ik) of a chunk, in
    blocks: the one-hot responsibilities of its hard initial labels (-1: none)."""
    for lo in range(0, chunk.X.shape[0], _INIT_BLOCK):
        hi = lo + _INIT_BLOCK
        xb = np.asarray(chunk.X[lo:hi], dtype=np.float64)
        observed = ~np.isnan(xb)
        labels = chunk.state[0][lo:hi]
        wr = np.zeros((xb.shape[0], k))
        hit = np.flatnonzero(labels >= 0)
        wr[hit, labels[hit]] = chunk.w[lo:hi][hit]
        yield np.where(observed, xb, 0.0), observed, wr


def _first_moments(xb, observed, wr):
    """(sum r, sum r [x_d observed], sum r x_d) of a block."""
    return wr.sum(axis=0), wr.T @ observed, wr.T @ xb


def _scatter(xb, observed, wr, means):
    """sum_i r_ik y_i y_i^T (K, D, D), y = x - mu_k with 0 where x is missing."""
    k, d = means.shape
    out = np.zeros((k, d, d))
    for c in range(k):
        rows = np.flatnonzero(wr[:, c] > 0)
        if rows.size:
            y = np.where(observed[rows], xb[rows] - means[c], 0.0)
            out[c] = (y * wr[rows, c, None]).T @ y
    return out


def _initial_first_chunk(chunk, k):
    return [_first_moments(*b) for b in _blocks(chunk, k)]


def _initial_scatter_chunk(chunk, k, means):
    return [_scatter(*b, means) for b in _blocks(chunk, k)]


class MixtureOfFactorAnalyzers(BaseMixture):
    """A mixture of factor analyzers fitted by EM: a Gaussian mixture for
    high-dimensional data, each covariance W_k^T W_k + Psi_k of rank-q-plus-diagonal
    form.  scikit-learn's mixture API (``fit``, ``predict``, ``predict_proba``,
    ``score_samples``, ``score``, ``bic``, ``aic``, ``sample``, ``fit_predict``); with
    one component it is ``FactorAnalysis``'s model.

    Parameters
    ----------
    n_components : int, default=1
        Number of components K.
    n_factors : int, default=1
        Factors q per component (at most the number of features).
    noise_type : {"per_component", "shared"}, default="per_component"
        A diagonal noise Psi_k per component, or one shared by all.
    tol : float, default=1e-3
        Stop when the mean per-sample log-likelihood changes by less than ``tol``.
    reg_covar : float, default=1e-6
        The floor of every noise variance (as GaussianMixture's ``reg_covar`` keeps its
        covariances positive definite; a floor, not an addition, so that the M-step
        stays exact).
    max_iter : int, default=100
    n_init : int, default=1
        Initializations to run; the one with the highest log-likelihood is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        The initial responsibilities, as GaussianMixture's; each component then starts
        at the probabilistic PCA of its rows (mean, top q axes, residual variances).
    weights_init : array-like of shape (n_components,), default=None
    means_init : array-like of shape (n_components, n_features), default=None
    random_state : None, int or numpy RandomState
    warm_start : bool, default=False
        Start from the previous fit's parameters (then ``n_init`` is ignored).
    verbose : int, default=0
    verbose_interval : int, default=10
    backend : {"auto", "numba", "cython", "numpy"}, default=None
    n_threads : int, default=None
        Results are bit-identical for any value.
    learning_decay : float in (0.5, 1], default=0.7
    learning_offset : float >= 0, default=10.0
        Step sizes of ``partial_fit`` (online EM), as GaussianMixture's.

    Notes
    -----
    ``fit`` takes an array, a memory map, ``fastem.Chunks`` or a Dask array and
    ``sample_weight``; ``partial_fit`` runs online EM on a stream of batches.  NaN entries are missing values, marginalised exactly in every
    method.  Initialization with "kmeans" or "k-means++" on data with missing entries
    clusters the rows with each missing entry replaced by its feature's mean (a copy of
    an array in memory; streamed data with missing entries take "random" or
    "random_from_data").  Parameters are float64 whatever the data's dtype.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    components_ : ndarray of shape (n_components, n_factors, n_features)
        The loadings W_k (rows: factors).
    noise_variance_ : ndarray of shape (n_components, n_features), or (n_features,) for
        shared noise
    converged_, n_iter_, lower_bound_, lower_bounds_, n_reseeded_ (always 0), backend_
        As GaussianMixture's: ``lower_bounds_`` is the mean log-likelihood at every
        iteration (never decreasing).
    n_features_in_, feature_names_in_
    """

    _allows_nan = True
    _fitted_attributes = (*BaseMixture._fitted_attributes, "means_", "components_",
                          "noise_variance_")
    _parameter_constraints = {
        **MIXTURE_CONSTRAINTS,
        "n_factors": [Interval(numbers.Integral, 1, None)],
        "noise_type": [Options("per_component", "shared")],
        "reg_covar": [Interval(numbers.Real, 0.0, None, closed="neither")],
        "init_params": [Options("kmeans", "k-means++", "random", "random_from_data")],
        **ONLINE_CONSTRAINTS,
    }

    def __init__(self, n_components: int = 1, *, n_factors: int = 1,
                 noise_type: str = "per_component", tol: float = 1e-3, reg_covar: float = 1e-6,
                 max_iter: int = 100, n_init: int = 1, init_params: str = "kmeans",
                 weights_init: Any = None, means_init: Any = None, random_state: Any = None,
                 warm_start: bool = False, verbose: int = 0, verbose_interval: int = 10,
                 backend: Optional[str] = None, n_threads: Optional[int] = None,
                 learning_decay: float = 0.7, learning_offset: float = 10.0) -> None:
        self.n_components = n_components
        self.n_factors = n_factors
        self.noise_type = noise_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.backend = backend
        self.n_threads = n_threads
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset

    def _check_fitted_state(self):
        super()._check_fitted_state()
        k, d = self.n_components, self.n_features_in_
        self._fitted_array("means_", (k, d))
        self._fitted_array("components_", (k, self.n_factors, d))
        shape = (d,) if self.noise_type == "shared" else (k, d)
        if (self._fitted_array("noise_variance_", shape) <= 0).any():
            raise ValueError("noise_variance_ must be positive")

    # ------------------------------------------------------------------ data
    def _check_input(self, X, *, owner, copy, name="X"):
        return check_array(X, name=name, owner=owner, copy=copy, allow_nan=True)

    def _check_data(self, X):
        return X

    def _fit_data(self, rows):
        q, d = self.n_factors, rows.n_features
        if q > d:
            raise ValueError(f"n_factors={q} must be at most the number of features, {d}.")
        return rows

    # ------------------------------------------------------------------ kernels
    def _kern(self):
        return self._kernels(self._runtime[0], "factor_analysis")

    def _params(self):
        """(means, loadings, inverse noise (K, D), log weights): the kernels' parameters."""
        inv_noise = np.empty(self.means_.shape)  # (writable: one kernel specialization)
        inv_noise[:] = 1.0 / self.noise_variance_
        with np.errstate(divide="ignore"):
            log_weights = np.log(self.weights_)
        return (np.ascontiguousarray(self.means_), np.ascontiguousarray(self.components_),
                inv_noise, log_weights)

    def _summarize(self, rows):
        """Mean log-likelihood and (the means the statistics are about, the E-step
        statistics summed over the chunks)."""
        total, ll = None, 0.0
        with limit_blas_threads():
            for part_ll, part in rows.map(_stats_chunk, self._kern(), self._params(),
                                          n_threads=self._runtime[1]):
                ll += part_ll
                total = part if total is None else tuple(t + p for t, p in zip(total, part))
        return ll / rows.total_weight, (self.means_.copy(), *total)

    def _estimate_log_prob(self, X):
        with limit_blas_threads():
            return _log_prob(X, self._kern(), self._params(), self._runtime[1])

    def _estimate_log_norm(self, X):
        return _log_norm(self._estimate_log_prob(X))

    def _fit_labels(self, rows):
        return np.concatenate(list(rows.map(_labels_chunk, self._kern(), self._params(),
                                            n_threads=self._runtime[1])))

    # ------------------------------------------------------------------ M-step
    def _from_summaries(self, rows, stats):
        """The regression M-step of the module docstring (``factor_m_step``)."""
        pool = "shared" if self.noise_type == "shared" else "component"
        self.means_, self.components_, noise = factor_m_step(
            stats, self.means_, self.components_, self.noise_variance_, pool, self.reg_covar)
        self.noise_variance_ = noise[0].copy() if pool == "shared" else noise
        floored = floored_counts(stats[1], rows)
        self.weights_ = floored / floored.sum()
        return 0

    # ------------------------------------------------------------------ online EM
    def _stats_per_weight(self, stats, total_weight):
        """Statistics about one fixed center c_k per component (the means when the
        running average starts), per unit weight.  A batch's come about the current
        means m_k; with delta = m_k - c_k, over the rows observing coordinate d:

            sum r z~ (y_d + delta_d)     = sum_zy[:, d] + delta_d sum r z~
            sum r (y_d + delta_d)^2      = sum_yy[d] + 2 delta_d sum r y_d
                                           + delta_d^2 sum r

        where sum r z~ over those rows is the last column of sum_zz less that of
        sum_zz_missing[d], sum r y_d is sum_zy's last row and sum r is nk less
        n_missing."""
        shift, nk, n_missing, sum_zy, sum_yy, sum_zz, sum_zz_missing = stats
        if getattr(self, "_running_stats", None) is None:
            self._online_center = shift.copy()
        delta = shift - self._online_center
        q = self.n_factors
        seen_z = sum_zz[:, None, :, q] - sum_zz_missing[:, :, :, q]  # (K, D, p)
        sum_yy = (sum_yy + 2.0 * delta * sum_zy[:, q, :]
                  + delta * delta * (nk[:, None] - n_missing))
        sum_zy = sum_zy + delta[:, None, :] * np.swapaxes(seen_z, 1, 2)
        return tuple(s / total_weight for s in
                     (nk, n_missing, sum_zy, sum_yy, sum_zz, sum_zz_missing))

    def _stats_for_batch(self, running, total_weight):
        return (self._online_center, *(s * total_weight for s in running))

    # ------------------------------------------------------------------ initialization
    def _em_initialize(self, rows, random_state):
        k, q, d = self.n_components, self.n_factors, rows.n_features
        weights = self._checked_weights_init()
        user_means = None
        if self.means_init is not None:
            user_means = check_array(self.means_init, name="means_init", copy=True)
            if user_means.shape != (k, d):
                raise ValueError(f"means_init must have shape ({k}, {d}), got "
                                 f"{user_means.shape}.")
            user_means = user_means.astype(np.float64)
        nk, n_obs, sum_x, scatter_of = self._initial_moments(rows, random_state)
        column = column_means(rows)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(n_obs > 0, sum_x / n_obs, column)
        if user_means is not None:
            means = user_means
        scatter = scatter_of(means) / np.maximum(nk, 1e-300)[:, None, None]
        loadings = np.zeros((k, q, d))
        noise = np.empty((k, d))
        for c in range(k):  # probabilistic PCA of each component's rows
            values, vectors = np.linalg.eigh(scatter[c])
            values, vectors = np.maximum(values[::-1], 0.0), vectors[:, ::-1]
            sigma2 = float(np.mean(values[q:])) if q < d else 0.0
            loadings[c] = (np.sqrt(np.maximum(values[:q] - sigma2, 0.0))[:, None]
                           * vectors[:, :q].T)
            noise[c] = np.diag(scatter[c]) - np.sum(loadings[c] ** 2, axis=0)
        if self.noise_type == "shared":
            noise = (nk @ noise) / max(float(nk.sum()), 1e-300)
        self.means_, self.components_ = means, loadings
        self.noise_variance_ = np.maximum(noise, self.reg_covar)
        floored = floored_counts(nk, rows)
        self.weights_ = floored / floored.sum() if weights is None else weights / weights.sum()

    def _initial_moments(self, rows, random_state):
        """(nk, the weight observing each feature (K, D), sum r x (K, D), a function of
        the means giving sum r y y^T (K, D, D)) of the initial responsibilities."""
        k = self.n_components
        if self.init_params == "random":
            from .gaussian_mixture import _random_resp_blocks

            state = random_state.get_state()

            def blocks():
                for xb, resp, w in _random_resp_blocks(rows, k, random_state):
                    xb = np.asarray(xb, dtype=np.float64)
                    observed = ~np.isnan(xb)
                    yield np.where(observed, xb, 0.0), observed, resp * w[:, None]

            first = [[_first_moments(*b) for b in blocks()]]
            end = random_state.get_state()

            def scatter_of(means):
                random_state.set_state(state)  # the same draws again
                out = sum(_scatter(*b, means) for b in blocks())
                random_state.set_state(end)
                return out
        else:
            labels = self._initial_labels(self._labelled_rows(rows), random_state)
            first = rows.map(_initial_first_chunk, k, state=(labels,))

            def scatter_of(means):
                return sum(sum(parts) for parts in rows.map(_initial_scatter_chunk, k, means,
                                                            state=(labels,)))
        nk = n_obs = sum_x = 0.0
        for parts in first:
            for part_nk, part_obs, part_x in parts:
                nk, n_obs, sum_x = nk + part_nk, n_obs + part_obs, sum_x + part_x
        return nk, n_obs, sum_x, scatter_of

    def _labelled_rows(self, rows):
        """The rows the initial clustering sees: missing entries replaced by their
        feature's mean (a copy; only an array in memory or a memory map)."""
        if self.init_params == "random_from_data":
            return rows
        missing = any(rows.map(_has_missing))
        if not missing:
            return rows
        if rows.array is None or rows.sparse:
            raise ValueError(
                f"init_params={self.init_params!r} clusters the rows, which have missing "
                "entries; streamed data (Chunks, Dask) with missing entries need "
                "init_params='random' or 'random_from_data'.")
        filled = rows.copy()
        array = np.array(rows.array)
        holes = np.isnan(array)
        array[holes] = np.broadcast_to(column_means(rows), array.shape)[holes]
        filled.array, filled.in_memory = array, True
        return filled

    # ------------------------------------------------------------------ parameters
    def _get_parameters(self):
        return (self.weights_.copy(), self.means_.copy(), self.components_.copy(),
                self.noise_variance_.copy())

    def _set_parameters(self, params):
        self.weights_, self.means_, self.components_, self.noise_variance_ = params

    def _n_parameters(self):
        """Free parameters: K - 1 weights, K D means, K (D q - q (q - 1) / 2) loadings
        (W_k is determined up to a rotation of its factors) and the noise variances."""
        k, q, d = self.components_.shape
        noise = d if self.noise_type == "shared" else k * d
        return int(k - 1 + k * d + k * (d * q - q * (q - 1) // 2) + noise)

    def get_covariances(self) -> Any:
        """The components' covariances W_k^T W_k + Psi_k, (n_components, D, D)."""
        self._check_is_fitted()
        noise = np.broadcast_to(self.noise_variance_, self.means_.shape)
        return (np.einsum("kqi,kqj->kij", self.components_, self.components_)
                + np.einsum("ki,ij->kij", noise, np.eye(self.means_.shape[1])))

    def sample(self, n_samples: int = 1) -> tuple:
        """Draw samples from the fitted model: (X (n_samples, n_features), the component
        of each sample)."""
        self._check_is_fitted()
        self._check_n_samples(n_samples)
        rng = self._sample_rng()
        counts = rng.multinomial(n_samples, self.weights_ / self.weights_.sum())
        k, q, d = self.components_.shape
        noise = np.broadcast_to(self.noise_variance_, (k, d))
        out, labels = [], []
        for c, m in enumerate(counts):
            if m == 0:
                continue
            z = rng.standard_normal((m, q))
            e = rng.standard_normal((m, d)) * np.sqrt(noise[c])
            out.append(self.means_[c] + z @ self.components_[c] + e)
            labels.append(np.full(m, c, dtype=np.int32))
        return np.vstack(out), np.concatenate(labels)
