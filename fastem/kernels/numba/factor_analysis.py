"""Factor-analysis kernels in numba: the moments pass (the hidden Markov models'
``weighted_moments``) and the mixture of factor analyzers' E-step (see
``reference/factor_analysis.py`` for the model and the statistics).

The E-step goes through the q x q matrix M = I + W_o Psi_o^-1 W_o^T (the Woodbury
identity and the determinant lemma), never a D x D one.  With L L^T = M and, for a row
y = x_o - mu_o, b = W_o Psi_o^-1 y and c = L^-1 b:

    (x_o - mu_o)^T C_oo^-1 (x_o - mu_o) = y^T Psi_o^-1 y - |c|^2
    log det C_oo = log det M + sum_o log Psi
    E[z | x] = M^-1 b = L^-T c,   Cov[z | x] = M^-1 = L^-T L^-1

so a row and component cost O(D q).  Each component's M, L^-1, M^-1 and constant are
computed once a call (``_components``); a row with missing entries gets its own M,
from the component's by removing its missing coordinates' terms (or built from its
observed ones, whichever are fewer), and its own Cholesky factor, O(q^2) a missing
entry and O(q^3) a row.  Rows are taken over fixed blocks and slots (``_slots.py``) and
the slots added in order: bit-identical for any thread count.
"""

import numpy as np
from numba import prange

from ._jit import helper, kernel
from ._logspace import _exp_or_zero
from ._slots import BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES, _n_slots, _slot_samples  # noqa: F401
from .hmm import _logsumexp_col, weighted_moments  # noqa: F401

_LOG_2PI = np.log(2 * np.pi)


@helper
def _cholesky_inverse(m, chol, out):
    """L^-1 of the Cholesky factor L of the symmetric positive definite ``m`` (q, q),
    into ``out`` (lower triangular; ``chol`` is work space); returns log det m."""
    q = m.shape[0]
    log_det = 0.0
    for i in range(q):
        for j in range(i + 1):
            s = m[i, j]
            for t in range(j):
                s -= chol[i, t] * chol[j, t]
            if i == j:
                s = np.sqrt(s)
                chol[i, i] = s
                log_det += 2.0 * np.log(s)
            else:
                chol[i, j] = s / chol[j, j]
    for j in range(q):  # forward substitution, a column of the identity at a time
        for i in range(q):
            out[i, j] = 0.0
        out[j, j] = 1.0 / chol[j, j]
        for i in range(j + 1, q):
            s = 0.0
            for t in range(j, i):
                s -= chol[i, t] * out[t, j]
            out[i, j] = s / chol[i, i]
    return log_det


@helper
def _gram(inv_chol, out):
    """out = L^-T L^-1 = M^-1 for L^-1 lower triangular."""
    q = inv_chol.shape[0]
    for i in range(q):
        for j in range(q):
            s = 0.0
            for t in range(max(i, j), q):
                s += inv_chol[t, i] * inv_chol[t, j]
            out[i, j] = s


@helper
def _components(loadings, inv_noise, log_weights):
    """Per component: M = I + W Psi^-1 W^T (K, q, q), L^-1, M^-1 and the constant
    log pi - (D log 2 pi + log det C) / 2 of a complete row."""
    k, q, d = loadings.shape
    inner = np.zeros((k, q, q))
    inv_chol = np.empty((k, q, q))
    post_cov = np.empty((k, q, q))
    log_consts = np.empty(k)
    chol = np.empty((q, q))
    for c in range(k):
        for i in range(q):
            for j in range(i + 1):
                s = 0.0
                for t in range(d):
                    s += loadings[c, i, t] * inv_noise[c, t] * loadings[c, j, t]
                inner[c, i, j] = s
                inner[c, j, i] = s
            inner[c, i, i] += 1.0
        log_det = _cholesky_inverse(inner[c], chol, inv_chol[c])
        _gram(inv_chol[c], post_cov[c])
        for t in range(d):
            log_det -= np.log(inv_noise[c, t])
        log_consts[c] = log_weights[c] - 0.5 * (d * _LOG_2PI + log_det)
    return inner, inv_chol, post_cov, log_consts


@helper
def _missing_entries(x, miss):
    """The missing (NaN) coordinates of row ``x`` into ``miss``; returns their number."""
    n_miss = 0
    for j in range(x.shape[0]):
        if np.isnan(x[j]):
            miss[n_miss] = j
            n_miss += 1
    return n_miss


@helper
def _row_log_prob(x, c, means, loadings, inv_noise, log_weights, inner, inv_chol, post_cov,
                  log_consts, miss, n_miss, y, z, cov, work, chol, inv_row):
    """log pi_c + log N(x_o | mu_o, C_oo) of row ``x`` and component ``c``; writes y = x -
    mu (0 where missing) into ``y``, E[z | x, c] into ``z`` and, for a row with missing
    entries, Cov[z | x, c] into ``cov`` (a complete row's is ``post_cov[c]``)."""
    q, d = loadings.shape[1], loadings.shape[2]
    a = 0.0
    for j in range(d):
        y[j] = np.float64(x[j]) - means[c, j]
    for t in range(n_miss):
        y[miss[t]] = 0.0
    for j in range(d):
        a += y[j] * y[j] * inv_noise[c, j]
    b = work[0]
    for i in range(q):
        s = 0.0
        for j in range(d):
            s += loadings[c, i, j] * (inv_noise[c, j] * y[j])
        b[i] = s
    if n_miss == 0:
        li = inv_chol[c]
        const = log_consts[c]
    else:  # this row's own M = I + W_o Psi_o^-1 W_o^T and its factor
        m = work[1:]
        if 2 * n_miss <= d:  # the component's M less the missing coordinates' terms
            for i in range(q):
                for r in range(q):
                    m[i, r] = inner[c, i, r]
            for t in range(n_miss):
                j = miss[t]
                for i in range(q):
                    v = loadings[c, i, j] * inv_noise[c, j]
                    for r in range(q):
                        m[i, r] -= v * loadings[c, r, j]
        else:  # the identity plus the observed coordinates' terms
            for i in range(q):
                for r in range(q):
                    m[i, r] = 0.0
                m[i, i] = 1.0
            t = 0
            for j in range(d):
                if t < n_miss and miss[t] == j:
                    t += 1
                    continue
                for i in range(q):
                    v = loadings[c, i, j] * inv_noise[c, j]
                    for r in range(q):
                        m[i, r] += v * loadings[c, r, j]
        log_det = _cholesky_inverse(m, chol, inv_row)
        t = 0
        for j in range(d):  # log det Psi_o
            if t < n_miss and miss[t] == j:
                t += 1
                continue
            log_det -= np.log(inv_noise[c, j])
        li = inv_row
        _gram(li, cov)
        const = log_weights[c] - 0.5 * ((d - n_miss) * _LOG_2PI + log_det)
    quad = a
    cvec = work[0, :]  # (reused below only after b is read)
    for i in range(q):  # c = L^-1 b (lower triangular): from the last entry up, in place
        r = q - 1 - i
        s = 0.0
        for t in range(r + 1):
            s += li[r, t] * b[t]
        cvec[r] = s
        quad -= s * s
    for i in range(q):  # E[z] = L^-T c
        s = 0.0
        for t in range(i, q):
            s += li[t, i] * cvec[t]
        z[i] = s
    return const - 0.5 * quad


@kernel
def factor_log_prob(X, means, loadings, inv_noise, log_weights, out, n_threads):
    """log pi_k + log N(x_o | mu_o, C_oo) of every row and component (see the
    reference), a block of rows a task."""
    n, d = X.shape
    k, q = loadings.shape[0], loadings.shape[1]
    inner, inv_chol, post_cov, log_consts = _components(loadings, inv_noise, log_weights)
    n_blocks = (n + BLOCK_SIZE - 1) // BLOCK_SIZE
    for block in prange(n_blocks):
        miss = np.empty(d, dtype=np.int64)
        y, z, cov = np.empty(d), np.empty(q), np.empty((q, q))
        work, chol, inv_row = np.empty((q + 1, q)), np.empty((q, q)), np.empty((q, q))
        for i in range(block * BLOCK_SIZE, min(n, (block + 1) * BLOCK_SIZE)):
            n_miss = _missing_entries(X[i], miss)
            for c in range(k):
                out[i, c] = _row_log_prob(X[i], c, means, loadings, inv_noise, log_weights,
                                          inner, inv_chol, post_cov, log_consts, miss, n_miss,
                                          y, z, cov, work, chol, inv_row)


@helper
def _add_moments(r, z, cov, e):
    """e = r E[z~ z~^T] for z~ = (E[z], 1) and Cov[z] = ``cov``."""
    q = z.shape[0]
    for i in range(q):
        for j in range(q):
            e[i, j] = r * (cov[i, j] + z[i] * z[j])
        e[i, q] = r * z[i]
        e[q, i] = r * z[i]
    e[q, q] = r


@kernel
def factor_stats(X, sample_weight, means, loadings, inv_noise, log_weights, nk, n_missing,
                 sum_zy, sum_yy, sum_zz, sum_zz_missing, n_threads):
    """The E-step statistics (see the reference) over fixed blocks and slots of rows,
    the slots added in order; returns sum_i w_i log p(x_i)."""
    n, d = X.shape
    k, q = loadings.shape[0], loadings.shape[1]
    p = q + 1
    inner, inv_chol, post_cov, log_consts = _components(loadings, inv_noise, log_weights)
    n_blocks = (n + BLOCK_SIZE - 1) // BLOCK_SIZE
    n_slots = _n_slots(n_blocks, 8 * k * (1 + d * (2 + p + p * p) + p * p))
    part_nk = np.zeros((n_slots, k))
    part_miss = np.zeros((n_slots, k, d))
    part_zy = np.zeros((n_slots, k, p, d))
    part_yy = np.zeros((n_slots, k, d))
    part_zz = np.zeros((n_slots, k, p, p))
    part_zzm = np.zeros((n_slots, k, d, p, p))
    part_ll = np.zeros(n_slots)
    for slot in prange(n_slots):
        start, stop = _slot_samples(slot, n_slots, n_blocks, n)
        miss = np.empty(d, dtype=np.int64)
        y, z, cov = np.empty((k, d)), np.empty((k, q)), np.empty((k, q, q))
        work, chol, inv_row = np.empty((q + 1, q)), np.empty((q, q)), np.empty((q, q))
        log_prob, e = np.empty(k), np.empty((p, p))
        for i in range(start, stop):
            w = sample_weight[i]
            if w == 0.0:
                continue
            n_miss = _missing_entries(X[i], miss)
            for c in range(k):
                log_prob[c] = _row_log_prob(X[i], c, means, loadings, inv_noise, log_weights,
                                            inner, inv_chol, post_cov, log_consts, miss,
                                            n_miss, y[c], z[c], cov[c], work, chol, inv_row)
            norm = _logsumexp_col(log_prob)
            part_ll[slot] += w * norm
            for c in range(k):
                r = w * _exp_or_zero(log_prob[c] - norm)
                if r == 0.0:
                    continue
                part_nk[slot, c] += r
                for t in range(q):
                    rz = r * z[c, t]
                    for j in range(d):
                        part_zy[slot, c, t, j] += rz * y[c, j]
                for j in range(d):
                    ry = r * y[c, j]
                    part_zy[slot, c, q, j] += ry
                    part_yy[slot, c, j] += ry * y[c, j]
                _add_moments(r, z[c], post_cov[c] if n_miss == 0 else cov[c], e)
                part_zz[slot, c] += e
                for t in range(n_miss):
                    part_miss[slot, c, miss[t]] += r
                    part_zzm[slot, c, miss[t]] += e
    nk[:] = 0.0
    n_missing[:, :] = 0.0
    sum_zy[:, :, :] = 0.0
    sum_yy[:, :] = 0.0
    sum_zz[:, :, :] = 0.0
    sum_zz_missing[:, :, :, :] = 0.0
    total = 0.0
    for slot in range(n_slots):  # slot order: bit-identical for any thread count
        nk += part_nk[slot]
        n_missing += part_miss[slot]
        sum_zy += part_zy[slot]
        sum_yy += part_yy[slot]
        sum_zz += part_zz[slot]
        sum_zz_missing += part_zzm[slot]
        total += part_ll[slot]
    return total
