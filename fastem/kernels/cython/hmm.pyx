"""Hidden Markov model kernels, Cython backend.  Same names and signatures as
``reference/hmm.py`` (its docstring gives the recursions); this mirrors
``numba/hmm.py`` step for step (its docstrings give the algebra of each phase): log
space one sequence a thread, max-shifted (K exps and K logs a step); the scaled form in
phases whose work split depends only on the data (shifted emissions by rows, their
``exp`` by numpy, the forward and backward pass of every sequence as separate tasks,
posteriors and transition counts over fixed blocks of steps, log space for a sequence
the scaled form cannot represent), so results do not depend on the thread count.

Compiler directives are set in ``setup.py``; bounds checking is off, so each kernel
checks its arguments' shapes once before entering ``nogil`` code.
"""

import numpy as np

from fastem.kernels._scratch import scratch_of

from cython.parallel cimport prange
from libc.math cimport INFINITY, NAN, exp, isfinite, log
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport free, malloc

from cython cimport floating

from fastem.kernels.cython._common cimport (
    _BLOCK, _MAX_SLOTS, _SLOT_BUDGET_BYTES, FASTEM_COMPILED_WITH_OPENMP, _add_weighted_outer,
    _alloc, _block_stop, _check_arg, _n_blocks, _n_slots, _slot_start, _slot_stop, _sum_slots,
    _team_size)

OPENMP = bool(FASTEM_COMPILED_WITH_OPENMP)
BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES = _BLOCK, _MAX_SLOTS, _SLOT_BUDGET_BYTES

# numba/hmm.py's constants (the contract tests check that they agree)
TIME_BLOCK = 2048
cdef Py_ssize_t _TIME_BLOCK = 2048
cdef double _TINY_SUM = 1e-280
cdef double _LOG_XI_FACTOR_MAX = 230.0


cdef inline void _check(bint ok, str what) except *:
    _check_arg("hmm", ok, what)


cdef double _logsumexp(const double* v, Py_ssize_t n) noexcept nogil:
    cdef double top = v[0], acc = 0.0
    cdef Py_ssize_t i
    for i in range(1, n):
        if v[i] > top:
            top = v[i]
    if not isfinite(top):
        return top
    for i in range(n):
        acc += exp(v[i] - top)
    return log(acc) + top


cdef double _forward_log(const double* trans, const double* ls, const double* lt,
                         const double* le, Py_ssize_t n_steps, Py_ssize_t k, double* la,
                         double* work) noexcept nogil:
    """numba's ``_forward_log``: ``la`` (T, K) written (``work``: 2 K); returns log P."""
    cdef Py_ssize_t t, i, j
    cdef double c, a_i
    cdef double* acc = work + k
    for j in range(k):
        la[j] = ls[j] + le[j]
    for t in range(1, n_steps):
        c = la[(t - 1) * k]
        for i in range(1, k):
            if la[(t - 1) * k + i] > c:
                c = la[(t - 1) * k + i]
        if not isfinite(c):  # every state impossible: so is everything after
            for i in range(t * k, n_steps * k):
                la[i] = -INFINITY
            break
        for j in range(k):
            acc[j] = 0.0
        for i in range(k):
            a_i = exp(la[(t - 1) * k + i] - c)
            for j in range(k):
                acc[j] += a_i * trans[i * k + j]
        for j in range(k):
            if acc[j] > _TINY_SUM:
                la[t * k + j] = le[t * k + j] + c + log(acc[j])
            else:
                for i in range(k):
                    work[i] = la[(t - 1) * k + i] + lt[i * k + j]
                la[t * k + j] = le[t * k + j] + _logsumexp(work, k)
    return _logsumexp(la + (n_steps - 1) * k, k)


cdef double _fb_log(const double* trans, const double* trans_t, const double* ls,
                    const double* lt, const double* le, Py_ssize_t n_steps, Py_ssize_t k,
                    double* post, double* xi, double* la, double* work) noexcept nogil:
    """One sequence in log space, max-shifted (``la``: (T, K) scratch; ``work``: 5 K +
    K^2)."""
    cdef Py_ssize_t t, i, j
    cdef double c, n, f, a_i, e_j, log_prob
    cdef double* e = work + k
    cdef double* acc = work + 2 * k
    cdef double* v = work + 3 * k
    cdef double* lb = work + 4 * k
    cdef double* direct = work + 5 * k
    log_prob = _forward_log(trans, ls, lt, le, n_steps, k, la, work)
    for i in range(k * k):
        xi[i] = 0.0
        direct[i] = 0.0
    if log_prob == -INFINITY:
        for i in range(n_steps * k):
            post[i] = NAN
        for i in range(k * k):
            xi[i] = NAN
        return log_prob
    for j in range(k):
        lb[j] = 0.0
    for t in range(n_steps - 1, 0, -1):
        for j in range(k):
            post[t * k + j] = exp(la[t * k + j] + lb[j] - log_prob)
            v[j] = le[t * k + j] + lb[j]
        n = v[0]
        c = la[(t - 1) * k]
        for j in range(1, k):
            if v[j] > n:
                n = v[j]
            if la[(t - 1) * k + j] > c:
                c = la[(t - 1) * k + j]
        if n == -INFINITY or c == -INFINITY:  # no mass flows through this step
            for j in range(k):
                lb[j] = -INFINITY
            continue
        for j in range(k):
            e[j] = exp(v[j] - n)
        f = c + n - log_prob
        if f < _LOG_XI_FACTOR_MAX:
            f = exp(f)
            for i in range(k):
                a_i = exp(la[(t - 1) * k + i] - c) * f
                for j in range(k):
                    xi[i * k + j] += a_i * e[j]
        else:
            for i in range(k):
                for j in range(k):
                    direct[i * k + j] += exp(la[(t - 1) * k + i] + lt[i * k + j] + v[j]
                                             - log_prob)
        for i in range(k):
            acc[i] = 0.0
        for j in range(k):
            e_j = e[j]
            for i in range(k):
                acc[i] += trans_t[j * k + i] * e_j
        for i in range(k):
            if acc[i] > _TINY_SUM:
                lb[i] = n + log(acc[i])
            else:
                for j in range(k):
                    work[j] = lt[i * k + j] + v[j]
                lb[i] = _logsumexp(work, k)
    for j in range(k):
        post[j] = exp(la[j] + lb[j] - log_prob)
    for i in range(k * k):
        xi[i] = xi[i] * trans[i] + direct[i]
    return log_prob


cdef extern from *:
    """
    /* The scaled passes of numba/hmm.py (_forward_scaled, _backward_scaled,
       _combine_scaled; their docstrings give the algebra), in C so that they can be
       compiled for AVX2 and the baseline, one picked at load time: the baseline's
       2-lane vectors made the K-long row updates (acc += a_i A_i, beta += u_j A^T_j,
       part_i += a_i u) 1.6x slower than numba's at K = 32.  Row-major (T, K) arrays;
       a pass returns NaN / 0 where the scaled form cannot represent the sequence. */
    #include <math.h>
    #define FASTEM_SMALLEST_NORMAL 2.2250738585072014e-308
    #define FASTEM_TINY_NORM 1e-290

    static FASTEM_CLONES double fastem_forward_scaled(
            const double* __restrict start, const double* __restrict trans,
            const double* __restrict b, const double* __restrict shift, Py_ssize_t n_steps,
            Py_ssize_t k, double* __restrict alpha, double* __restrict acc) {
        /* log P = sum_t log s_t + shift_t, the s_t multiplied into prod (kept above
           1e-150, so that the next factor, at least the smallest normal number, cannot
           underflow it) and its log taken only when it gets that small: one log every
           many steps instead of one a step. */
        double log_like = 0.0, prod = 1.0;
        for (Py_ssize_t t = 0; t < n_steps; t++) {
            if (!isfinite(shift[t])) return NAN;
            const double* bt = b + t * k;
            if (t == 0) {
                for (Py_ssize_t j = 0; j < k; j++) acc[j] = start[j] * bt[j];
            } else {
                const double* prev = alpha + (t - 1) * k;
                for (Py_ssize_t j = 0; j < k; j++) acc[j] = 0.0;
                for (Py_ssize_t i = 0; i < k; i++) {
                    const double a_i = prev[i];
                    const double* row = trans + i * k;
                    for (Py_ssize_t j = 0; j < k; j++) acc[j] += a_i * row[j];
                }
                for (Py_ssize_t j = 0; j < k; j++) acc[j] *= bt[j];
            }
            double total = 0.0;
            for (Py_ssize_t j = 0; j < k; j++) total += acc[j];
            if (!(total >= FASTEM_SMALLEST_NORMAL)) return NAN;
            if (prod < 1e-150 || total < 1e-150) {
                log_like += log(prod);
                prod = 1.0;
            }
            prod *= total;
            log_like += shift[t];
            const double inv = 1.0 / total;
            double* out = alpha + t * k;
            for (Py_ssize_t j = 0; j < k; j++) out[j] = acc[j] * inv;
        }
        return log_like + log(prod);
    }

    static FASTEM_CLONES int fastem_backward_scaled(
            const double* __restrict trans_t, const double* __restrict b, Py_ssize_t n_steps,
            Py_ssize_t k, double* __restrict beta, double* __restrict norm) {
        for (Py_ssize_t j = 0; j < k; j++) beta[(n_steps - 1) * k + j] = 1.0;
        for (Py_ssize_t t = n_steps - 2; t >= 0; t--) {
            double* out = beta + t * k;
            const double* next = beta + (t + 1) * k;
            const double* bn = b + (t + 1) * k;
            for (Py_ssize_t i = 0; i < k; i++) out[i] = 0.0;
            for (Py_ssize_t j = 0; j < k; j++) {
                const double u_j = bn[j] * next[j];
                const double* row = trans_t + j * k;
                for (Py_ssize_t i = 0; i < k; i++) out[i] += row[i] * u_j;
            }
            double total = 0.0;
            for (Py_ssize_t i = 0; i < k; i++) total += out[i];
            if (!(total >= FASTEM_SMALLEST_NORMAL)) return 0;
            norm[t] = total;
            const double inv = 1.0 / total;
            for (Py_ssize_t i = 0; i < k; i++) out[i] *= inv;
        }
        return 1;
    }

    static FASTEM_CLONES int fastem_combine_scaled(
            const double* __restrict b, const double* __restrict beta,
            const double* __restrict norm, Py_ssize_t c0, Py_ssize_t c1, Py_ssize_t a1,
            Py_ssize_t k, double* __restrict post, double* __restrict part,
            double* __restrict u) {
        for (Py_ssize_t i = 0; i < k * k; i++) part[i] = 0.0;
        for (Py_ssize_t t = c0; t < c1; t++) {
            double* p = post + t * k;
            const double* bt = beta + t * k;
            double z = 0.0;
            for (Py_ssize_t j = 0; j < k; j++) z += p[j] * bt[j];
            if (!(z > FASTEM_TINY_NORM)) return 0;
            const double inv = 1.0 / z;
            if (t + 1 < a1) {
                const double w = inv / norm[t];
                const double* bn = b + (t + 1) * k;
                const double* betan = beta + (t + 1) * k;
                for (Py_ssize_t j = 0; j < k; j++) u[j] = bn[j] * betan[j];
                for (Py_ssize_t i = 0; i < k; i++) {
                    const double a_i = p[i] * w;
                    double* row = part + i * k;
                    for (Py_ssize_t j = 0; j < k; j++) row[j] += a_i * u[j];
                }
            }
            for (Py_ssize_t j = 0; j < k; j++) p[j] *= bt[j] * inv;
        }
        return 1;
    }
    """
    double _forward_scaled "fastem_forward_scaled" (
        const double* start, const double* trans, const double* b, const double* shift,
        Py_ssize_t n_steps, Py_ssize_t k, double* alpha, double* acc) noexcept nogil
    bint _backward_scaled "fastem_backward_scaled" (
        const double* trans_t, const double* b, Py_ssize_t n_steps, Py_ssize_t k,
        double* beta, double* norm) noexcept nogil
    bint _combine_scaled "fastem_combine_scaled" (
        const double* b, const double* beta, const double* norm, Py_ssize_t c0, Py_ssize_t c1,
        Py_ssize_t a1, Py_ssize_t k, double* post, double* part, double* u) noexcept nogil


def _check_batch(ls, lt, le, const int64_t[::1] offsets, Py_ssize_t n_out):
    cdef Py_ssize_t k = ls.shape[0], s
    _check(lt.shape[0] == k and lt.shape[1] == k and le.shape[1] == k,
           "log_transmat / log_emission do not have K states")
    _check(offsets.shape[0] == n_out + 1, "offsets does not have n_sequences + 1 entries")
    for s in range(n_out):
        _check(0 <= offsets[s] <= offsets[s + 1] <= le.shape[0],
               "offsets are not increasing within log_emission")


cdef void _log_batch(const double* trans, const double* trans_t, const double[::1] ls,
                     const double[:, ::1] lt, const double[:, ::1] le,
                     const int64_t[::1] offsets, const uint8_t[::1] which, double[::1] log_prob,
                     double[:, ::1] posteriors, double[:, :, ::1] xi_sums, int n_team,
                     Py_ssize_t* n_failed) noexcept nogil:
    """Log space for the sequences s with which[s] (one sequence a thread)."""
    cdef Py_ssize_t s, i, a, n_steps, k = ls.shape[0], n_seq = log_prob.shape[0]
    cdef double* scratch
    cdef Py_ssize_t failed = 0  # a reduction: prange makes assigned variables private
    for s in prange(n_seq, schedule='dynamic', num_threads=n_team):
        if not which[s]:
            continue
        a = offsets[s]
        n_steps = offsets[s + 1] - a
        if n_steps == 0:
            log_prob[s] = 0.0
            for i in range(k * k):
                xi_sums[s, i // k, i % k] = 0.0
            continue
        scratch = <double*>malloc((n_steps * k + 5 * k + k * k) * sizeof(double))
        if scratch == NULL:
            failed += 1
            continue
        log_prob[s] = _fb_log(trans, trans_t, &ls[0], &lt[0, 0], &le[a, 0], n_steps, k,
                              &posteriors[a, 0], &xi_sums[s, 0, 0], scratch,
                              scratch + n_steps * k)
        free(scratch)
    n_failed[0] += failed


def _shifted_emissions(const double[:, ::1] log_emission, n_threads, scratch):
    """(exp(le_t - shift_t), shift_t = max_j le_t(j)) of every row, in ``scratch``'s
    arrays "em" and "shift", the shifts over fixed blocks of rows and the exponentials by
    numpy's vectorised exp (see numba's ``forward_backward``); a row no state can emit
    gives zeros."""
    cdef Py_ssize_t n = log_emission.shape[0], k = log_emission.shape[1], blk, t, j
    em_arr, shift_arr = scratch.empty("em", (n, k)), scratch.empty("shift", (n,))
    cdef double[:, ::1] em = em_arr
    cdef double[::1] shift = shift_arr
    cdef Py_ssize_t n_row_blocks = (n + _TIME_BLOCK - 1) // _TIME_BLOCK
    cdef double m
    cdef int row_team = _team_size(n_threads, n_row_blocks)
    for blk in prange(n_row_blocks, nogil=True, num_threads=row_team):
        for t in range(blk * _TIME_BLOCK, min(n, (blk + 1) * _TIME_BLOCK)):
            m = log_emission[t, 0]
            for j in range(1, k):
                if log_emission[t, j] > m:
                    m = log_emission[t, j]
            shift[t] = m
            for j in range(k):
                em[t, j] = log_emission[t, j] - m if isfinite(m) else -INFINITY
    np.exp(em_arr, out=em_arr)
    return em_arr, shift_arr


def forward(const double[::1] log_startprob, const double[:, ::1] log_transmat,
            const double[:, ::1] log_emission, const int64_t[::1] offsets, scaled,
            double[::1] log_prob, double[:, ::1] filtered, n_threads, *, scratch=None):
    """The forward pass of every sequence of the batch, one sequence a thread, its work
    arrays lent by ``scratch`` (see the reference and numba's ``forward``)."""
    cdef Py_ssize_t k = log_startprob.shape[0], n_seq = log_prob.shape[0]
    cdef Py_ssize_t n = log_emission.shape[0]
    _check_batch(log_startprob, log_transmat, log_emission, offsets, n_seq)
    _check(filtered.shape[0] == n_seq and filtered.shape[1] == k,
           "filtered does not have the batch's shape")
    scratch = scratch_of(scratch)
    cdef bint use_scaled = bool(scaled)
    cdef double[::1] start = np.exp(log_startprob)
    cdef double[:, ::1] trans = np.exp(log_transmat)
    em_arr, shift_arr = (_shifted_emissions(log_emission, n_threads, scratch) if use_scaled
                         else (np.zeros((1, k)), np.zeros(1)))
    cdef double[:, ::1] em = em_arr
    cdef double[::1] shift = shift_arr
    # each sequence's alphas in its own rows, and 2K values of work of its own
    cdef double[:, ::1] alpha = scratch.empty("alpha", (max(n, 1), k))
    cdef double[:, ::1] work = scratch.empty("work", (max(n_seq, 1), 2 * k))
    cdef Py_ssize_t s, a, n_steps, j
    cdef double lp
    cdef int n_team = _team_size(n_threads, n_seq)
    for s in prange(n_seq, nogil=True, schedule='dynamic', num_threads=n_team):
        a = offsets[s]
        n_steps = offsets[s + 1] - a
        if n_steps == 0:
            log_prob[s] = 0.0
            for j in range(k):
                filtered[s, j] = NAN
            continue
        lp = NAN
        if use_scaled:
            lp = _forward_scaled(&start[0], &trans[0, 0], &em[a, 0], &shift[a], n_steps, k,
                                 &alpha[a, 0], &work[s, 0])
        if isfinite(lp):
            for j in range(k):
                filtered[s, j] = alpha[a + n_steps - 1, j]
        else:  # log space (asked for, or the scaled form cannot represent the sequence)
            lp = _forward_log(&trans[0, 0], &log_startprob[0], &log_transmat[0, 0],
                              &log_emission[a, 0], n_steps, k, &alpha[a, 0], &work[s, 0])
            for j in range(k):
                filtered[s, j] = exp(alpha[a + n_steps - 1, j] - lp)
        log_prob[s] = lp


def forward_backward(const double[::1] log_startprob, const double[:, ::1] log_transmat,
                     const double[:, ::1] log_emission, const int64_t[::1] offsets, scaled,
                     double[::1] log_prob, double[:, ::1] posteriors, double[:, :, ::1] xi_sums,
                     n_threads, *, scratch=None):
    """Forward-backward over every sequence of the batch, the scaled form's work arrays
    lent by ``scratch`` (see the reference and numba's ``forward_backward``)."""
    cdef Py_ssize_t k = log_startprob.shape[0], n_seq = log_prob.shape[0]
    cdef Py_ssize_t n = log_emission.shape[0]
    _check_batch(log_startprob, log_transmat, log_emission, offsets, n_seq)
    _check(posteriors.shape[0] == n and posteriors.shape[1] == k
           and xi_sums.shape[0] == n_seq and xi_sums.shape[1] == k and xi_sums.shape[2] == k,
           "posteriors / xi_sums do not have the batch's shape")
    cdef int n_team = _team_size(n_threads, max(n_seq, 2))
    cdef double[::1] start = np.exp(log_startprob)
    cdef double[:, ::1] trans = np.exp(log_transmat)
    cdef double[:, ::1] trans_t = np.ascontiguousarray(np.exp(log_transmat).T)
    cdef Py_ssize_t n_failed = 0
    cdef uint8_t[::1] which = np.ones(n_seq, dtype=np.uint8)
    if not bool(scaled):
        with nogil:
            _log_batch(&trans[0, 0], &trans_t[0, 0], log_startprob, log_transmat,
                       log_emission, offsets, which, log_prob, posteriors, xi_sums, n_team,
                       &n_failed)
        if n_failed:
            raise MemoryError()
        return
    scratch = scratch_of(scratch)
    em_arr, shift_arr = _shifted_emissions(log_emission, n_threads, scratch)
    cdef double[:, ::1] em = em_arr
    cdef double[::1] shift = shift_arr
    cdef Py_ssize_t blk, t, j, s, task, a, n_steps, i
    lengths = np.diff(np.asarray(offsets))
    cdef int64_t[::1] order = np.argsort(-lengths, kind="stable").astype(np.int64)
    cdef double[:, ::1] beta = scratch.empty("beta", (n, k))
    cdef double[::1] norm = scratch.empty("norm", (n,))
    cdef uint8_t[::1] backward_ok = np.ones(n_seq, dtype=np.uint8)
    cdef double* acc
    for task in prange(2 * n_seq, nogil=True, schedule='dynamic', num_threads=n_team):
        s = order[task // 2]
        a = offsets[s]
        n_steps = offsets[s + 1] - a
        if n_steps == 0:
            continue
        if task % 2 == 0:
            acc = <double*>malloc(k * sizeof(double))
            if acc == NULL:
                n_failed += 1
                continue
            log_prob[s] = _forward_scaled(&start[0], &trans[0, 0], &em[a, 0], &shift[a],
                                          n_steps, k, &posteriors[a, 0], acc)
            free(acc)
        else:
            backward_ok[s] = _backward_scaled(&trans_t[0, 0], &em[a, 0], n_steps, k,
                                              &beta[a, 0], &norm[a])
    if n_failed:
        raise MemoryError()
    first_arr = np.zeros(n_seq + 1, dtype=np.int64)
    np.cumsum((lengths + _TIME_BLOCK - 1) // _TIME_BLOCK, out=first_arr[1:])
    cdef int64_t[::1] first_block = first_arr
    cdef Py_ssize_t n_blocks = first_block[n_seq]
    cdef int64_t[::1] block_seq = np.repeat(np.arange(n_seq, dtype=np.int64),
                                            np.diff(first_arr)).astype(np.int64)
    cdef double[:, :, ::1] parts = np.empty((max(n_blocks, 1), k, k))
    cdef uint8_t[::1] block_ok = np.ones(max(n_blocks, 1), dtype=np.uint8)
    cdef double* u
    cdef Py_ssize_t c0
    cdef int block_team = _team_size(n_threads, n_blocks)
    for blk in prange(n_blocks, nogil=True, schedule='dynamic', num_threads=block_team):
        s = block_seq[blk]
        if not (backward_ok[s] and isfinite(log_prob[s])):
            continue
        u = <double*>malloc(k * sizeof(double))
        if u == NULL:
            n_failed += 1
            continue
        c0 = offsets[s] + (blk - first_block[s]) * _TIME_BLOCK
        block_ok[blk] = _combine_scaled(&em[0, 0], &beta[0, 0], &norm[0], c0,
                                        min(c0 + _TIME_BLOCK, offsets[s + 1]), offsets[s + 1],
                                        k, &posteriors[0, 0], &parts[blk, 0, 0], u)
        free(u)
    if n_failed:
        raise MemoryError()
    cdef bint ok
    for s in range(n_seq):
        if offsets[s + 1] == offsets[s]:
            log_prob[s] = 0.0
            for i in range(k * k):
                xi_sums[s, i // k, i % k] = 0.0
            which[s] = 0
            continue
        ok = backward_ok[s] and isfinite(log_prob[s])
        for blk in range(first_block[s], first_block[s + 1]):
            ok = ok and block_ok[blk]
        which[s] = not ok
        if ok:
            for i in range(k * k):
                xi_sums[s, i // k, i % k] = 0.0
            for blk in range(first_block[s], first_block[s + 1]):
                for i in range(k * k):
                    xi_sums[s, i // k, i % k] += parts[blk, i // k, i % k]
            for i in range(k * k):
                xi_sums[s, i // k, i % k] *= trans[i // k, i % k]
    # the scaled form cannot represent these sequences: log space instead
    with nogil:
        _log_batch(&trans[0, 0], &trans_t[0, 0], log_startprob, log_transmat, log_emission,
                   offsets, which, log_prob, posteriors, xi_sums, n_team, &n_failed)
    if n_failed:
        raise MemoryError()


def decode_viterbi(const double[::1] log_startprob, const double[:, ::1] log_transmat,
                   const double[:, ::1] log_emission, const int64_t[::1] offsets,
                   double[::1] log_prob, int32_t[::1] path, n_threads):
    """Viterbi over every sequence of the batch (ties to the lowest state index)."""
    cdef Py_ssize_t k = log_startprob.shape[0], n_seq = log_prob.shape[0]
    _check_batch(log_startprob, log_transmat, log_emission, offsets, n_seq)
    _check(path.shape[0] == log_emission.shape[0], "path does not have N entries")
    cdef Py_ssize_t s, t, i, j, a, n_steps, best, last
    cdef double v, best_val
    cdef int n_team = _team_size(n_threads, n_seq)
    cdef int32_t* back
    cdef double* delta
    cdef Py_ssize_t n_failed = 0  # a reduction: prange makes assigned variables private
    for s in prange(n_seq, nogil=True, schedule='dynamic', num_threads=n_team):
        a = offsets[s]
        n_steps = offsets[s + 1] - a
        if n_steps == 0:
            log_prob[s] = 0.0
            continue
        back = <int32_t*>malloc(n_steps * k * sizeof(int32_t))
        delta = <double*>malloc(2 * k * sizeof(double))
        if back == NULL or delta == NULL:
            n_failed += 1
            free(back)
            free(delta)
            continue
        for j in range(k):
            delta[j] = log_startprob[j] + log_emission[a, j]
        for t in range(1, n_steps):
            for j in range(k):
                best = 0
                best_val = delta[0] + log_transmat[0, j]
                for i in range(1, k):
                    v = delta[i] + log_transmat[i, j]
                    if v > best_val:
                        best = i
                        best_val = v
                back[t * k + j] = <int32_t>best
                delta[k + j] = best_val + log_emission[a + t, j]
            for j in range(k):
                delta[j] = delta[k + j]
        last = 0
        for j in range(1, k):
            if delta[j] > delta[last]:
                last = j
        log_prob[s] = delta[last]
        path[a + n_steps - 1] = <int32_t>last
        for t in range(n_steps - 1, 0, -1):
            path[a + t - 1] = back[t * k + path[a + t]]
        free(back)
        free(delta)
    if n_failed:
        raise MemoryError()


cdef void _moments_slot(const floating* X, Py_ssize_t d, const double* center,
                        const double* weights, Py_ssize_t k, Py_ssize_t rows, Py_ssize_t start,
                        Py_ssize_t stop, double* p_nk, double* p_y, double* p_yy, double* y,
                        double* yw) noexcept nogil:
    """One slot of ``weighted_moments`` (numba's loop body; ``y``, ``yw``: BLOCK x D)."""
    cdef Py_ssize_t b_start, b_stop, m, i, j, c
    cdef double total, w, v
    b_start = start
    while b_start < stop:
        b_stop = _block_stop(b_start, stop)
        m = b_stop - b_start
        for i in range(m):
            for j in range(d):
                y[i * d + j] = <double>X[(b_start + i) * d + j] - center[j]
        if rows == 1:  # squares: row by row, each row's K weights read together
            for i in range(m):
                for c in range(k):
                    w = weights[(b_start + i) * k + c]
                    p_nk[c] += w
                    for j in range(d):
                        v = w * y[i * d + j]
                        p_y[c * d + j] += v
                        p_yy[c * d + j] += v * y[i * d + j]
            b_start = b_stop
            continue
        for c in range(k):  # outer products
            total = 0.0
            for i in range(m):
                total += weights[(b_start + i) * k + c]
            if total == 0.0:
                continue
            p_nk[c] += total
            for i in range(m):
                w = weights[(b_start + i) * k + c]
                for j in range(d):
                    yw[i * d + j] = w * y[i * d + j]
                    p_y[c * d + j] += yw[i * d + j]
            _add_weighted_outer(y, yw, <int>m, <int>d, p_yy + c * d * d)
        b_start = b_stop


def _weighted_moments_typed(const floating[:, ::1] X, const double[::1] center,
                            const double[:, ::1] weights, double[::1] nk, double[:, ::1] sum_y,
                            double[:, :, ::1] sum_yy, n_threads):
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = weights.shape[1]
    cdef Py_ssize_t rows = sum_yy.shape[1]
    _check(center.shape[0] == d and weights.shape[0] == n and nk.shape[0] == k
           and sum_y.shape[0] == k and sum_y.shape[1] == d and sum_yy.shape[0] == k
           and (rows == 1 or rows == d) and sum_yy.shape[2] == d,
           "weighted_moments: X, center, weights and the outputs do not agree in shape")
    cdef Py_ssize_t n_blocks = _n_blocks(n)
    cdef Py_ssize_t n_slots = _n_slots(n_blocks, 8 * k * (1 + d + rows * d))
    cdef Py_ssize_t size = k * (1 + d + rows * d), slot
    cdef int n_team = _team_size(n_threads, n_slots)
    cdef double* part = <double*>_alloc(n_slots * size, sizeof(double), True)
    cdef double* out = <double*>_alloc(size, sizeof(double), False)
    cdef double* scratch
    cdef Py_ssize_t n_failed = 0, q  # a reduction: prange makes assigned variables private
    try:
        if n > 0:
            for slot in prange(n_slots, nogil=True, schedule='static', num_threads=n_team):
                scratch = <double*>malloc(2 * _BLOCK * d * sizeof(double) + 8)
                if scratch == NULL:
                    n_failed += 1
                    continue
                _moments_slot(&X[0, 0], d, &center[0], &weights[0, 0], k, rows,
                              _slot_start(slot, n_slots, n_blocks),
                              _slot_stop(slot, n_slots, n_blocks, n), part + slot * size,
                              part + slot * size + k, part + slot * size + k + k * d,
                              scratch, scratch + _BLOCK * d)
                free(scratch)
        if n_failed:
            raise MemoryError()
        _sum_slots(part, n_slots, size, out)
        for q in range(k):
            nk[q] = out[q]
        for q in range(k * d):
            sum_y[q // d, q % d] = out[k + q]
        for q in range(k * rows * d):
            sum_yy[q // (rows * d), (q // d) % rows, q % d] = out[k + k * d + q]
    finally:
        free(part)
        free(out)


def weighted_moments(X, center, weights, nk, sum_y, sum_yy, n_threads):
    """The weighted moments of the rows about ``center`` (see the reference and numba's
    ``weighted_moments``)."""
    _weighted_moments_typed(X, center, weights, nk, sum_y, sum_yy, n_threads)


def symbol_counts(const int64_t[::1] symbols, const double[:, ::1] weights,
                  double[:, ::1] counts, n_threads):
    """The weighted (state, symbol) counts (see the reference and numba's
    ``symbol_counts``)."""
    cdef Py_ssize_t n = weights.shape[0], k = weights.shape[1], m = counts.shape[1]
    cdef Py_ssize_t t, c, s, slot, q
    _check(symbols.shape[0] == n and counts.shape[0] == k,
           "symbol_counts: symbols, weights and counts do not agree in shape")
    for t in range(n):
        _check(0 <= symbols[t] < m, "symbol_counts: a symbol is outside [0, n_symbols)")
    cdef Py_ssize_t n_blocks = _n_blocks(n)
    cdef Py_ssize_t n_slots = _n_slots(n_blocks, 8 * k * m)
    cdef int n_team = _team_size(n_threads, n_slots)
    cdef double* part = <double*>_alloc(n_slots * m * k, sizeof(double), True)
    cdef double* out = <double*>_alloc(m * k, sizeof(double), False)
    cdef double* row
    try:
        if n > 0:
            for slot in prange(n_slots, nogil=True, schedule='static', num_threads=n_team):
                for t in range(_slot_start(slot, n_slots, n_blocks),
                               _slot_stop(slot, n_slots, n_blocks, n)):
                    row = part + (slot * m + symbols[t]) * k
                    for c in range(k):
                        row[c] += weights[t, c]
        _sum_slots(part, n_slots, m * k, out)
        for q in range(m * k):
            counts[q % k, q // k] = out[q]
    finally:
        free(part)
        free(out)
