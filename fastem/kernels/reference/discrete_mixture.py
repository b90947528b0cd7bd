"""Mixtures of discrete distributions, numpy reference implementation (the specification).

Bernoulli/binomial, multinomial and categorical mixtures all have log joint densities
that are linear in an encoding of the sample, plus a per-sample constant that does not
depend on the component (the estimators add that constant themselves):

    log p(x, z=k) = offset_k + sum_j x_j coef[j, k] + sum_j o_j obs_coef[j, k]

* Bernoulli with m trials: x the success counts, coef = log mu - log(1 - mu),
  obs_coef = m log(1 - mu); o_j = 1 if x_j is observed and 0 if it is missing (NaN),
  and a missing x_j counts as 0, so its terms drop out: it is marginalised exactly.
* multinomial: x the counts (dense or CSR), coef = log theta, no missing entries.
* categorical: x the one-hot encoding of the category codes (a CSR matrix whose data
  are all 1), coef = log theta of every (feature, category) row; a missing code has no
  entry, so its feature drops out.

Parameters and statistics use the (n_features, n_components) layout of ``coef``: row j
is contiguous, which is what both the GEMM and the sparse kernels want.

Kernels (``X`` float32/float64 C-contiguous; ``coef``, ``obs_coef`` (D, K) and
``offset`` (K,) float64 C-contiguous; ``missing`` a bool; outputs float64 written):

``estimate_log_prob_dense(X, coef, obs_coef, offset, missing, out, n_threads)``
    out (N, K): the log joint densities.  With ``missing`` False, X has no NaN and
    obs_coef is ignored (its terms are then constant per component: fold them into
    ``offset``).
``estimate_log_norm_dense(X, coef, obs_coef, offset, missing, log_norm, labels,
                          n_threads)``
    log_norm (N,): logsumexp_k; labels (N,) int32: the most probable component.
``accumulate_stats_dense(X, sample_weight, coef, obs_coef, offset, missing, nk, sum_x,
                         sum_obs, n_threads) -> float``
    With r_ik the responsibilities: nk (K,) = sum_i w_i r_ik; sum_x (D, K) =
    sum_i w_i r_ik x0_ij (missing entries as 0); sum_obs (D, K) = sum_i w_i r_ik o_ij
    (= nk in every row when nothing is missing).  Returns sum_i w_i log p(x_i) (without
    the per-sample constants; -inf if a sample of positive weight has zero density).
``estimate_log_prob_csr(data, indices, indptr, coef, offset, out, n_threads)``,
``estimate_log_norm_csr(data, indices, indptr, coef, offset, log_norm, labels, n_threads)``,
``accumulate_stats_csr(data, indices, indptr, sample_weight, coef, offset, nk, sum_x,
                       n_threads) -> float``
    The same for a CSR matrix (data float32/float64, indices and indptr int32 or
    int64, column indices < D, no missing entries).
"""

import numpy as np

from .gaussian_mixture import logsumexp_rows


def _log_prob_dense(X, coef, obs_coef, offset, missing):
    X64 = X.astype(np.float64)
    if not missing:
        return X64 @ coef + offset
    observed = ~np.isnan(X64)
    return np.where(observed, X64, 0.0) @ coef + observed @ obs_coef + offset


def _log_prob_csr(data, indices, indptr, coef, offset):
    from scipy.sparse import csr_matrix

    n_samples = indptr.shape[0] - 1
    A = csr_matrix((data.astype(np.float64), indices, indptr), shape=(n_samples, coef.shape[0]))
    return np.asarray(A @ coef) + offset


def _resp_and_ll(lp, sample_weight):
    """(w_i r_ik, sum_i w_i log p(x_i)) from log joint densities."""
    norm = logsumexp_rows(lp)
    finite = np.isfinite(norm)
    resp = np.zeros_like(lp)
    resp[finite] = np.exp(lp[finite] - norm[finite, None])
    ll = float(sample_weight[finite] @ norm[finite])
    # a sample of zero weight is not part of the data: its density does not matter
    if not finite[sample_weight > 0].all():
        ll = float("-inf")
    return resp * sample_weight[:, None], ll


def _write_log_norm(lp, log_norm, labels):
    log_norm[:] = logsumexp_rows(lp)
    labels[:] = np.argmax(lp, axis=1)


def estimate_log_prob_dense(X, coef, obs_coef, offset, missing, out, n_threads):
    out[:] = _log_prob_dense(X, coef, obs_coef, offset, missing)


def estimate_log_norm_dense(X, coef, obs_coef, offset, missing, log_norm, labels, n_threads):
    _write_log_norm(_log_prob_dense(X, coef, obs_coef, offset, missing), log_norm, labels)


def accumulate_stats_dense(X, sample_weight, coef, obs_coef, offset, missing, nk, sum_x,
                           sum_obs, n_threads):
    wr, ll = _resp_and_ll(_log_prob_dense(X, coef, obs_coef, offset, missing), sample_weight)
    X64 = X.astype(np.float64)
    observed = ~np.isnan(X64)
    nk[:] = wr.sum(axis=0)
    sum_x[:] = np.where(observed, X64, 0.0).T @ wr
    sum_obs[:] = observed.T.astype(np.float64) @ wr
    return ll


def estimate_log_prob_csr(data, indices, indptr, coef, offset, out, n_threads):
    out[:] = _log_prob_csr(data, indices, indptr, coef, offset)


def estimate_log_norm_csr(data, indices, indptr, coef, offset, log_norm, labels, n_threads):
    _write_log_norm(_log_prob_csr(data, indices, indptr, coef, offset), log_norm, labels)


def accumulate_stats_csr(data, indices, indptr, sample_weight, coef, offset, nk, sum_x,
                         n_threads):
    from scipy.sparse import csr_matrix

    wr, ll = _resp_and_ll(_log_prob_csr(data, indices, indptr, coef, offset), sample_weight)
    n_samples = indptr.shape[0] - 1
    A = csr_matrix((data.astype(np.float64), indices, indptr), shape=(n_samples, coef.shape[0]))
    nk[:] = wr.sum(axis=0)
    sum_x[:] = np.asarray(A.T @ wr)
    return ll
