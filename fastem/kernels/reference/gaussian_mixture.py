"""Gaussian mixture kernels, numpy reference implementation (the specification).

Notation: ``X`` (n_samples, n_features) float32/float64 C-contiguous; ``means``
(n_components, n_features) of X's dtype; ``prec_chol`` the Cholesky factor of each
precision matrix, shaped as scikit-learn's ``precisions_cholesky_``:

=========== ================================ ===================================
cov type    prec_chol                         squared Mahalanobis distance
=========== ================================ ===================================
full        (K, D, D), upper-tri U_k          ||(x - mu_k) U_k||^2
tied        (D, D), shared U                  ||(x - mu_k) U||^2
diag        (K, D), per-feature 1/sigma       sum_j ((x_j - mu_kj) p_kj)^2
spherical   (K,), 1/sigma_k                   p_k^2 ||x - mu_k||^2
=========== ================================ ===================================

``log_consts`` (K,) float64 is ``log pi_k + log det U_k - D/2 log(2 pi)``, so the
log joint density is ``log p(x, z=k) = log_consts[k] - maha_k(x) / 2``.

Kernels, for each ``<cov>`` in full, tied, diag, spherical:

``estimate_log_prob_<cov>(X, means, prec_chol, log_consts, out, n_threads)``
    out (N, K) float64, written: the log joint densities.
``estimate_log_norm_<cov>(X, means, prec_chol, log_consts, log_norm, labels, n_threads)``
    log_norm (N,) float64, written: ``log p(x) = logsumexp_k log p(x, z=k)``;
    labels (N,) int32, written: the most probable component (lowest index on ties).
``accumulate_stats_<cov>(X, sample_weight, means, prec_chol, log_consts, shift,
                         nk, sum_x, sum_xx, n_threads) -> float``
    The fused E-step + M-step statistics.  With responsibilities
    ``r_ik = exp(log p(x_i, z=k) - log p(x_i))`` and ``y_ik = x_i - shift_k``
    (``shift`` (K, D) of X's dtype, normally the current means, so the second
    moments are small numbers and variances cannot go negative by cancellation):
    nk (K,) = sum_i w_i r_ik; sum_x (K, D) = sum_i w_i r_ik y_ik; sum_xx:
    full (K, D, D) sum_i w_i r_ik y_ik y_ik^T; tied (D, D) the same summed over k;
    diag (K, D) sum_i w_i r_ik y_ik^2; spherical (K,) sum_i w_i r_ik ||y_ik||^2.
    All float64, overwritten. Returns ``sum_i w_i log p(x_i)`` (float64; -inf if a
    sample of positive weight has zero density).

logsumexp subtracts the row maximum; an all ``-inf`` row gives ``-inf`` (never
NaN) and contributes no responsibility.  ``n_threads`` is ignored here.
"""

import numpy as np

from .._covariance import COVARIANCE_TYPES, export_kernels


def _maha(X, means, prec_chol, cov):
    """(N, K) float64 squared Mahalanobis distances, computed directly."""
    X64 = X.astype(np.float64)
    mu = means.astype(np.float64)
    pc = np.asarray(prec_chol, dtype=np.float64)
    out = np.empty((X.shape[0], means.shape[0]))
    for k in range(means.shape[0]):
        diff = X64 - mu[k]
        if cov == "full":
            y = diff @ pc[k]
        elif cov == "tied":
            y = diff @ pc
        else:  # diag: per-feature scale; spherical: one scalar scale
            y = diff * pc[k]
        out[:, k] = np.einsum("ij,ij->i", y, y)
    return out


def _log_prob(X, means, prec_chol, log_consts, cov):
    return log_consts[None, :] - 0.5 * _maha(X, means, prec_chol, cov)


def logsumexp_rows(a):
    """Row-wise log-sum-exp; an all -inf row gives -inf, not NaN."""
    top = a.max(axis=1)
    safe_top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(a - safe_top[:, None]).sum(axis=1)) + safe_top


def _estimate_log_prob(X, means, prec_chol, log_consts, out, cov):
    out[:] = _log_prob(X, means, prec_chol, log_consts, cov)


def _estimate_log_norm(X, means, prec_chol, log_consts, log_norm, labels, cov):
    lp = _log_prob(X, means, prec_chol, log_consts, cov)
    log_norm[:] = logsumexp_rows(lp)
    labels[:] = np.argmax(lp, axis=1)


def _accumulate_stats(X, sample_weight, means, prec_chol, log_consts, shift, nk, sum_x, sum_xx,
                      cov):
    lp = _log_prob(X, means, prec_chol, log_consts, cov)
    norm = logsumexp_rows(lp)
    finite = np.isfinite(norm)
    resp = np.zeros_like(lp)
    resp[finite] = np.exp(lp[finite] - norm[finite, None])
    wr = resp * sample_weight[:, None]  # (N, K)
    X64 = X.astype(np.float64)
    nk[:] = wr.sum(axis=0)
    if cov == "tied":
        sum_xx[:] = 0.0
    for k in range(means.shape[0]):
        y = X64 - shift[k].astype(np.float64)
        sum_x[k] = wr[:, k] @ y
        if cov == "full":
            sum_xx[k] = (y * wr[:, k, None]).T @ y
        elif cov == "tied":
            sum_xx += (y * wr[:, k, None]).T @ y
        elif cov == "diag":
            sum_xx[k] = wr[:, k] @ (y * y)
        else:
            sum_xx[k] = wr[:, k] @ np.einsum("ij,ij->i", y, y)
    ll = sample_weight[finite] @ norm[finite]
    # a sample of zero weight is not part of the data: its density does not matter
    return float(ll) if finite[sample_weight > 0].all() else float("-inf")


export_kernels(
    globals(),
    lambda kind, X, means, pc, lc, out, n_threads: _estimate_log_prob(
        X, means, pc, lc, out, COVARIANCE_TYPES[kind]),
    lambda kind, X, means, pc, lc, log_norm, labels, n_threads: _estimate_log_norm(
        X, means, pc, lc, log_norm, labels, COVARIANCE_TYPES[kind]),
    lambda kind, X, w, means, pc, lc, shift, nk, sum_x, sum_xx, n_threads: _accumulate_stats(
        X, w, means, pc, lc, shift, nk, sum_x, sum_xx, COVARIANCE_TYPES[kind]),
    canonical_shapes=False,
)
