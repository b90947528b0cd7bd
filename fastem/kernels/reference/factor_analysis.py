"""Factor-analysis kernels, the specification: the moments pass and the mixture of
factor analyzers' E-step.

``weighted_moments``: a factor model's likelihood depends on its rows only through
their weighted count, mean and covariance (``fastem/factor_analysis.py``), which this
kernel gives a chunk at a time (with one column of weights: a single set).  It is the
hidden Markov models' M-step kernel (``hmm.weighted_moments``: one implementation per
backend, listed in both families so that each family's contract tests and warm-up run
it).

The mixture (``fastem/mfa.py``): component k is x = W_k^T z + mu_k + e, z ~ N(0, I_q),
e ~ N(0, Psi_k), Psi_k diagonal, so x ~ N(mu_k, C_k), C_k = W_k^T W_k + Psi_k, with
prior weight pi_k.  A row with missing (NaN) entries is its observed coordinates o:
x_o ~ N(mu_o, C_oo), C_oo = W_o^T W_o + Psi_o (W_o: the columns o of W_k), the other
coordinates marginalised exactly.  Given the row and component k, the factors are
Gaussian (conditioning the joint normal of z and x_o):

    E[z | x, k]   = W_o C_oo^-1 (x_o - mu_o)
    Cov[z | x, k] = I - W_o C_oo^-1 W_o^T

Here, the specification, these are computed as written, with D_o x D_o solves; the
fast backends compute the same through the q x q matrix I + W_o Psi_o^-1 W_o^T
(Woodbury), O(D q) a row and component.

Parameters are float64: ``means`` (K, D), ``loadings`` (K, q, D) (W_k), ``inv_noise``
(K, D) (the precisions 1 / Psi_k; shared noise is K equal rows) and ``log_weights``
(K,) (log pi_k, -inf for an empty component).

The statistics (for the M-step of ``fastem/mfa.py``), with r_ik = w_i P(k | x_i) the
weighted responsibilities, y = x - mu_k (0 where x is missing) and z~ = (E[z | x, k],
1) the factors extended by a constant:

    nk[k]                   = sum_i r_ik
    n_missing[k, d]         = sum_i r_ik [x_id missing]
    sum_zy[k, :, d]         = sum_i r_ik z~_i y_id           ((q + 1) x D)
    sum_yy[k, d]            = sum_i r_ik y_id^2
    sum_zz[k]               = sum_i r_ik E[z~ z~^T | x_i, k]  ((q + 1) x (q + 1))
    sum_zz_missing[k, d]    = the same sum over the rows missing d only
    E[z~ z~^T] = [[Cov + E[z] E[z]^T, E[z]], [E[z]^T, 1]]

and the return value is sum_i w_i log p(x_i).
"""

import numpy as np

from .hmm import weighted_moments  # noqa: F401

_LOG_2PI = np.log(2 * np.pi)


def _patterns(X):
    """(observed mask (D,), the rows with it) for every missing-value pattern of X."""
    missing = np.isnan(X)
    patterns, inverse = np.unique(missing, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    for p, pattern in enumerate(patterns):
        yield ~pattern, np.flatnonzero(inverse == p)


def _posterior(X, means, loadings, inv_noise, log_weights):
    """For every row and component: log pi_k + log N(x_o | mu_o, C_oo) (N, K), E[z | x, k]
    (N, K, q) and Cov[z | x, k] (N, K, q, q), by Gaussian conditioning."""
    n = X.shape[0]
    k, q, _ = loadings.shape
    log_prob = np.empty((n, k))
    z = np.zeros((n, k, q))
    cov = np.empty((n, k, q, q))
    for observed, rows in _patterns(X):
        if not observed.any():  # nothing seen: the prior
            log_prob[rows] = log_weights
            cov[rows] = np.eye(q)
            continue
        x = np.asarray(X[np.ix_(rows, observed)], dtype=np.float64)
        for c in range(k):
            w = loadings[c][:, observed]  # (q, D_o)
            c_oo = w.T @ w + np.diag(1.0 / inv_noise[c][observed])
            y = x - means[c][observed]
            chol = np.linalg.cholesky(c_oo)
            solved = np.linalg.solve(c_oo, y.T).T  # C_oo^-1 y, a row each
            log_det = 2.0 * np.sum(np.log(np.diag(chol)))
            quad = np.einsum("ij,ij->i", y, solved)
            log_prob[rows, c] = log_weights[c] - 0.5 * (observed.sum() * _LOG_2PI + log_det
                                                        + quad)
            z[rows, c] = solved @ w.T
            cov[rows, c] = np.eye(q) - w @ np.linalg.solve(c_oo, w.T)
    return log_prob, z, cov


def _log_norm(log_prob):
    top = log_prob.max(axis=1)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(log_prob - safe[:, None]).sum(axis=1)) + safe


def factor_log_prob(X, means, loadings, inv_noise, log_weights, out, n_threads):
    """``out`` (N, K) = log pi_k + log N(x_o | mu_o, C_oo): each row's log joint density
    with each component, its missing coordinates marginalised.  ``n_threads`` is
    accepted for signature parity and ignored."""
    out[:] = _posterior(X, means, loadings, inv_noise, log_weights)[0]


def factor_stats(X, sample_weight, means, loadings, inv_noise, log_weights, nk, n_missing,
                 sum_zy, sum_yy, sum_zz, sum_zz_missing, n_threads):
    """The E-step statistics of the module docstring, written into the output arrays;
    returns sum_i w_i log p(x_i).  ``n_threads`` is accepted for signature parity and
    ignored."""
    n, d = X.shape
    k, q, _ = loadings.shape
    log_prob, z, cov = _posterior(X, means, loadings, inv_noise, log_weights)
    norm = _log_norm(log_prob)
    w = np.asarray(sample_weight, dtype=np.float64)
    kept = w > 0
    resp = np.zeros((n, k))
    resp[kept] = w[kept, None] * np.exp(log_prob[kept] - norm[kept, None])
    missing = np.isnan(X)
    z_ext = np.concatenate([z, np.ones((n, k, 1))], axis=2)  # z~ = (E[z], 1)
    zz = np.einsum("nki,nkj->nkij", z_ext, z_ext)
    zz[:, :, :q, :q] += cov
    nk[:] = resp.sum(axis=0)
    n_missing[:] = resp.T @ missing
    for c in range(k):
        y = np.where(missing, 0.0, np.asarray(X, dtype=np.float64) - means[c])
        sum_zy[c] = (resp[:, c, None] * z_ext[:, c]).T @ y
        sum_yy[c] = resp[:, c] @ (y * y)
        sum_zz[c] = np.einsum("n,nij->ij", resp[:, c], zz[:, c])
        sum_zz_missing[c] = np.einsum("n,nd,nij->dij", resp[:, c], missing, zz[:, c])
    return float(np.dot(w[kept], norm[kept]))
