"""Gaussian mixture models fitted by EM: ``GaussianMixture``, a drop-in for scikit-learn's.

E-step and M-step statistics come from one fused pass over the data per iteration
(``accumulate_stats_<covariance_type>`` kernels), so no N x K responsibility matrix
is ever held while fitting.  The M-step turns the shifted statistics into
parameters in float64:

    nk_k   = sum_i w_i r_ik + 10 eps mean_i(w_i)      (as scikit-learn, so no nk is 0)
    d_k    = sum_i w_i r_ik (x_i - s_k) / nk_k        (s_k: the shift, the old mean)
    mu_k   = s_k + d_k
    Sigma_k = [sum_i w_i r_ik (x_i - s_k)(x_i - s_k)^T - (2 nk_k - n_k) d_k d_k^T] / nk_k
            = sum_i w_i r_ik (x_i - mu_k)(x_i - mu_k)^T / nk_k     (exactly)

Working around the shift keeps the second moments small, so variances do not come
out negative by cancellation (any rounding below zero is clipped before
``reg_covar`` is added).
"""

from __future__ import annotations

import numbers
import warnings
from typing import TYPE_CHECKING

import numpy as np

from ._threads import limit_blas_threads
from ._validation import Interval, Options, check_array, check_magnitude
from .base import MIXTURE_CONSTRAINTS, ONLINE_CONSTRAINTS, BaseMixture, Iteration, floored_counts
from .exceptions import ConvergenceWarning
from .kernels._covariance import COVARIANCE_TYPES

if TYPE_CHECKING:
    from typing import Any, Optional, Union

    from ._typing import ArrayLike


#: Each covariance type's kernels (log densities, log norms and labels, the fused E+M
#: statistics), named in full so that a search finds every caller.
_KERNELS = {
    "full": ("estimate_log_prob_full", "estimate_log_norm_full", "accumulate_stats_full"),
    "tied": ("estimate_log_prob_tied", "estimate_log_norm_tied", "accumulate_stats_tied"),
    "diag": ("estimate_log_prob_diag", "estimate_log_norm_diag", "accumulate_stats_diag"),
    "spherical": ("estimate_log_prob_spherical", "estimate_log_norm_spherical",
                  "accumulate_stats_spherical"),
}
#: A component whose weight falls below this many (average) samples has collapsed.
_COLLAPSED_SAMPLES = 1e-6
_INIT_CHUNK = 65536


class CollapseWarning(ConvergenceWarning):
    """A mixture component collapsed during the fit and was re-seeded."""


def _cholesky_upper_precision(cov):
    """U with U U^T = cov^{-1} (upper triangular), or None if cov is not positive definite."""
    from scipy.linalg import solve_triangular

    try:
        lower = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.diag(lower) > 0):
        return None
    return solve_triangular(lower, np.eye(cov.shape[0]), lower=True).T


def _log_det_prec_chol(prec_chol, cov_type, n_features):
    """log det U_k, per component (K,) (tied: a scalar)."""
    if cov_type == "full":
        return np.sum(np.log(np.diagonal(prec_chol, axis1=1, axis2=2)), axis=1)
    if cov_type == "tied":
        return np.sum(np.log(np.diag(prec_chol)))
    if cov_type == "diag":
        return np.sum(np.log(prec_chol), axis=1)
    return n_features * np.log(prec_chol)


def _precisions_from_chol(prec_chol, cov_type):
    if cov_type == "full":
        return np.einsum("kij,klj->kil", prec_chol, prec_chol)
    if cov_type == "tied":
        return prec_chol @ prec_chol.T
    return prec_chol ** 2


def _chol_from_precisions(precisions, cov_type):
    """prec_chol from precision matrices (for ``precisions_init``), as scikit-learn does."""
    if cov_type in ("diag", "spherical"):
        return np.sqrt(precisions)
    mats = precisions if cov_type == "full" else precisions[None]
    out = np.empty_like(mats)
    for k, p in enumerate(mats):
        # U = flip(chol(flip(P))) gives upper-triangular U with U U^T = P
        lower = np.linalg.cholesky(p[::-1, ::-1])
        out[k] = lower[::-1, ::-1]
    return out if cov_type == "full" else out[0]


def _xx_shape(cov_type, n_components, n_features):
    return {"full": (n_components, n_features, n_features), "tied": (n_features, n_features),
            "diag": (n_components, n_features), "spherical": (n_components,)}[cov_type]


def _distinct_rows(chunk, k):
    """Distinct rows of positive weight of a chunk, collected a few rows at a time (never
    the whole chunk) until there are ``k`` of them."""
    step = max(100 * k, 1000)
    distinct = np.empty((0, chunk.X.shape[1]), dtype=chunk.X.dtype)
    positive = np.flatnonzero(chunk.w > 0)
    for lo in range(0, positive.size, step):
        distinct = np.unique(np.concatenate([distinct, chunk.X[positive[lo:lo + step]]]), axis=0)
        if distinct.shape[0] >= k:
            break
    return distinct


def _accumulate_chunk(chunk, kern, cov, means, prec_chol, log_consts):
    """The E-step and the shifted M-step statistics of a chunk, in one kernel pass:
    (log-likelihood, (nk, sum_x, sum_xx))."""
    k, d = means.shape
    part = (np.empty(k), np.empty((k, d)), np.empty(_xx_shape(cov, k, d)))
    ll = getattr(kern, _KERNELS[cov][2])(chunk.X, chunk.w, means, prec_chol, log_consts, means,
                                         *part, chunk.n_threads)
    return ll, part


def _log_norm(model, X, n_threads):
    """(log p(x), most probable component) of every row of X under ``model``
    (``GaussianMixture._model``)."""
    kern, cov, means, prec_chol, log_consts = model
    log_norm = np.empty(X.shape[0])
    labels = np.empty(X.shape[0], dtype=np.int32)
    getattr(kern, _KERNELS[cov][1])(X, means, prec_chol, log_consts, log_norm, labels,
                                    n_threads)
    return log_norm, labels


def _labels_of_chunk(chunk, model):
    return _log_norm(model, chunk.X, chunk.n_threads)[1]


def _worst_explained(chunk, model, m, total):
    """The chunk's ``m`` rows of lowest log-likelihood (zero-weight rows never): their
    log-likelihoods, global indices and values, and the chunk's share of the weighted
    mean of the data."""
    log_norm = _log_norm(model, chunk.X, chunk.n_threads)[0]
    log_norm[chunk.w == 0] = np.inf
    top = np.argsort(log_norm, kind="stable")[:m]
    return (log_norm[top], top + chunk.start, chunk.X[top],
            (chunk.w / total) @ chunk.X.astype(np.float64))


def _spread_of_chunk(chunk, center, total):
    centered = chunk.X - center  # float64, since center is
    return np.einsum("i,ij,ik->jk", chunk.w / total, centered, centered)


def _init_blocks(chunk):
    """(rows, weights, labels) of the chunk in blocks of _INIT_CHUNK rows."""
    for lo in range(0, chunk.X.shape[0], _INIT_CHUNK):
        hi = lo + _INIT_CHUNK
        yield chunk.X[lo:hi], chunk.w[lo:hi], chunk.state[0][lo:hi]


def _one_hot(labels, k):
    block = np.zeros((labels.size, k))
    hit = labels >= 0
    block[np.flatnonzero(hit), labels[hit]] = 1.0
    return block


def _random_resp_blocks(rows, k, random_state):
    """(rows, normalised uniform responsibilities, weights) in blocks of _INIT_CHUNK rows:
    the same stream as one uniform(size=(n, k)) call, drawn block by block.  Drawn in
    the caller's process, in row order."""
    for a, b, chunk in rows.chunks():
        for lo in range(0, b - a, _INIT_CHUNK):
            hi = min(lo + _INIT_CHUNK, b - a)
            block = random_state.uniform(size=(hi - lo, k))
            yield chunk[lo:hi], block / block.sum(axis=1)[:, None], rows.weight(a + lo, a + hi)


def _first_moments(xb, resp, w):
    """(sum_i w_i r_ik, sum_i w_i r_ik x_i) of one block."""
    wr = resp * w[:, None]
    return wr.sum(axis=0), wr.T @ xb.astype(np.float64)


def _second_moments(xb, resp, labels, w, shift, cov):
    """[(k, sum_i w_i r_ik (x_i - s_k), its second moment)] of one block, component by
    component (hard ``labels``: only the components present, each from its own rows)."""
    if labels is None:
        members = [(k, slice(None), resp[:, k] * w) for k in range(resp.shape[1])]
    else:  # hard labels: component k only sees its own rows (resp 1, others 0)
        members = [(k, idx, w[idx]) for k in np.unique(labels[labels >= 0])
                   for idx in [np.flatnonzero(labels == k)]]
    out = []
    for k, idx, wk in members:
        y = xb[idx].astype(np.float64) - shift[k]
        wy = y * wk[:, None]
        if cov in ("full", "tied"):
            xx = wy.T @ y
        elif cov == "diag":
            xx = np.einsum("ij,ij->j", wy, y)
        else:
            xx = np.einsum("ij,ij->", wy, y)
        out.append((k, wy.sum(axis=0), xx))
    return out


def _initial_first_moments(chunk, k):
    return [_first_moments(xb, _one_hot(lab, k), w) for xb, w, lab in _init_blocks(chunk)]


def _initial_second_moments(chunk, k, shift, cov):
    return [_second_moments(xb, None, lab, w, shift, cov) for xb, w, lab in _init_blocks(chunk)]


class GaussianMixture(BaseMixture):
    """Gaussian mixture model fitted by EM, a drop-in for ``sklearn.mixture.GaussianMixture``.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        Stop when the mean per-sample log-likelihood changes by less than ``tol``.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance, so they stay positive definite.
    max_iter : int, default=100
    n_init : int, default=1
        Initializations to run; the one with the highest lower bound is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        How initial responsibilities are chosen (fastem's own KMeans for "kmeans").
    weights_init, means_init, precisions_init : array-like, default=None
        User-provided initial parameters (precisions shaped like ``precisions_``).
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
        Step sizes of ``partial_fit`` (online EM): the t-th step after the first blends
        its batch's statistics in with weight ``(learning_offset + t) ** -learning_decay``
        (the names and defaults of scikit-learn's LatentDirichletAllocation).

    Notes
    -----
    ``fit`` takes an array, a memory map (``np.load(path, mmap_mode="r")``) or
    ``fastem.Chunks`` (data in pieces, read one chunk at a time): see ``fastem/_stream.py``.
    ``partial_fit`` runs online EM on a stream of batches.

    Beyond scikit-learn: ``fit(X, sample_weight=...)``; float32 data keep float32
    parameters (statistics are accumulated in float64); a collapsing component (weight
    below a millionth of a sample, or a covariance not positive definite after
    ``reg_covar``) is re-seeded at the worst-explained sample instead of aborting the
    fit, counted in ``n_reseeded_`` and reported by a ``CollapseWarning``.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean (weighted) log-likelihood of the training data at the best run's last
        iteration.
    lower_bounds_ : list of float
        The lower bound at every iteration of the best run.
    n_reseeded_ : int
    backend_ : str
    n_features_in_, feature_names_in_
    """

    _fitted_attributes = (*BaseMixture._fitted_attributes, "means_", "covariances_",
                          "precisions_", "precisions_cholesky_")

    def _check_fitted_state(self):
        super()._check_fitted_state()
        k, d, cov = self.n_components, self.n_features_in_, self.covariance_type
        means = self._fitted_array("means_", (k, d))
        shape = _xx_shape(cov, k, d)
        chol = self._fitted_array("precisions_cholesky_", shape)
        for name in ("covariances_", "precisions_"):
            self._fitted_array(name, shape)
        if len({means.dtype, chol.dtype, self.weights_.dtype}) != 1:
            raise ValueError("weights_, means_ and precisions_cholesky_ differ in dtype")
        if cov in ("full", "tied"):
            mats = chol if cov == "full" else chol[None]
            diag = np.diagonal(mats, axis1=1, axis2=2)
            if np.any(np.tril(mats, -1) != 0) or np.any(diag <= 0):
                raise ValueError("precisions_cholesky_ must be upper triangular with a positive "
                                 "diagonal (a positive-definite precision)")
        elif np.any(chol <= 0):
            raise ValueError("precisions_cholesky_ must be positive")
    _parameter_constraints = {
        **MIXTURE_CONSTRAINTS,
        "covariance_type": [Options(*COVARIANCE_TYPES)],
        "reg_covar": [Interval(numbers.Real, 0.0, None)],
        "init_params": [Options("kmeans", "k-means++", "random", "random_from_data")],
        "precisions_init": ["array-like", None],
        **ONLINE_CONSTRAINTS,
    }

    def __init__(self, n_components: int = 1, *, covariance_type: str = "full", tol: float = 1e-3,
                 reg_covar: float = 1e-6, max_iter: int = 100, n_init: Union[int, str] = 1,
                 init_params: str = "kmeans", weights_init: Optional[ArrayLike] = None,
                 means_init: Optional[ArrayLike] = None,
                 precisions_init: Optional[ArrayLike] = None, random_state: Any = None,
                 warm_start: bool = False, verbose: int = 0, verbose_interval: int = 10,
                 backend: Optional[str] = None, n_threads: Optional[int] = None,
                 learning_decay: float = 0.7, learning_offset: float = 10.0) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.backend = backend
        self.n_threads = n_threads
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset

    # ------------------------------------------------------------------ data checks
    def _check_data(self, X):
        check_magnitude(X, None, per_row=True)
        return X

    def _fit_data(self, rows):
        """The EM loop runs on the rows themselves, chunk by chunk (no weight vector)."""
        rows.check_magnitude()
        self._check_distinct_points(rows)
        return rows

    def _check_distinct_points(self, rows):
        """Only data with fewer distinct points than components cannot support the model.

        Distinct rows of positive weight are collected chunk by chunk until there are
        n_components of them (on all but degenerate data, within the first rows)."""
        k = self.n_components
        distinct = np.empty((0, rows.n_features), dtype=rows.dtype)
        for part in rows.map(_distinct_rows, k):
            distinct = np.unique(np.concatenate([distinct, part]), axis=0)
            if distinct.shape[0] >= k:
                return
        raise ValueError(
            f"X has only {distinct.shape[0]} distinct points (with positive weight) but "
            f"n_components={k}; use at most {distinct.shape[0]} components.")

    # ------------------------------------------------------------------ kernels
    def _kern(self):
        return self._kernels(self._runtime[0], "gaussian_mixture")

    def _log_consts(self):
        """log pi_k + log det U_k - D/2 log(2 pi), float64 (K,)."""
        n_features = self.means_.shape[1]
        log_det = _log_det_prec_chol(self.precisions_cholesky_.astype(np.float64),
                                     self.covariance_type, n_features)
        with np.errstate(divide="ignore"):
            log_w = np.log(self.weights_.astype(np.float64))
        return np.ascontiguousarray(log_w + log_det - 0.5 * n_features * np.log(2 * np.pi))

    def _params_for(self, dtype):
        """means and prec_chol in the data's dtype, C-contiguous."""
        return (np.ascontiguousarray(self.means_, dtype=dtype),
                np.ascontiguousarray(self.precisions_cholesky_, dtype=dtype))

    def _summarize(self, rows):
        """Mean log-likelihood and the shifted statistics, summed over the chunks."""
        cov = self.covariance_type
        n_components, n_features = self.means_.shape
        means, prec_chol = self._params_for(rows.dtype)
        stats = (np.zeros(n_components), np.zeros((n_components, n_features)),
                 np.zeros(_xx_shape(cov, n_components, n_features)))
        ll = 0.0
        with limit_blas_threads():
            for chunk_ll, part in rows.map(_accumulate_chunk, self._kern(), cov, means, prec_chol,
                                           self._log_consts(), n_threads=self._runtime[1]):
                ll += chunk_ll
                for total, p in zip(stats, part):
                    total += p
        return ll / rows.total_weight, (means.astype(np.float64), *stats)

    def _model(self, dtype):
        """(kernels, covariance type, means, prec_chol, log constants): what the per-chunk
        functions need of the current parameters, for data of ``dtype``."""
        means, prec_chol = self._params_for(dtype)
        return self._kern(), self.covariance_type, means, prec_chol, self._log_consts()

    def _fit_labels(self, rows):
        return np.concatenate(list(rows.map(_labels_of_chunk, self._model(rows.dtype),
                                            n_threads=self._runtime[1])))

    def _estimate_log_norm(self, X):
        with limit_blas_threads():
            return _log_norm(self._model(X.dtype), X, self._runtime[1])

    def _estimate_log_prob(self, X):
        kern = self._kern()
        means, prec_chol = self._params_for(X.dtype)
        out = np.empty((X.shape[0], self.n_components))
        with limit_blas_threads():
            getattr(kern, _KERNELS[self.covariance_type][0])(
                X, means, prec_chol, self._log_consts(), out, self._runtime[1])
        return out

    # ------------------------------------------------------------------ M-step
    def _covariances_from_moments(self, nk, d, sum_xx, n_raw):
        """Covariances (float64, scikit-learn shapes) from shifted moments; see module doc."""
        cov = self.covariance_type
        corr = (2 * nk - n_raw)  # (2 nk_eff - n_k): exact correction to the new mean
        if cov == "full":
            out = (sum_xx - corr[:, None, None] * d[:, :, None] * d[:, None, :]) / nk[:, None, None]
            out = 0.5 * (out + np.transpose(out, (0, 2, 1)))
            out[:, np.arange(d.shape[1]), np.arange(d.shape[1])] += self.reg_covar
        elif cov == "tied":
            out = (sum_xx - np.einsum("k,ki,kj->ij", corr, d, d)) / nk.sum()
            out = 0.5 * (out + out.T)
            out[np.diag_indices_from(out)] += self.reg_covar
        elif cov == "diag":
            out = np.maximum((sum_xx - corr[:, None] * d * d) / nk[:, None], 0.0) + self.reg_covar
        else:
            var = (sum_xx - corr * np.einsum("kj,kj->k", d, d)) / (nk * d.shape[1])
            out = np.maximum(var, 0.0) + self.reg_covar
        return out

    def _prec_chol_of(self, covariances):
        """Precision Cholesky factors and the list of components that are not PD."""
        cov = self.covariance_type
        if cov in ("diag", "spherical"):
            bad = np.flatnonzero(~(covariances > 0).reshape(covariances.shape[0], -1).all(axis=1))
            with np.errstate(divide="ignore", invalid="ignore"):
                return 1.0 / np.sqrt(covariances), list(bad)
        mats = covariances if cov == "full" else covariances[None]
        chol = np.empty_like(mats)
        bad = []
        for k, c in enumerate(mats):
            u = _cholesky_upper_precision(c)
            if u is None:
                bad.append(k)
                u = np.eye(c.shape[0])
            chol[k] = u
        return (chol if cov == "full" else chol[0]), bad

    def _set_from_moments(self, rows, nk_raw, means_shift, sum_x, sum_xx):
        """Turn (shifted) sufficient statistics into parameters; re-seed collapsed components.

        Returns the number of components re-seeded.
        """
        nk = floored_counts(nk_raw, rows)
        d = sum_x / nk[:, None]
        means = means_shift + d
        covariances = self._covariances_from_moments(nk, d, sum_xx, nk_raw)
        weights = nk / nk.sum()
        prec_chol, bad = self._prec_chol_of(covariances)
        mean_w = rows.total_weight / rows.n_rows
        collapsed = sorted(set(bad) | set(np.flatnonzero(nk_raw < _COLLAPSED_SAMPLES * mean_w)))
        if self.covariance_type == "tied" and bad:
            raise ValueError(
                "The tied covariance is not positive definite even after reg_covar: the data "
                "are degenerate (e.g. a constant feature). Increase reg_covar or rescale X.")
        if collapsed:
            # Install the surviving components first (collapsed ones with weight 0 and a
            # harmless placeholder precision) so "worst explained" is measured under them.
            weights[collapsed] = 0.0
            for k in collapsed:
                if self.covariance_type == "full":
                    prec_chol[k] = np.eye(prec_chol.shape[1])
                elif self.covariance_type in ("diag", "spherical"):
                    prec_chol[k] = 1.0
            self._store(rows.dtype, weights, means, covariances, prec_chol)
            weights, means, covariances, prec_chol = self._reseed(
                rows, collapsed, weights, means, covariances, prec_chol)
        self._store(rows.dtype, weights, means, covariances, prec_chol)
        return len(collapsed)

    def _store(self, dtype, weights, means, covariances, prec_chol):
        self.weights_ = weights.astype(dtype)
        self.means_ = means.astype(dtype)
        self.covariances_ = covariances.astype(dtype)
        self.precisions_cholesky_ = prec_chol.astype(dtype)
        self.precisions_ = _precisions_from_chol(prec_chol, self.covariance_type).astype(dtype)

    def _reseed(self, rows, collapsed, weights, means, covariances, prec_chol):
        """Re-seed collapsed components deterministically.

        The j-th collapsed component gets as mean the j-th worst-explained sample (lowest
        log-likelihood under the current model, ties to the lowest index), the data's
        overall covariance (diagonal or pooled, by type), and one sample's weight.
        Two passes over the chunks: the worst samples, then the spread.
        """
        m = len(collapsed)
        keep_v, keep_i = np.empty(0), np.empty(0, dtype=np.intp)
        keep_x = np.empty((0, rows.n_features), dtype=rows.dtype)
        total = rows.total_weight
        center = np.zeros(rows.n_features)  # the weighted mean of the data
        for v, i, x, part in rows.map(_worst_explained, self._model(rows.dtype), m, total,
                                      n_threads=self._runtime[1]):
            v = np.concatenate([keep_v, v])
            i = np.concatenate([keep_i, i])
            x = np.concatenate([keep_x, x])
            order = np.lexsort((i, v))[:m]  # lowest log-likelihood first, then index
            keep_v, keep_i, keep_x = v[order], i[order], x[order]
            center += part
        spread = np.zeros((rows.n_features, rows.n_features))
        for part in rows.map(_spread_of_chunk, center, total):
            spread += part
        spread[np.diag_indices_from(spread)] += self.reg_covar
        for j, k in enumerate(collapsed):
            means[k] = keep_x[j % keep_x.shape[0]]
            weights[k] = 1.0 / rows.n_rows
            if self.covariance_type == "full":
                covariances[k] = spread
            elif self.covariance_type == "diag":
                covariances[k] = np.diag(spread)
            elif self.covariance_type == "spherical":
                covariances[k] = np.trace(spread) / rows.n_features
        weights /= weights.sum()
        prec_chol, bad = self._prec_chol_of(covariances)
        if bad:
            raise ValueError(
                "Fitting the mixture failed: a component's covariance is not positive definite "
                "even after re-seeding it with the data covariance, so the data cannot support "
                "this model. Increase reg_covar, remove constant features, or rescale X.")
        self.n_reseeded_ += len(collapsed)
        warnings.warn(
            f"{len(collapsed)} mixture component(s) collapsed and were re-seeded at the "
            f"worst-explained samples (n_reseeded_={self.n_reseeded_}). Consider fewer "
            "components or a larger reg_covar.", CollapseWarning, stacklevel=4)
        return weights, means, covariances, prec_chol

    # ------------------------------------------------------------------ online EM
    def _stats_per_weight(self, stats, total_weight):
        """Statistics around one fixed center c (the model's mean when the running
        average starts), per unit weight.  A batch's statistics come around each
        component's current mean m_k; with u = x - m_k and delta_k = m_k - c, exactly:

            sum w r (x - c)          = S1 + nk delta
            sum w r (x - c)(x - c)^T = S2 + S1 delta^T + delta S1^T + nk delta delta^T

        (diag: S2 + 2 delta S1 + nk delta^2; spherical: the trace of that)."""
        shift, nk, sum_x, sum_xx = stats
        if getattr(self, "_running_stats", None) is None:
            self._online_center = self.weights_.astype(np.float64) @ shift
        delta = shift - self._online_center
        cross = sum_x[:, :, None] * delta[:, None, :]
        cov = self.covariance_type
        if cov == "full":
            sum_xx = sum_xx + cross + cross.transpose(0, 2, 1) + \
                nk[:, None, None] * delta[:, :, None] * delta[:, None, :]
        elif cov == "tied":
            sum_xx = sum_xx + (cross + cross.transpose(0, 2, 1) + nk[:, None, None]
                               * delta[:, :, None] * delta[:, None, :]).sum(axis=0)
        elif cov == "diag":
            sum_xx = sum_xx + 2 * delta * sum_x + nk[:, None] * delta * delta
        else:
            sum_xx = sum_xx + 2 * np.einsum("kj,kj->k", delta, sum_x) + \
                nk * np.einsum("kj,kj->k", delta, delta)
        sum_x = sum_x + nk[:, None] * delta
        return nk / total_weight, sum_x / total_weight, sum_xx / total_weight

    def _stats_for_batch(self, running, total_weight):
        nk, sum_x, sum_xx = running
        shift = np.broadcast_to(self._online_center, sum_x.shape)
        return shift, nk * total_weight, sum_x * total_weight, sum_xx * total_weight

    def _from_summaries(self, rows, stats):
        means_shift, nk, sum_x, sum_xx = stats
        return self._set_from_moments(rows, nk, means_shift, sum_x, sum_xx)

    def _em_iterate(self, rows):
        """One E+M iteration, with the slack reg_covar leaves the next bound.

        EM's guarantee is that the log-likelihood rises by at least what the update
        gains of Q, the expected complete log-likelihood under this E-step.  Adding
        reg_covar to the covariances makes the update Q's maximizer no more, and its
        gain can be negative (a component on one point, whose variance was above
        reg_covar, is put back at reg_covar): the bound may then fall by that much.
        """
        bound, stats = self._summarize(rows)
        before = self._expected_complete_loglik(stats)
        noise = self._bound_rounding(stats, rows.dtype)
        reseeded = self._from_summaries(rows, stats)
        lost = before - self._expected_complete_loglik(stats)
        return Iteration(bound, reseeded=bool(reseeded),
                         slack=(max(lost, 0.0) + noise) / rows.total_weight)

    def _bound_rounding(self, stats, dtype):
        """The size of the rounding errors of the bounds before and after an update.

        Each sample's squared Mahalanobis distance is a sum of terms bounded by
        ||P_k||_2 ||x - mu_k||^2, computed in the data's dtype, so it carries an error of
        a few eps times that (||P||_2 <= the largest absolute row sum of P); summed with
        the weights, sum_i w_i r_ik ||x_i - mu_k||^2 is about tr(M_k).  For data that fit
        the model this is a few eps times D per unit weight; for a near-singular
        covariance (data of scale 1e8 on fewer points than features, reg_covar 1e-6)
        it is large, and rounding alone does move the bound that much.
        """
        _, _, _, sum_xx = stats
        cov = self.covariance_type
        prec = self.precisions_.astype(np.float64)
        if cov in ("full", "tied"):
            norm_p = np.abs(prec).sum(axis=-1).max(axis=-1)
            tr_m = np.trace(sum_xx, axis1=-2, axis2=-1)
        elif cov == "diag":
            norm_p, tr_m = prec.max(axis=1), sum_xx.sum(axis=1)
        else:
            norm_p, tr_m = prec, sum_xx
        return 4.0 * float(np.finfo(dtype).eps) * float(np.sum(norm_p * tr_m))

    def _expected_complete_loglik(self, stats):
        """Q of the current parameters for the E-step statistics ``stats``:

            Q   = sum_k n_k c_k - 1/2 sum_k tr(P_k C_k)
            c_k = log pi_k + 1/2 log|P_k| - D/2 log 2 pi
            C_k = sum_i w_i r_ik (x_i - mu_k)(x_i - mu_k)^T
                = M_k - s_k e_k^T - e_k s_k^T + n_k e_k e_k^T

        where the statistics are around the shift t_k (``M_k``, ``s_k``), e_k = mu_k - t_k,
        and P_k the precision (shared when tied; diagonal, or a multiple of the identity).
        """
        shift, n, sum_x, sum_xx = stats
        cov = self.covariance_type
        prec = self.precisions_.astype(np.float64)
        e = self.means_.astype(np.float64) - shift
        if cov in ("full", "tied"):
            p = prec if cov == "full" else np.broadcast_to(prec, (n.shape[0],) + prec.shape)
            trace = np.sum(p * sum_xx) if cov == "full" else np.sum(prec * sum_xx)
            quad = np.einsum("ki,kij,kj->k", e, p, n[:, None] * e - 2.0 * sum_x)
        else:
            p = prec if cov == "diag" else prec[:, None]
            trace = np.sum(prec * sum_xx)
            quad = np.sum(p * e * (n[:, None] * e - 2.0 * sum_x), axis=1)
        with np.errstate(invalid="ignore"):  # an empty component's 0 * log 0
            counts = np.where(n > 0, n * self._log_consts(), 0.0)
        return float(np.sum(counts) - 0.5 * (trace + np.sum(quad)))

    # ------------------------------------------------------------------ initialization
    def _initial_moments(self, rows, random_state):
        """Two passes over the initial responsibilities: means, then shifted moments.

        The hard labels are computed once; only the "random" draws are replayed for the
        second pass (the random state ends as after drawing them once).
        """
        n_components, n_features, cov = self.n_components, rows.n_features, self.covariance_type
        labels = self._initial_labels(rows, random_state)
        nk = np.zeros(n_components)
        sums = np.zeros((n_components, n_features))
        if labels is None:
            state = random_state.get_state()
            first = ([_first_moments(xb, resp, w)] for xb, resp, w in
                     _random_resp_blocks(rows, n_components, random_state))
        else:
            first = rows.map(_initial_first_moments, n_components, state=(labels,))
        for parts in first:
            for part_nk, part_sums in parts:
                nk += part_nk
                sums += part_sums
        shift = sums / floored_counts(nk, rows)[:, None]
        if labels is None:
            end_state = random_state.get_state()
            random_state.set_state(state)  # replay the same draws for the second pass
            second = ([_second_moments(xb, resp, None, w, shift, cov)] for xb, resp, w in
                      _random_resp_blocks(rows, n_components, random_state))
        else:
            second = rows.map(_initial_second_moments, n_components, shift, cov,
                              state=(labels,))
        sum_x = np.zeros_like(sums)
        sum_xx = np.zeros(_xx_shape(cov, n_components, n_features))
        for parts in second:
            for members in parts:
                for k, part_x, part_xx in members:
                    sum_x[k] += part_x
                    if cov == "tied":
                        sum_xx += part_xx
                    else:
                        sum_xx[k] += part_xx
        if labels is None:
            random_state.set_state(end_state)
        return nk, shift, sum_x, sum_xx

    def _em_initialize(self, rows, random_state):
        n_components, n_features = self.n_components, rows.n_features
        user = self._checked_user_init(rows)
        if any(v is None for v in user.values()):
            nk, shift, sum_x, sum_xx = self._initial_moments(rows, random_state)
            self._set_from_moments(rows, nk, shift, sum_x, sum_xx)
            if user["weights"] is None:
                # scikit-learn: initial weights are nk / n_samples (nk with its floor)
                self.weights_ = (floored_counts(nk, rows) / rows.total_weight).astype(rows.dtype)
        if user["weights"] is not None:
            self.weights_ = user["weights"]
        if user["means"] is not None:
            self.means_ = user["means"]
        if user["precisions"] is not None:
            chol = _chol_from_precisions(user["precisions"].astype(np.float64),
                                         self.covariance_type)
            self.precisions_cholesky_ = chol.astype(rows.dtype)
            self.precisions_ = user["precisions"]
            self.covariances_ = self._covariances_from_precisions(user["precisions"])
        assert self.means_.shape == (n_components, n_features)

    def _covariances_from_precisions(self, precisions):
        if self.covariance_type in ("diag", "spherical"):
            return (1.0 / precisions).astype(precisions.dtype)
        return np.linalg.inv(precisions).astype(precisions.dtype)

    def _checked_user_init(self, X):
        """Validate weights_init / means_init / precisions_init against X."""
        k, d, cov = self.n_components, X.shape[1], self.covariance_type
        out = {"weights": None, "means": None, "precisions": None}
        weights = self._checked_weights_init()
        if weights is not None:
            out["weights"] = weights.astype(X.dtype)
        if self.means_init is not None:
            m = check_array(self.means_init, name="means_init", dtype=X.dtype, copy=True)
            if m.shape != (k, d):
                raise ValueError(f"means_init must have shape ({k}, {d}), got {m.shape}.")
            out["means"] = m
        if self.precisions_init is not None:
            p = np.array(self.precisions_init, dtype=np.float64)
            shape = _xx_shape(cov, k, d)
            if p.shape != shape:
                raise ValueError(f"precisions_init must have shape {shape} for covariance_type="
                                 f"{cov!r}, got {p.shape}.")
            if not np.isfinite(p).all():
                raise ValueError("precisions_init contains NaN or infinity.")
            if cov in ("diag", "spherical"):
                if (p <= 0).any():
                    raise ValueError("precisions_init must be positive.")
            else:
                mats = p if cov == "full" else p[None]
                for mat in mats:
                    if not np.allclose(mat, mat.T) or np.any(np.linalg.eigvalsh(mat) <= 0):
                        raise ValueError("precisions_init must be symmetric positive definite.")
            out["precisions"] = p.astype(X.dtype)
        return out

    # ------------------------------------------------------------------ parameters
    def _get_parameters(self):
        return (self.weights_.copy(), self.means_.copy(), self.covariances_.copy(),
                self.precisions_cholesky_.copy(), self.precisions_.copy())

    def _set_parameters(self, params):
        (self.weights_, self.means_, self.covariances_, self.precisions_cholesky_,
         self.precisions_) = params

    def _n_parameters(self):
        k, d = self.means_.shape
        cov_params = {"full": k * d * (d + 1) / 2, "tied": d * (d + 1) / 2, "diag": k * d,
                      "spherical": k}[self.covariance_type]
        return int(cov_params + k * d + k - 1)

    def sample(self, n_samples: int = 1) -> tuple:
        """Draw samples from the fitted model.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,), the component of each sample
        """
        self._check_is_fitted()
        self._check_n_samples(n_samples)
        rng = self._sample_rng()
        counts = rng.multinomial(n_samples, self.weights_.astype(np.float64) /
                                 self.weights_.astype(np.float64).sum())
        d = self.means_.shape[1]
        out, labels = [], []
        for k, c in enumerate(counts):
            if c == 0:
                continue
            z = rng.standard_normal((c, d))
            mean = self.means_[k].astype(np.float64)
            if self.covariance_type == "full":
                x = mean + z @ np.linalg.cholesky(self.covariances_[k].astype(np.float64)).T
            elif self.covariance_type == "tied":
                x = mean + z @ np.linalg.cholesky(self.covariances_.astype(np.float64)).T
            elif self.covariance_type == "diag":
                x = mean + z * np.sqrt(self.covariances_[k].astype(np.float64))
            else:
                x = mean + z * np.sqrt(float(self.covariances_[k]))
            out.append(x)
            labels.append(np.full(c, k, dtype=np.int32))
        return np.vstack(out).astype(self.means_.dtype), np.concatenate(labels)
