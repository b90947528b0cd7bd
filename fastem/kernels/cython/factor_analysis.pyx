"""Factor-analysis kernels, Cython backend: the moments pass (the hidden Markov models'
``weighted_moments``) and the mixture of factor analyzers' E-step, step for step as
``numba/factor_analysis.py`` (its docstring gives the Woodbury algebra; the reference
gives the model and the statistics).

Compiler directives are set in ``setup.py``; bounds checking is off, so each kernel
checks its arguments' shapes once before entering ``nogil`` code.
"""

import numpy as np

from cython.parallel cimport prange
from libc.math cimport M_PI, isnan, log, sqrt
from libc.stdlib cimport free, malloc

from cython cimport floating

from fastem.kernels.cython._common cimport (
    _BLOCK, _MAX_SLOTS, _SLOT_BUDGET_BYTES, _alloc, _check_arg, _exp_or_zero,
    _logsumexp_row, _n_blocks, _n_slots, _slot_start, _slot_stop, _sum_slots, _team_size)

from fastem.kernels.cython.hmm import weighted_moments  # noqa: F401

BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES = _BLOCK, _MAX_SLOTS, _SLOT_BUDGET_BYTES

cdef double _LOG_2PI = log(2.0 * M_PI)


cdef double _cholesky_inverse(const double* m, Py_ssize_t q, double* chol,
                              double* out) noexcept nogil:
    """L^-1 (lower triangular, into ``out``) of the Cholesky factor L of the q x q
    symmetric positive definite ``m``; ``chol`` is work space; returns log det m."""
    cdef Py_ssize_t i, j, t
    cdef double s, log_det = 0.0
    for i in range(q):
        for j in range(i + 1):
            s = m[i * q + j]
            for t in range(j):
                s -= chol[i * q + t] * chol[j * q + t]
            if i == j:
                s = sqrt(s)
                chol[i * q + i] = s
                log_det += 2.0 * log(s)
            else:
                chol[i * q + j] = s / chol[j * q + j]
    for j in range(q):
        for i in range(q):
            out[i * q + j] = 0.0
        out[j * q + j] = 1.0 / chol[j * q + j]
        for i in range(j + 1, q):
            s = 0.0
            for t in range(j, i):
                s -= chol[i * q + t] * out[t * q + j]
            out[i * q + j] = s / chol[i * q + i]
    return log_det


cdef void _gram(const double* li, Py_ssize_t q, double* out) noexcept nogil:
    """out = L^-T L^-1 for L^-1 lower triangular."""
    cdef Py_ssize_t i, j, t
    cdef double s
    for i in range(q):
        for j in range(q):
            s = 0.0
            for t in range(i if i > j else j, q):
                s += li[t * q + i] * li[t * q + j]
            out[i * q + j] = s


cdef void _components(const double* loadings, const double* inv_noise,
                      const double* log_weights, Py_ssize_t k, Py_ssize_t q, Py_ssize_t d,
                      double* inner, double* inv_chol, double* post_cov,
                      double* log_consts, double* chol) noexcept nogil:
    """Per component: M = I + W Psi^-1 W^T, L^-1, M^-1 and a complete row's constant."""
    cdef Py_ssize_t c, i, j, t
    cdef double s, log_det
    cdef const double* w
    for c in range(k):
        w = loadings + c * q * d
        for i in range(q):
            for j in range(i + 1):
                s = 0.0
                for t in range(d):
                    s += w[i * d + t] * inv_noise[c * d + t] * w[j * d + t]
                inner[c * q * q + i * q + j] = s
                inner[c * q * q + j * q + i] = s
            inner[c * q * q + i * q + i] += 1.0
        log_det = _cholesky_inverse(inner + c * q * q, q, chol, inv_chol + c * q * q)
        _gram(inv_chol + c * q * q, q, post_cov + c * q * q)
        for t in range(d):
            log_det -= log(inv_noise[c * d + t])
        log_consts[c] = log_weights[c] - 0.5 * (d * _LOG_2PI + log_det)


cdef Py_ssize_t _missing_entries(const floating* x, Py_ssize_t d,
                                 Py_ssize_t* miss) noexcept nogil:
    cdef Py_ssize_t j, n_miss = 0
    for j in range(d):
        if isnan(x[j]):
            miss[n_miss] = j
            n_miss += 1
    return n_miss


cdef double _row_log_prob(const floating* x, Py_ssize_t c, Py_ssize_t q, Py_ssize_t d,
                          const double* means, const double* loadings,
                          const double* inv_noise, const double* log_weights,
                          const double* inner, const double* inv_chol,
                          const double* log_consts, const Py_ssize_t* miss,
                          Py_ssize_t n_miss, double* y, double* z, double* cov, double* work,
                          double* chol, double* inv_row) noexcept nogil:
    """numba's ``_row_log_prob``: log pi_c + log N(x_o | mu_o, C_oo); y, E[z | x, c] and
    (a row with missing entries) Cov[z | x, c] into ``y``, ``z``, ``cov``."""
    cdef const double* w = loadings + c * q * d
    cdef const double* ip = inv_noise + c * d
    cdef const double* li
    cdef double* b = work
    cdef double* m = work + q
    cdef double a = 0.0, s, v, quad, const, log_det
    cdef Py_ssize_t i, j, r, t
    for j in range(d):
        y[j] = <double>x[j] - means[c * d + j]
    for t in range(n_miss):
        y[miss[t]] = 0.0
    for j in range(d):
        a += y[j] * y[j] * ip[j]
    for i in range(q):
        s = 0.0
        for j in range(d):
            s += w[i * d + j] * (ip[j] * y[j])
        b[i] = s
    if n_miss == 0:
        li = inv_chol + c * q * q
        const = log_consts[c]
    else:
        if 2 * n_miss <= d:
            for i in range(q * q):
                m[i] = inner[c * q * q + i]
            for t in range(n_miss):
                j = miss[t]
                for i in range(q):
                    v = w[i * d + j] * ip[j]
                    for r in range(q):
                        m[i * q + r] -= v * w[r * d + j]
        else:
            for i in range(q * q):
                m[i] = 0.0
            for i in range(q):
                m[i * q + i] = 1.0
            t = 0
            for j in range(d):
                if t < n_miss and miss[t] == j:
                    t += 1
                    continue
                for i in range(q):
                    v = w[i * d + j] * ip[j]
                    for r in range(q):
                        m[i * q + r] += v * w[r * d + j]
        log_det = _cholesky_inverse(m, q, chol, inv_row)
        t = 0
        for j in range(d):
            if t < n_miss and miss[t] == j:
                t += 1
                continue
            log_det -= log(ip[j])
        li = inv_row
        _gram(li, q, cov)
        const = log_weights[c] - 0.5 * ((d - n_miss) * _LOG_2PI + log_det)
    quad = a
    for i in range(q):  # c = L^-1 b, from the last entry up, in place of b
        r = q - 1 - i
        s = 0.0
        for t in range(r + 1):
            s += li[r * q + t] * b[t]
        b[r] = s
        quad -= s * s
    for i in range(q):  # E[z] = L^-T c
        s = 0.0
        for t in range(i, q):
            s += li[t * q + i] * b[t]
        z[i] = s
    return const - 0.5 * quad


cdef class _Parts:
    """The per-component quantities of a call (what ``_components`` computes)."""
    cdef double[:, :, ::1] inner, inv_chol, post_cov
    cdef double[::1] log_consts

    def __init__(self, const double[:, :, ::1] loadings, const double[:, ::1] inv_noise,
                 const double[::1] log_weights):
        cdef Py_ssize_t k = loadings.shape[0], q = loadings.shape[1], d = loadings.shape[2]
        _check_arg("factor_analysis", inv_noise.shape[0] == k and inv_noise.shape[1] == d
                   and log_weights.shape[0] == k and q >= 1,
                   "loadings (K, q, D), inv_noise (K, D) and log_weights (K,) do not agree")
        self.inner = np.zeros((k, q, q))
        self.inv_chol = np.empty((k, q, q))
        self.post_cov = np.empty((k, q, q))
        self.log_consts = np.empty(k)
        cdef double[::1] chol = np.empty(q * q)
        _components(&loadings[0, 0, 0], &inv_noise[0, 0], &log_weights[0], k, q, d,
                    &self.inner[0, 0, 0], &self.inv_chol[0, 0, 0], &self.post_cov[0, 0, 0],
                    &self.log_consts[0], &chol[0])


cdef inline Py_ssize_t _work_size(Py_ssize_t k, Py_ssize_t q, Py_ssize_t d) noexcept nogil:
    # y, z, cov (K each), work (q + q^2), chol, inv_row, log_prob, e
    return k * (d + q + q * q) + q + 3 * q * q + k + (q + 1) * (q + 1)


def _factor_log_prob_typed(const floating[:, ::1] X, const double[:, ::1] means,
                           const double[:, :, ::1] loadings, const double[:, ::1] inv_noise,
                           const double[::1] log_weights, double[:, ::1] out, n_threads):
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = loadings.shape[0]
    cdef Py_ssize_t q = loadings.shape[1]
    _check_arg("factor_analysis", means.shape[0] == k and means.shape[1] == d
               and loadings.shape[2] == d and out.shape[0] == n and out.shape[1] == k,
               "factor_log_prob: X, means, loadings and out do not agree in shape")
    cdef _Parts parts = _Parts(loadings, inv_noise, log_weights)
    cdef Py_ssize_t n_blocks = _n_blocks(n), block, i, c, n_miss
    cdef int n_team = _team_size(n_threads, n_blocks)
    cdef Py_ssize_t n_failed = 0
    cdef double* buf
    cdef Py_ssize_t* miss
    if n == 0:
        return
    for block in prange(n_blocks, nogil=True, schedule='static', num_threads=n_team):
        buf = <double*>malloc(_work_size(1, q, d) * sizeof(double) + 8)
        miss = <Py_ssize_t*>malloc(d * sizeof(Py_ssize_t) + 8)
        if buf == NULL or miss == NULL:
            free(buf)
            free(miss)
            n_failed += 1
            continue
        for i in range(block * _BLOCK, min(n, (block + 1) * _BLOCK)):
            n_miss = _missing_entries(&X[i, 0], d, miss)
            for c in range(k):
                out[i, c] = _row_log_prob(
                    &X[i, 0], c, q, d, &means[0, 0], &loadings[0, 0, 0], &inv_noise[0, 0],
                    &log_weights[0], &parts.inner[0, 0, 0], &parts.inv_chol[0, 0, 0],
                    &parts.log_consts[0], miss, n_miss, buf, buf + d, buf + d + q,
                    buf + d + q + q * q, buf + d + 2 * q + 2 * q * q,
                    buf + d + 2 * q + 3 * q * q)
        free(buf)
        free(miss)
    if n_failed:
        raise MemoryError()


def factor_log_prob(X, means, loadings, inv_noise, log_weights, out, n_threads):
    """log pi_k + log N(x_o | mu_o, C_oo) of every row and component (see the
    reference), a block of rows a task."""
    _factor_log_prob_typed(X, means, loadings, inv_noise, log_weights, out, n_threads)


cdef void _stats_slot(const floating* X, const double* sample_weight, Py_ssize_t start,
                      Py_ssize_t stop, Py_ssize_t k, Py_ssize_t q, Py_ssize_t d,
                      const double* means, const double* loadings, const double* inv_noise,
                      const double* log_weights, const double* inner,
                      const double* inv_chol, const double* post_cov,
                      const double* log_consts, double* part, double* buf,
                      Py_ssize_t* miss) noexcept nogil:
    """One slot of ``factor_stats`` (numba's loop body).  ``part``: nk (K), n_missing
    (K, D), sum_zy (K, p, D), sum_yy (K, D), sum_zz (K, p, p), sum_zz_missing (K, D, p,
    p), the log-likelihood; p = q + 1."""
    cdef Py_ssize_t p = q + 1, i, c, j, t, n_miss, u
    cdef double* p_nk = part
    cdef double* p_miss = p_nk + k
    cdef double* p_zy = p_miss + k * d
    cdef double* p_yy = p_zy + k * p * d
    cdef double* p_zz = p_yy + k * d
    cdef double* p_zzm = p_zz + k * p * p
    cdef double* p_ll = p_zzm + k * d * p * p
    cdef double* y = buf
    cdef double* z = y + k * d
    cdef double* cov = z + k * q
    cdef double* work = cov + k * q * q
    cdef double* chol = work + q + q * q
    cdef double* inv_row = chol + q * q
    cdef double* log_prob = inv_row + q * q
    cdef double* e = log_prob + k
    cdef const double* g
    cdef double w, norm, r, rz, ry
    for i in range(start, stop):
        w = sample_weight[i]
        if w == 0.0:
            continue
        n_miss = _missing_entries(X + i * d, d, miss)
        for c in range(k):
            log_prob[c] = _row_log_prob(X + i * d, c, q, d, means, loadings, inv_noise,
                                        log_weights, inner, inv_chol, log_consts, miss,
                                        n_miss, y + c * d, z + c * q, cov + c * q * q, work,
                                        chol, inv_row)
        norm = _logsumexp_row(log_prob, k)
        p_ll[0] += w * norm
        for c in range(k):
            r = w * _exp_or_zero(log_prob[c] - norm)
            if r == 0.0:
                continue
            p_nk[c] += r
            for t in range(q):
                rz = r * z[c * q + t]
                for j in range(d):
                    p_zy[(c * p + t) * d + j] += rz * y[c * d + j]
            for j in range(d):
                ry = r * y[c * d + j]
                p_zy[(c * p + q) * d + j] += ry
                p_yy[c * d + j] += ry * y[c * d + j]
            g = post_cov + c * q * q if n_miss == 0 else cov + c * q * q
            for t in range(q):  # e = r E[z~ z~^T]
                for u in range(q):
                    e[t * p + u] = r * (g[t * q + u] + z[c * q + t] * z[c * q + u])
                e[t * p + q] = r * z[c * q + t]
                e[q * p + t] = r * z[c * q + t]
            e[q * p + q] = r
            for t in range(p * p):
                p_zz[c * p * p + t] += e[t]
            for u in range(n_miss):
                j = miss[u]
                p_miss[c * d + j] += r
                for t in range(p * p):
                    p_zzm[(c * d + j) * p * p + t] += e[t]


def _factor_stats_typed(const floating[:, ::1] X, const double[::1] sample_weight,
                        const double[:, ::1] means, const double[:, :, ::1] loadings,
                        const double[:, ::1] inv_noise, const double[::1] log_weights,
                        double[::1] nk, double[:, ::1] n_missing, double[:, :, ::1] sum_zy,
                        double[:, ::1] sum_yy, double[:, :, ::1] sum_zz,
                        double[:, :, :, ::1] sum_zz_missing, n_threads):
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = loadings.shape[0]
    cdef Py_ssize_t q = loadings.shape[1], p = q + 1
    _check_arg("factor_analysis", sample_weight.shape[0] == n and means.shape[0] == k
               and means.shape[1] == d and loadings.shape[2] == d and nk.shape[0] == k
               and n_missing.shape[0] == k and n_missing.shape[1] == d
               and sum_zy.shape[0] == k and sum_zy.shape[1] == p and sum_zy.shape[2] == d
               and sum_yy.shape[0] == k and sum_yy.shape[1] == d and sum_zz.shape[0] == k
               and sum_zz.shape[1] == p and sum_zz.shape[2] == p
               and sum_zz_missing.shape[0] == k and sum_zz_missing.shape[1] == d
               and sum_zz_missing.shape[2] == p and sum_zz_missing.shape[3] == p,
               "factor_stats: X, the parameters and the outputs do not agree in shape")
    cdef _Parts parts = _Parts(loadings, inv_noise, log_weights)
    cdef Py_ssize_t size = k * (1 + d * (2 + p + p * p) + p * p) + 1
    cdef Py_ssize_t n_blocks = _n_blocks(n)
    cdef Py_ssize_t n_slots = _n_slots(n_blocks, 8 * (size - 1)), slot, t
    cdef int n_team = _team_size(n_threads, n_slots)
    cdef double* part = <double*>_alloc(n_slots * size, sizeof(double), True)
    cdef double* out = <double*>_alloc(size, sizeof(double), False)
    cdef double* buf
    cdef Py_ssize_t* miss
    cdef Py_ssize_t n_failed = 0
    cdef Py_ssize_t o_zy = k + k * d, o_yy = o_zy + k * p * d, o_zz = o_yy + k * d
    cdef Py_ssize_t o_zzm = o_zz + k * p * p
    try:
        if n > 0:
            for slot in prange(n_slots, nogil=True, schedule='static', num_threads=n_team):
                buf = <double*>malloc(_work_size(k, q, d) * sizeof(double) + 8)
                miss = <Py_ssize_t*>malloc(d * sizeof(Py_ssize_t) + 8)
                if buf == NULL or miss == NULL:
                    free(buf)
                    free(miss)
                    n_failed += 1
                    continue
                _stats_slot(&X[0, 0], &sample_weight[0], _slot_start(slot, n_slots, n_blocks),
                            _slot_stop(slot, n_slots, n_blocks, n), k, q, d, &means[0, 0],
                            &loadings[0, 0, 0], &inv_noise[0, 0], &log_weights[0],
                            &parts.inner[0, 0, 0], &parts.inv_chol[0, 0, 0],
                            &parts.post_cov[0, 0, 0], &parts.log_consts[0],
                            part + slot * size, buf, miss)
                free(buf)
                free(miss)
        if n_failed:
            raise MemoryError()
        _sum_slots(part, n_slots, size, out)
        for t in range(k):
            nk[t] = out[t]
        for t in range(k * d):
            n_missing[t // d, t % d] = out[k + t]
            sum_yy[t // d, t % d] = out[o_yy + t]
        for t in range(k * p * d):
            sum_zy[t // (p * d), (t // d) % p, t % d] = out[o_zy + t]
        for t in range(k * p * p):
            sum_zz[t // (p * p), (t // p) % p, t % p] = out[o_zz + t]
        for t in range(k * d * p * p):
            sum_zz_missing[t // (d * p * p), (t // (p * p)) % d, (t // p) % p,
                           t % p] = out[o_zzm + t]
        return out[size - 1]
    finally:
        free(part)
        free(out)


def factor_stats(X, sample_weight, means, loadings, inv_noise, log_weights, nk, n_missing,
                 sum_zy, sum_yy, sum_zz, sum_zz_missing, n_threads):
    """The E-step statistics (see the reference) over fixed blocks and slots of rows,
    the slots added in order; returns sum_i w_i log p(x_i)."""
    return _factor_stats_typed(X, sample_weight, means, loadings, inv_noise, log_weights, nk,
                               n_missing, sum_zy, sum_yy, sum_zz, sum_zz_missing, n_threads)
