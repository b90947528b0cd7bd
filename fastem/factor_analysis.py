"""Factor analysis by EM from the data's moments: ``FactorAnalysis``, a drop-in for
scikit-learn's.

The model is x = W^T z + mu + e, z ~ N(0, I_q), e ~ N(0, Psi) with Psi diagonal, so
x ~ N(mu, C), C = W^T W + Psi.  Its likelihood depends on the data only through n, the
mean and the (biased) covariance S, so a fit is two passes over the rows (the mean,
then the moments about it: the ``weighted_moments`` kernel, chunk by chunk in chunk
order, in memory, memory-mapped, from ``Chunks`` or on Dask) followed by D x D
iterations that never touch the rows again.

Each iteration is the one scikit-learn runs (Barber, "Bayesian Reasoning and Machine
Learning", algorithm 21.1), written on S instead of the data: with s = sqrt(Psi),

    A = S / (s s^T)                     (the covariance in units of the noise)
    lambda_1 >= ... >= lambda_D, v_j    its eigenvalues and eigenvectors
    W = sqrt(max(lambda_j - 1, 0)) v_j^T diag(s)     for the top q
    loglike = -n/2 (D log 2 pi + q + sum_{j<=q} log lambda_j + sum_{j>q} lambda_j
                    + sum log Psi)
    Psi <- max(diag(S) - diag(W^T W), 1e-12)

scikit-learn takes the singular values of the centered rows scaled by 1/(s sqrt(n)),
whose squares are these eigenvalues: the same iteration at O(D^3) instead of
O(N D^2) each.  It stops when loglike gains less than ``tol``.
"""

from __future__ import annotations

import numbers
import warnings
from typing import TYPE_CHECKING

import numpy as np

from ._config import BACKENDS
from ._threads import limit_blas_threads
from ._validation import Interval, Options, check_array
from .base import EMEstimator, Iteration

if TYPE_CHECKING:
    from typing import Any, Optional

    from typing_extensions import Self

#: The floor of the noise variances (and of their square roots), as scikit-learn's.
_SMALL = 1e-12


def _moments_chunk(chunk, kern, center, full):
    """(count, sum of y, sum of y y^T (``full``) or of y^2) of a chunk's rows, y = x -
    center."""
    d = chunk.X.shape[1]
    nk, sum_y, sum_yy = np.empty(1), np.empty((1, d)), np.empty((1, d if full else 1, d))
    kern.weighted_moments(chunk.X, center, chunk.w[:, None], nk, sum_y, sum_yy,
                          chunk.n_threads)
    return nk[0], sum_y[0], sum_yy[0]


def _stats_chunk(chunk, kern, params):
    """(sum_i w_i log p(x_i), the E-step statistics) of a chunk of rows with missing
    entries: one ``factor_stats`` call (``kernels/reference/factor_analysis.py``)."""
    means, loadings, inv_noise, log_weights = params
    k, q, d = loadings.shape
    p = q + 1
    stats = (np.empty(k), np.empty((k, d)), np.empty((k, p, d)), np.empty((k, d)),
             np.empty((k, p, p)), np.empty((k, d, p, p)))
    ll = kern.factor_stats(chunk.X, chunk.w, means, loadings, inv_noise, log_weights, *stats,
                           chunk.n_threads)
    return ll, stats


def _has_missing(chunk):
    return bool(np.isnan(chunk.X).any())


def _observed_sums(chunk):
    """(sum_i w_i x_id over the observed entries, sum_i w_i [x_id observed])."""
    observed = ~np.isnan(chunk.X)
    return (np.where(observed, chunk.X, 0.0).T @ chunk.w,
            observed.T.astype(np.float64) @ chunk.w)


def column_means(rows):
    """Every feature's mean over its observed entries (0 for a feature never seen)."""
    total = seen = 0.0
    for part_total, part_seen in rows.map(_observed_sums):
        total, seen = total + part_total, seen + part_seen
    with np.errstate(invalid="ignore"):
        return np.where(seen > 0, total / np.where(seen > 0, seen, 1.0), 0.0)


def _imputed_scatter(chunk, mean):
    y = np.where(np.isnan(chunk.X), 0.0, chunk.X - mean)
    return (y * chunk.w[:, None]).T @ y


def factor_m_step(stats, means, loadings, noise, pool, floor):
    """The factor models' M-step from the E-step statistics (``factor_stats``, about the
    means ``shift``): each coordinate d of component k a weighted regression of y_d on
    z~ = (E[z], 1) over the rows observing d (``fastem/mfa.py``'s docstring gives the
    algebra).  ``means`` (K, D), ``loadings`` (K, q, D), ``noise`` broadcastable to (K,
    D); ``pool`` the noise variances' sharing: "component" (each its own), "shared"
    (one per feature for all components) or "isotropic" (one for everything).  A
    coordinate no row observes keeps its parameters.  Returns (means, loadings, noise
    (K, D)), the noise variances at least ``floor``."""
    shift, nk, n_missing, sum_zy, sum_yy, sum_zz, sum_zz_missing = stats
    q = loadings.shape[1]
    n_obs = nk[:, None] - n_missing  # (K, D): the weight of the rows observing d
    gram = sum_zz[:, None] - sum_zz_missing  # A_kd (K, D, p, p)
    cross = np.swapaxes(sum_zy, 1, 2)  # b_kd (K, D, p)
    fit = n_obs > 1e-12 * max(1.0, float(nk.sum()) / max(1, nk.size))
    coef = np.zeros_like(cross)
    coef[fit] = np.linalg.solve(gram[fit], cross[fit][..., None])[..., 0]
    resid = np.where(fit, sum_yy - np.einsum("kdp,kdp->kd", coef, cross), 0.0)
    means, loadings = np.where(fit, shift, means), loadings.copy()
    means[fit] += coef[..., q][fit]
    loadings.transpose(0, 2, 1)[fit] = coef[..., :q][fit]
    old = np.broadcast_to(noise, means.shape)
    counts = np.where(fit, n_obs, 0.0)
    if pool == "component":
        pooled_resid, pooled_n = resid, counts
    elif pool == "shared":
        pooled_resid, pooled_n = resid.sum(axis=0), counts.sum(axis=0)
    else:
        pooled_resid, pooled_n = resid.sum(), counts.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        new = np.broadcast_to(pooled_resid / pooled_n, means.shape)
    noise = np.where(np.broadcast_to(pooled_n > 0, means.shape), new, old)
    return means, loadings, np.maximum(noise, floor)


class MissingRows:
    """Rows with missing entries, for the factor models' EM on the rows themselves
    (their moments are not enough): the rows, the kernels, the thread count and the
    start (from the moments of the rows with each missing entry at its feature's
    mean)."""

    def __init__(self, rows, kern, n_threads):
        self.rows, self.kern, self.n_threads = rows, kern, n_threads
        self.shape = rows.shape
        mean = column_means(rows)
        scatter = sum(rows.map(_imputed_scatter, mean))
        self.imputed = object.__new__(Moments)
        self.imputed.n, self.imputed.mean = rows.total_weight, mean
        self.imputed.cov = scatter / rows.total_weight
        self.imputed.var = np.diag(self.imputed.cov).copy()
        self.imputed.shape = rows.shape

    def step(self, mean, loadings, noise, pool, floor):
        """One EM step of the one-component factor model: (sum_i log p(x_i) under the
        given parameters, and the updated mean, loadings and noise (D,))."""
        params = (mean[None].copy(), loadings[None].copy(),
                  np.ascontiguousarray(np.broadcast_to(1.0 / noise, (1, mean.size))),
                  np.zeros(1))
        total, ll = None, 0.0
        for part_ll, part in self.rows.map(_stats_chunk, self.kern, params,
                                           n_threads=self.n_threads):
            ll += part_ll
            total = part if total is None else tuple(t + p for t, p in zip(total, part))
        means, loads, noise = factor_m_step((params[0], *total), params[0], params[1],
                                            noise, pool, floor)
        return float(ll), means[0], loads[0], noise[0]


class Moments:
    """What a factor analysis fit needs of its data: n, the mean and the biased
    covariance (float64), from two passes over the rows."""

    def __init__(self, rows, kern):
        d = rows.n_features
        n, total = 0.0, np.zeros(d)
        for nk, sum_y, _ in rows.map(_moments_chunk, kern, np.zeros(d), False):
            n, total = n + nk, total + sum_y
        self.n, self.mean = n, total / n
        self.shape = (int(rows.n_rows), d)
        if not np.isfinite(self.mean).all():  # missing entries: no second pass
            return
        scatter, shift = np.zeros((d, d)), np.zeros(d)
        for _, sum_y, sum_yy in rows.map(_moments_chunk, kern, self.mean, True):
            scatter += sum_yy
            shift += sum_y
        shift /= n  # the rounding left in the first pass's mean (about 1e-16 of it)
        self.cov = scatter / n - np.outer(shift, shift)
        self.var = np.diag(self.cov).copy()

    def merged(self, other):
        """The moments of these rows and ``other``'s together (Chan, Golub and LeVeque's
        pairwise update: the scatter about the common mean is both scatters plus
        n_a n_b / n (m_b - m_a)(m_b - m_a)^T)."""
        out = object.__new__(Moments)
        n = self.n + other.n
        delta = other.mean - self.mean
        out.n, out.mean = n, self.mean + delta * (other.n / n)
        out.cov = (self.n * self.cov + other.n * other.cov
                   + np.outer(delta, delta) * (self.n * other.n / n)) / n
        out.var = np.diag(out.cov).copy()
        out.shape = (self.shape[0] + other.shape[0], self.shape[1])
        return out


def _ortho_rotation(loadings, method, tol=1e-6, max_iter=100):
    """The orthogonal rotation R of the loadings L (D, q) maximising the varimax or
    quartimax criterion, by the SVD iteration of Kaiser's criterion: the gradient of the
    criterion at B = L R is G = B^3 - B diag(mean_i B_i^2) (varimax) or B^3
    (quartimax), and the best rotation towards it is U V^T for L^T G = U S V^T; stop
    when sum(S) grows by less than ``tol`` relatively.  Returns L R."""
    n_rows, q = loadings.shape
    rotation = np.eye(q)
    last = 0.0
    for _ in range(max_iter):
        rotated = loadings @ rotation
        gradient = rotated ** 3
        if method == "varimax":
            gradient -= rotated * ((rotated ** 2).sum(axis=0) / n_rows)
        u, s, vt = np.linalg.svd(loadings.T @ gradient)
        rotation = u @ vt
        criterion = float(np.sum(s))
        if last != 0 and criterion < last * (1 + tol):
            break
        last = criterion
    return loadings @ rotation


class LinearGaussian:
    """Inference in x = W^T z + mean + e, z ~ N(0, I), e ~ N(0, diag(psi)), shared by
    the factor models: a model gives ``_loadings()`` W (q, D), ``_noise()`` psi (D,) and
    ``mean_``.  Every formula goes through the q x q matrix I + W Psi^-1 W^T, never a
    D x D inverse."""

    _allows_nan = True  # missing entries: marginalised (the rows' EM, ``MissingRows``)

    def _rows(self, X):
        self._check_is_fitted()
        X = self._validate_data(X, reset=False)
        return np.asarray(X, dtype=np.float64) - self.mean_

    def _pattern_posterior(self, centered):
        """(log p(x_o), E[z | x_o]) of rows with missing (NaN) entries, a missing-value
        pattern at a time, through each pattern's q x q matrix I + W_o Psi_o^-1 W_o^T."""
        from .kernels.reference.factor_analysis import _patterns

        w, psi = self._loadings(), self._noise()
        n, q = centered.shape[0], w.shape[0]
        log_p, z = np.empty(n), np.zeros((n, q))
        for observed, rows in _patterns(centered):
            y = centered[np.ix_(rows, observed)]
            w_o, psi_o = w[:, observed], psi[observed]
            w_psi = w_o / psi_o
            inner = np.eye(q) + w_psi @ w_o.T
            b = y @ w_psi.T
            z[rows] = np.linalg.solve(inner, b.T).T
            quad = np.einsum("ij,ij->i", y * y, np.broadcast_to(1.0 / psi_o, y.shape)) - \
                np.einsum("ij,ij->i", b, z[rows])
            log_p[rows] = -0.5 * (observed.sum() * np.log(2 * np.pi) + quad + np.sum(
                np.log(psi_o)) + np.linalg.slogdet(inner)[1])
        return log_p, z

    def _inner(self):
        """(W Psi^-1 (q, D), I + W Psi^-1 W^T (q, q)): what every formula goes through."""
        w = self._loadings()
        w_psi = w / self._noise()
        return w_psi, np.eye(w.shape[0]) + w_psi @ w.T

    def _factor_posterior(self):
        """(W Psi^-1, the posterior covariance of z, (I + W Psi^-1 W^T)^-1)."""
        w_psi, inner = self._inner()
        return w_psi, np.linalg.inv(inner)

    def transform(self, X: Any) -> Any:
        """E[z | x] of every row: (I + W Psi^-1 W^T)^-1 W Psi^-1 (x - mean) (over the
        observed coordinates of a row with missing entries)."""
        centered = self._rows(X)
        if np.isnan(centered).any():
            return self._pattern_posterior(centered)[1]
        w_psi, cov_z = self._factor_posterior()
        return centered @ w_psi.T @ cov_z

    def get_covariance(self) -> Any:
        """The model's covariance W^T W + Psi."""
        self._check_is_fitted()
        w = self._loadings()
        return w.T @ w + np.diag(self._noise())

    def get_precision(self) -> Any:
        """C^-1 by the Woodbury identity: Psi^-1 - Psi^-1 W^T (I + W Psi^-1 W^T)^-1 W
        Psi^-1 (a q x q inverse, not a D x D one)."""
        self._check_is_fitted()
        w_psi, cov_z = self._factor_posterior()
        return np.diag(1.0 / self._noise()) - w_psi.T @ cov_z @ w_psi

    def _log_det_covariance(self):
        """log det C = log det(I + W Psi^-1 W^T) + sum log Psi (the determinant lemma)."""
        return float(np.linalg.slogdet(self._inner()[1])[1] + np.sum(np.log(self._noise())))

    def score_samples(self, X: Any) -> Any:
        """log N(x | mean, C) of every row (of its observed coordinates, the missing ones
        marginalised)."""
        centered = self._rows(X)
        if np.isnan(centered).any():
            return self._pattern_posterior(centered)[0]
        precision = self.get_precision()
        d = centered.shape[1]
        quad = np.einsum("ij,ij->i", centered @ precision, centered)
        return -0.5 * (quad + d * np.log(2 * np.pi) + self._log_det_covariance())

    def score(self, X: Any, y: None = None) -> float:
        """The average log-likelihood of the rows of X."""
        return float(np.mean(self.score_samples(X)))

    @property
    def _n_fit_rows(self):
        """The rows fitted (all the batches of ``partial_fit``)."""
        return self._seen.shape[0]

    def fit_transform(self, X: Any, y: None = None) -> Any:
        """``fit(X).transform(X)``."""
        return self.fit(X).transform(X)

    def _check_input(self, X, *, owner, copy, name="X"):
        return check_array(X, name=name, owner=owner, copy=False, allow_nan=True)

    def _fit_moments(self, X, reset=True, min_rows=2):
        """X (an array, a memory map, ``Chunks`` or a Dask array) checked and reduced to
        its ``Moments``, two passes of the moments kernel; or, when X has missing
        entries (the first pass's sums are NaN), its ``MissingRows``."""
        rows = self._validate_rows(X, None, reset=reset)
        self._runtime = self._resolve_runtime()
        if rows.n_rows < min_rows:
            raise ValueError(f"{type(self).__name__} needs at least 2 samples; got "
                             f"{rows.n_rows}.")
        kern = self._kernels(self._runtime[0], "factor_analysis")
        moments = Moments(rows, kern)
        if np.isfinite(moments.mean).all():
            return moments
        return MissingRows(rows, kern, self._runtime[1])

    def _moments_so_far(self, X):
        """(the moments of every row seen, X's merged in, whether X is the first batch):
        ``partial_fit``'s data.  A model loaded from a file has no running moments."""
        first = not self.__sklearn_is_fitted__()
        if not first and getattr(self, "_seen", None) is None:
            raise ValueError(f"this {type(self).__name__} holds no running moments (it was "
                             "loaded from a file, or fitted to data with missing entries): "
                             "partial_fit can only continue a model fitted in this process "
                             "to complete rows; fit it again on all the data.")
        # (a later batch may be a single row: the moments seen have two already)
        moments = self._fit_moments(X, reset=first, min_rows=2 if first else 1)
        if isinstance(moments, MissingRows):
            raise ValueError(f"{type(self).__name__}.partial_fit takes rows without missing "
                             "entries (its running moments are exact only for those); fit "
                             "marginalises missing entries.")
        return (moments if first else self._seen.merged(moments)), first


class FactorAnalysis(LinearGaussian, EMEstimator):
    """Factor analysis (maximum likelihood, diagonal noise) with scikit-learn's
    parameters, defaults, attributes and iterations, fitted from the data's moments.

    Parameters
    ----------
    n_components : int or None, default=None
        Number of factors q (None: the number of features).
    tol : float, default=1e-2
        Stop when the log-likelihood gains less than this.
    copy : bool, default=True
        Accepted for compatibility: the data are never changed (the fit reads their
        moments).
    max_iter : int, default=1000
    noise_variance_init : array-like of shape (n_features,) or None, default=None
        The starting noise variances (None: ones).
    svd_method : {"lapack", "randomized"}, default="randomized"
        Accepted for compatibility: each iteration's decomposition here is the exact
        eigendecomposition of a D x D matrix, so both give scikit-learn's "lapack"
        iterations (its "randomized" ones approximate them).
    iterated_power : int, default=3
        Accepted for compatibility (the power iterations of the randomized SVD).
    rotation : {"varimax", "quartimax"} or None, default=None
        An orthogonal rotation of the fitted loadings.
    random_state : int, RandomState or None, default=0
        Accepted for compatibility (the fit draws nothing).
    backend : {"auto", "numba", "cython", "numpy"} or None, default=None
    n_threads : int or None, default=None
        Threads for the moments pass; the result is the same for any count.

    Notes
    -----
    NaN entries are missing values, marginalised exactly (scikit-learn refuses them):
    the moments no longer suffice, so the fit starts from the moments of the rows with
    each missing entry at its feature's mean and then runs EM on the rows (each
    iteration a pass of the ``factor_stats`` kernel over the observed coordinates,
    then the regression M-step of ``factor_m_step``), until ``loglike_`` gains less
    than ``tol``; ``score_samples`` and ``transform`` use each row's observed
    coordinates.  ``partial_fit`` takes complete rows only.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The loadings W (rows: factors).
    loglike_ : list of float
        The log-likelihood of every iteration (never decreasing).
    noise_variance_ : ndarray of shape (n_features,)
    n_iter_ : int
    mean_ : ndarray of shape (n_features,)
    n_samples_seen_ : int
        The rows fitted (all the batches of ``partial_fit``).
    n_features_in_, feature_names_in_
    """

    _estimator_type = "transformer"
    _fitted_attributes = ("components_", "noise_variance_", "mean_", "n_iter_", "loglike_",
                          "n_features_in_", "backend_")
    verbose = 0
    _parameter_constraints = {
        "n_components": [None, Interval(numbers.Integral, 0, None)],
        "tol": [Interval(numbers.Real, 0.0, None)],
        "copy": ["boolean"],
        "max_iter": [Interval(numbers.Integral, 1, None)],
        "noise_variance_init": ["array-like", None],
        "svd_method": [Options("randomized", "lapack")],
        "iterated_power": [Interval(numbers.Integral, 0, None)],
        "rotation": [None, Options("varimax", "quartimax")],
        "random_state": ["random_state"],
        "backend": [None, Options(*BACKENDS)],
        "n_threads": [None, Interval(numbers.Integral, 1, None)],
    }

    def __init__(self, n_components: Optional[int] = None, *, tol: float = 1e-2,
                 copy: bool = True, max_iter: int = 1000, noise_variance_init: Any = None,
                 svd_method: str = "randomized", iterated_power: int = 3,
                 rotation: Optional[str] = None, random_state: Any = 0,
                 backend: Optional[str] = None, n_threads: Optional[int] = None) -> None:
        self.n_components = n_components
        self.tol = tol
        self.copy = copy
        self.max_iter = max_iter
        self.noise_variance_init = noise_variance_init
        self.svd_method = svd_method
        self.iterated_power = iterated_power
        self.rotation = rotation
        self.random_state = random_state
        self.backend = backend
        self.n_threads = n_threads

    def __sklearn_is_fitted__(self):
        return hasattr(self, "components_")

    # ------------------------------------------------------------------ the EM engine
    def _em_initialize(self, data, random_state):
        d = data.shape[1]
        if self.noise_variance_init is None:
            self.noise_variance_ = np.ones(d)
        else:
            init = np.asarray(self.noise_variance_init, dtype=np.float64)
            if init.shape != (d,):
                raise ValueError(f"noise_variance_init has shape {init.shape}, expected "
                                 f"({d},): one variance per feature.")
            if not np.all(np.isfinite(init)) or np.any(init <= 0):
                raise ValueError("noise_variance_init must hold finite, positive variances.")
            self.noise_variance_ = init.copy()
        self.components_ = np.zeros((self._q, d))
        self._last_loglike = -np.inf

    def _em_iterate(self, data):
        if isinstance(data, MissingRows):  # EM on the rows: one pass, the regression step
            loglike, mean, loadings, noise = data.step(self.mean_, self.components_,
                                                       self.noise_variance_, "component",
                                                       _SMALL)
            converged = loglike - self._last_loglike < self.tol
            self._last_loglike = loglike
            if not converged:
                self.mean_, self.components_, self.noise_variance_ = mean, loadings, noise
            return Iteration(loglike, converged=bool(converged))
        q, d = self._q, data.shape[1]
        psi = self.noise_variance_
        scale = np.sqrt(psi) + _SMALL
        values, vectors = np.linalg.eigh(data.cov / np.outer(scale, scale))
        values, vectors = values[::-1], vectors[:, ::-1]  # largest first
        top = values[:q]
        self.components_ = (np.sqrt(np.maximum(top - 1.0, 0.0))[:, None] * vectors[:, :q].T
                            * scale)
        with np.errstate(divide="ignore"):
            loglike = -0.5 * data.n * (d * np.log(2 * np.pi) + q + np.sum(np.log(top))
                                       + np.sum(values[q:]) + np.sum(np.log(psi)))
        loglike = float(loglike)
        converged = loglike - self._last_loglike < self.tol
        self._last_loglike = loglike
        if not converged:
            self.noise_variance_ = np.maximum(data.var - np.sum(self.components_ ** 2, axis=0),
                                              _SMALL)
        return Iteration(loglike, converged=bool(converged))

    def _get_parameters(self):
        return self.components_.copy(), self.noise_variance_.copy()

    def _set_parameters(self, params):
        self.components_, self.noise_variance_ = (np.array(p) for p in params)

    # ------------------------------------------------------------------ public API
    def fit(self, X: Any, y: None = None, *, callback: Any = None) -> Self:
        """Fit the factor model to X (an array, a memory map, ``Chunks`` or a Dask array):
        two passes for the moments, then the iterations on them; returns self.
        ``callback`` as for the mixtures (after every iteration)."""
        self._validate_params()
        with limit_blas_threads():
            return self._fit_from(self._fit_moments(X), True, callback)

    def partial_fit(self, X: Any, y: None = None) -> Self:
        """Add the rows of X to the moments seen so far (exactly: the pairwise update of
        the mean and covariance) and iterate to the fit of all of them from the current
        noise variances; returns self.  The model is then ``fit`` of all the rows seen,
        to within ``tol``."""
        self._validate_params()
        with limit_blas_threads():
            moments, first = self._moments_so_far(X)
            return self._fit_from(moments, first, None)

    def _fit_from(self, moments, initialize, callback):
        """The iterations on ``moments``, from unit noise (``initialize``) or from the
        current noise variances."""
        d = moments.shape[1]
        self._q = d if self.n_components is None else int(self.n_components)
        if self._q > d:
            raise ValueError(f"n_components={self._q} must be at most the number of "
                             f"features, {d}.")
        if isinstance(moments, MissingRows):
            # start from the fit to the moments of the rows with each missing entry at
            # its feature's mean, then EM on the rows with the missing ones marginalised
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                self._run_em(moments.imputed, n_init=1, initialize=True, random_state=None)
            self.mean_, initialize = moments.imputed.mean.copy(), False
        if not initialize:
            self._last_loglike = -np.inf
        best, _ = self._run_em(moments, n_init=1, initialize=initialize, random_state=None,
                               callback=callback)
        missing = isinstance(moments, MissingRows)
        self._seen = None if missing else moments
        self.n_samples_seen_ = int(moments.shape[0])
        if not missing:
            self.mean_ = moments.mean
        self.n_iter_ = best.n_iter
        self.loglike_ = [float(v) for v in best.bounds]
        if not best.converged:
            from .exceptions import ConvergenceWarning

            warnings.warn("FactorAnalysis did not converge. You might want to increase the "
                          "number of iterations.", ConvergenceWarning, stacklevel=3)
        if self.rotation is not None:
            self.components_ = _ortho_rotation(self.components_.T, self.rotation).T
        self.backend_ = self._runtime[0]
        return self

    def get_feature_names_out(self, input_features: Any = None) -> Any:
        """["factoranalysis0", ...]: one name per factor, as scikit-learn's."""
        self._check_is_fitted()
        return np.array([f"factoranalysis{i}" for i in range(self.components_.shape[0])],
                        dtype=object)

    def _loadings(self):
        return self.components_

    def _noise(self):
        return self.noise_variance_
