"""Probabilistic PCA (Tipping and Bishop 1999): ``PPCA``.

The factor model with isotropic noise, x = W^T z + mean + e, e ~ N(0, sigma^2 I).  Its
maximum-likelihood fit is in closed form from the data's moments: with lambda_1 >= ...
>= lambda_D the eigenvalues of the (biased) covariance S and u_j its eigenvectors,

    sigma^2 = mean of lambda_{q+1..D}       (the variance the q axes leave)
    W       = diag(sqrt(lambda_j - sigma^2)) u_j^T  for the top q   (up to a rotation)

and the log-likelihood there is -n/2 (D log 2 pi + sum_{j<=q} log lambda_j + (D - q)
log sigma^2 + D).  So a fit is the two moments passes of ``FactorAnalysis`` (in
memory, memory-mapped, ``Chunks`` or Dask, bit for bit) and one D x D
eigendecomposition.  scikit-learn's ``PCA`` describes the same model with the
covariance normalised by N - 1 instead of N (its ``score`` is this model's with
``explained_variance_`` and ``noise_variance_`` scaled by N / (N - 1)).
"""

from __future__ import annotations

import numbers
import warnings
from typing import TYPE_CHECKING

import numpy as np

from ._config import BACKENDS
from ._threads import limit_blas_threads
from ._validation import Interval, Options
from .base import FastEMEstimator
from .factor_analysis import LinearGaussian, MissingRows

#: PPCA's EM on data with missing entries stops when the log-likelihood gains less than
#: this per row, or after this many iterations.
_MISSING_TOL = 1e-9
_MISSING_MAX_ITER = 10_000

if TYPE_CHECKING:
    from typing import Any, Optional

    from typing_extensions import Self


class PPCA(LinearGaussian, FastEMEstimator):
    """Probabilistic principal component analysis, the exact maximum-likelihood fit.

    Parameters
    ----------
    n_components : int or None, default=None
        Number of principal axes q (None: the number of features minus one, so that
        some variance is left to the noise).
    backend : {"auto", "numba", "cython", "numpy"} or None, default=None
    n_threads : int or None, default=None
        Threads for the moments passes; the result is the same for any count.

    Notes
    -----
    NaN entries are missing values, marginalised exactly: the fit is then Tipping and
    Bishop's EM over each row's observed coordinates, from the closed form on the rows
    with each missing entry at its feature's mean (see ``_fit_missing``).

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The principal axes (orthonormal rows), largest variance first, each with its
        largest-magnitude entry positive.
    explained_variance_ : ndarray of shape (n_components,)
        The variance along each axis (the top eigenvalues of the covariance, over N).
    explained_variance_ratio_ : ndarray of shape (n_components,)
    noise_variance_ : float
        sigma^2, the mean variance of the other directions.
    mean_ : ndarray of shape (n_features,)
    loglike_ : float
        The log-likelihood of the training rows at the fit.
    n_samples_ : int
    n_features_in_, feature_names_in_
    """

    _estimator_type = "transformer"
    _fitted_attributes = ("components_", "explained_variance_", "explained_variance_ratio_",
                          "noise_variance_", "mean_", "loglike_", "n_samples_",
                          "n_features_in_", "backend_")
    _parameter_constraints = {
        "n_components": [None, Interval(numbers.Integral, 1, None)],
        "backend": [None, Options(*BACKENDS)],
        "n_threads": [None, Interval(numbers.Integral, 1, None)],
    }

    def __init__(self, n_components: Optional[int] = None, *, backend: Optional[str] = None,
                 n_threads: Optional[int] = None) -> None:
        self.n_components = n_components
        self.backend = backend
        self.n_threads = n_threads

    def __sklearn_is_fitted__(self):
        return hasattr(self, "components_")

    def fit(self, X: Any, y: None = None) -> Self:
        """Fit the axes and the noise to X (an array, a memory map, ``Chunks`` or a Dask
        array) from its moments; returns self."""
        self._validate_params()
        with limit_blas_threads():
            return self._fit_from(self._fit_moments(X))

    def partial_fit(self, X: Any, y: None = None) -> Self:
        """Add the rows of X to the moments seen so far (exactly, by the pairwise update)
        and refit in closed form: the model is then ``fit`` of all the rows seen."""
        self._validate_params()
        with limit_blas_threads():
            return self._fit_from(self._moments_so_far(X)[0])

    def _fit_from(self, moments):
        if isinstance(moments, MissingRows):
            return self._fit_missing(moments)
        n, d = moments.shape
        q = d - 1 if self.n_components is None else int(self.n_components)
        if not 1 <= q < d:
            raise ValueError(f"n_components={q} must be between 1 and the number of features "
                             f"minus one ({d - 1}): PPCA leaves some variance to its noise.")
        values, vectors = np.linalg.eigh(moments.cov)
        values, vectors = np.maximum(values[::-1], 0.0), vectors[:, ::-1]  # largest first
        axes = vectors[:, :q].T
        # a fixed sign: each axis's largest-magnitude entry positive
        axes *= np.sign(axes[np.arange(q), np.argmax(np.abs(axes), axis=1)])[:, None]
        sigma2 = float(np.mean(values[q:]))
        if not sigma2 > 1e-12 * values[0]:  # (rounding leaves ~1e-16 of the top variance)
            raise ValueError("the data lie in a subspace of q dimensions or fewer: PPCA's noise "
                             "variance would be 0; use fewer components.")
        self.components_, self.explained_variance_ = axes, values[:q].copy()
        self.explained_variance_ratio_ = self.explained_variance_ / np.sum(values)
        self.noise_variance_, self.mean_ = sigma2, moments.mean
        self.n_samples_, self._seen = int(n), moments
        self.loglike_ = float(-0.5 * moments.n * (
            d * np.log(2 * np.pi) + np.sum(np.log(values[:q])) + (d - q) * np.log(sigma2) + d))
        self.backend_ = self._runtime[0]
        return self

    def _fit_missing(self, data):
        """EM on rows with missing entries (Tipping and Bishop's, over the observed
        coordinates), from the closed-form fit to the moments of the rows with each
        missing entry at its feature's mean, until the log-likelihood gains less than
        ``_MISSING_TOL`` per row; the axes and variances are then those of the fitted
        loadings W = U S V^T: the rows of V^T and S^2 + sigma^2."""
        self._fit_from(data.imputed)
        n, d = data.shape
        mean, loadings = self.mean_, self._loadings()
        noise = np.full(d, self.noise_variance_)
        last = -np.inf
        for _ in range(_MISSING_MAX_ITER):
            loglike, new_mean, new_loadings, new_noise = data.step(
                mean, loadings, noise, "isotropic", 1e-12 * float(np.max(noise)))
            if loglike - last < _MISSING_TOL * n:
                break
            last, mean, loadings, noise = loglike, new_mean, new_loadings, new_noise
        else:
            from .exceptions import ConvergenceWarning

            warnings.warn(f"PPCA's EM on data with missing entries did not converge in "
                          f"{_MISSING_MAX_ITER} iterations.", ConvergenceWarning, stacklevel=4)
        _, s, vt = np.linalg.svd(loadings, full_matrices=False)
        vt *= np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])[:, None]
        sigma2 = float(noise[0])
        self.components_, self.explained_variance_ = vt, s ** 2 + sigma2
        self.explained_variance_ratio_ = self.explained_variance_ / (np.sum(s ** 2) + d * sigma2)
        self.noise_variance_, self.mean_ = sigma2, mean
        self.n_samples_, self._seen = int(n), None
        self.loglike_ = float(loglike)
        return self

    def _loadings(self):
        """W = diag(sqrt(lambda - sigma^2)) U^T: the loadings of the axes."""
        return (np.sqrt(np.maximum(self.explained_variance_ - self.noise_variance_, 0.0))[:, None]
                * self.components_)

    def _noise(self):
        return np.full(self.components_.shape[1], self.noise_variance_)

    def get_feature_names_out(self, input_features: Any = None) -> Any:
        """["ppca0", ...]: one name per axis."""
        self._check_is_fitted()
        return np.array([f"ppca{i}" for i in range(self.components_.shape[0])], dtype=object)
