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


class Moments:
    """What a factor analysis fit needs of its data: n, the mean and the biased
    covariance (float64), from two passes over the rows."""

    def __init__(self, rows, kern):
        d = rows.n_features
        n, total = 0.0, np.zeros(d)
        for nk, sum_y, _ in rows.map(_moments_chunk, kern, np.zeros(d), False):
            n, total = n + nk, total + sum_y
        self.n, self.mean = n, total / n
        scatter, shift = np.zeros((d, d)), np.zeros(d)
        for _, sum_y, sum_yy in rows.map(_moments_chunk, kern, self.mean, True):
            scatter += sum_yy
            shift += sum_y
        shift /= n  # the rounding left in the first pass's mean (about 1e-16 of it)
        self.cov = scatter / n - np.outer(shift, shift)
        self.var = np.diag(self.cov).copy()
        self.shape = (int(rows.n_rows), d)

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

    def _rows(self, X):
        self._check_is_fitted()
        X = self._validate_data(X, reset=False)
        return np.asarray(X, dtype=np.float64) - self.mean_

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
        """E[z | x] of every row: (I + W Psi^-1 W^T)^-1 W Psi^-1 (x - mean)."""
        centered = self._rows(X)
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
        """log N(x | mean, C) of every row."""
        centered = self._rows(X)
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
        return check_array(X, name=name, owner=owner, copy=False)

    def _fit_moments(self, X, reset=True, min_rows=2):
        """X (an array, a memory map, ``Chunks`` or a Dask array) checked and reduced to
        its ``Moments``, two passes of the moments kernel."""
        rows = self._validate_rows(X, None, reset=reset)
        self._runtime = self._resolve_runtime()
        if rows.n_rows < min_rows:
            raise ValueError(f"{type(self).__name__} needs at least 2 samples; got "
                             f"{rows.n_rows}.")
        return Moments(rows, self._kernels(self._runtime[0], "factor_analysis"))

    def _moments_so_far(self, X):
        """(the moments of every row seen, X's merged in, whether X is the first batch):
        ``partial_fit``'s data.  A model loaded from a file has no running moments."""
        first = not self.__sklearn_is_fitted__()
        if not first and getattr(self, "_seen", None) is None:
            raise ValueError(f"this {type(self).__name__} holds no running moments (it was "
                             "loaded from a file): partial_fit can only continue a model "
                             "fitted in this process; fit it again on all the data.")
        # (a later batch may be a single row: the moments seen have two already)
        moments = self._fit_moments(X, reset=first, min_rows=2 if first else 1)
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
        if not initialize:
            self._last_loglike = -np.inf
        best, _ = self._run_em(moments, n_init=1, initialize=initialize, random_state=None,
                               callback=callback)
        self._seen, self.n_samples_seen_ = moments, int(moments.shape[0])
        self.mean_, self.n_iter_ = moments.mean, best.n_iter
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
