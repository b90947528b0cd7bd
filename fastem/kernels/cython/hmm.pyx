"""Hidden Markov model kernels, Cython backend.  Same names and signatures as
``reference/hmm.py`` (its docstring gives the recursions); this mirrors
``numba/hmm.py`` step for step: the sequences of a batch in parallel (``prange``, one
thread a sequence, so results do not depend on the thread count), the scaled form with
each step's emissions shifted by their maximum, falling back to log space for a
sequence whose scale factor underflows.

Compiler directives are set in ``setup.py``; bounds checking is off, so each kernel
checks its arguments' shapes once before entering ``nogil`` code.
"""

from cython.parallel cimport prange
from libc.math cimport INFINITY, NAN, exp, isfinite, log
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc

from fastem.kernels.cython._common cimport (
    _BLOCK, _MAX_SLOTS, _SLOT_BUDGET_BYTES, FASTEM_COMPILED_WITH_OPENMP, _alloc, _check_arg,
    _team_size)

OPENMP = bool(FASTEM_COMPILED_WITH_OPENMP)
BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES = _BLOCK, _MAX_SLOTS, _SLOT_BUDGET_BYTES


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


cdef double _fb_log(const double* ls, const double* lt, const double* le, Py_ssize_t n_steps,
                    Py_ssize_t k, double* post, double* xi, double* la, double* lb,
                    double* work) noexcept nogil:
    """One sequence in log space (``la``, ``lb``: (T, K) scratch; ``work``: K)."""
    cdef Py_ssize_t t, i, j
    cdef double log_prob
    for j in range(k):
        la[j] = ls[j] + le[j]
    for t in range(1, n_steps):
        for j in range(k):
            for i in range(k):
                work[i] = la[(t - 1) * k + i] + lt[i * k + j]
            la[t * k + j] = le[t * k + j] + _logsumexp(work, k)
    for j in range(k):
        lb[(n_steps - 1) * k + j] = 0.0
    for t in range(n_steps - 2, -1, -1):
        for i in range(k):
            for j in range(k):
                work[j] = lt[i * k + j] + le[(t + 1) * k + j] + lb[(t + 1) * k + j]
            lb[t * k + i] = _logsumexp(work, k)
    log_prob = _logsumexp(la + (n_steps - 1) * k, k)
    for i in range(k * k):
        xi[i] = 0.0
    if log_prob == -INFINITY:
        for i in range(n_steps * k):
            post[i] = NAN
        for i in range(k * k):
            xi[i] = NAN
        return log_prob
    for i in range(n_steps * k):
        post[i] = exp(la[i] + lb[i] - log_prob)
    for t in range(n_steps - 1):
        for i in range(k):
            for j in range(k):
                xi[i * k + j] += exp(la[t * k + i] + lt[i * k + j] + le[(t + 1) * k + j]
                                     + lb[(t + 1) * k + j] - log_prob)
    return log_prob


cdef double _fb_scaled(const double* start, const double* trans, const double* ls,
                       const double* lt, const double* le, Py_ssize_t n_steps, Py_ssize_t k,
                       double* post, double* xi, double* b, double* alpha, double* beta,
                       double* scale, double* work) noexcept nogil:
    """One sequence by scaled recursions (``b``, ``alpha``, ``beta``: (T, K) scratch,
    ``scale``: T, ``work``: K), or in log space where they cannot represent it (``b`` and
    ``alpha`` then serve as its scratch)."""
    cdef Py_ssize_t t, i, j
    cdef double m, v, total, shift_sum = 0.0, log_scale = 0.0
    for t in range(n_steps):
        m = le[t * k]
        for j in range(1, k):
            if le[t * k + j] > m:
                m = le[t * k + j]
        if not isfinite(m):
            return _fb_log(ls, lt, le, n_steps, k, post, xi, b, alpha, work)
        shift_sum += m
        for j in range(k):
            b[t * k + j] = exp(le[t * k + j] - m)
    for t in range(n_steps):
        total = 0.0
        for j in range(k):
            if t == 0:
                v = start[j]
            else:
                v = 0.0
                for i in range(k):
                    v += alpha[(t - 1) * k + i] * trans[i * k + j]
            alpha[t * k + j] = v * b[t * k + j]
            total += alpha[t * k + j]
        if not total > 0.0:
            return _fb_log(ls, lt, le, n_steps, k, post, xi, b, alpha, work)
        scale[t] = total
        log_scale += log(total)
        for j in range(k):
            alpha[t * k + j] /= total
    for j in range(k):
        beta[(n_steps - 1) * k + j] = 1.0
    for t in range(n_steps - 2, -1, -1):
        for j in range(k):
            work[j] = b[(t + 1) * k + j] * beta[(t + 1) * k + j]
        for i in range(k):
            v = 0.0
            for j in range(k):
                v += trans[i * k + j] * work[j]
            beta[t * k + i] = v / scale[t + 1]
    for i in range(n_steps * k):
        post[i] = alpha[i] * beta[i]
    for i in range(k * k):
        xi[i] = 0.0
    for t in range(n_steps - 1):
        for j in range(k):
            work[j] = b[(t + 1) * k + j] * beta[(t + 1) * k + j] / scale[t + 1]
        for i in range(k):
            for j in range(k):
                xi[i * k + j] += alpha[t * k + i] * trans[i * k + j] * work[j]
    return log_scale + shift_sum


def _check_batch(ls, lt, le, const int64_t[::1] offsets, Py_ssize_t n_out):
    cdef Py_ssize_t k = ls.shape[0], s
    _check(lt.shape[0] == k and lt.shape[1] == k and le.shape[1] == k,
           "log_transmat / log_emission do not have K states")
    _check(offsets.shape[0] == n_out + 1, "offsets does not have n_sequences + 1 entries")
    for s in range(n_out):
        _check(0 <= offsets[s] <= offsets[s + 1] <= le.shape[0],
               "offsets are not increasing within log_emission")


def forward_backward(const double[::1] log_startprob, const double[:, ::1] log_transmat,
                     const double[:, ::1] log_emission, const int64_t[::1] offsets, scaled,
                     double[::1] log_prob, double[:, ::1] posteriors, double[:, :, ::1] xi_sums,
                     n_threads):
    """Forward-backward over every sequence of the batch (see the reference)."""
    cdef Py_ssize_t k = log_startprob.shape[0], n_seq = log_prob.shape[0]
    _check_batch(log_startprob, log_transmat, log_emission, offsets, n_seq)
    _check(posteriors.shape[0] == log_emission.shape[0] and posteriors.shape[1] == k
           and xi_sums.shape[0] == n_seq and xi_sums.shape[1] == k and xi_sums.shape[2] == k,
           "posteriors / xi_sums do not have the batch's shape")
    cdef bint use_scaled = bool(scaled)
    cdef Py_ssize_t s, i, a, n_steps
    cdef int n_team = _team_size(n_threads, n_seq)
    cdef double* start = <double*>_alloc(k, sizeof(double), False)
    cdef double* trans = <double*>_alloc(k * k, sizeof(double), False)
    cdef double* scratch
    cdef Py_ssize_t n_failed = 0  # a reduction: prange makes assigned variables private
    try:
        for i in range(k):
            start[i] = exp(log_startprob[i])
        for i in range(k * k):
            trans[i] = exp(log_transmat[i // k, i % k])
        for s in prange(n_seq, nogil=True, schedule='dynamic', num_threads=n_team):
            a = offsets[s]
            n_steps = offsets[s + 1] - a
            if n_steps == 0:
                log_prob[s] = 0.0
                for i in range(k * k):
                    xi_sums[s, i // k, i % k] = 0.0
                continue
            # this sequence's scratch: b, alpha, beta (T x K each), scale (T), work (K)
            scratch = <double*>malloc((3 * n_steps * k + n_steps + k) * sizeof(double))
            if scratch == NULL:
                n_failed += 1
                continue
            if use_scaled:
                log_prob[s] = _fb_scaled(start, trans, &log_startprob[0], &log_transmat[0, 0],
                                         &log_emission[a, 0], n_steps, k, &posteriors[a, 0],
                                         &xi_sums[s, 0, 0], scratch, scratch + n_steps * k,
                                         scratch + 2 * n_steps * k, scratch + 3 * n_steps * k,
                                         scratch + 3 * n_steps * k + n_steps)
            else:
                log_prob[s] = _fb_log(&log_startprob[0], &log_transmat[0, 0],
                                      &log_emission[a, 0], n_steps, k, &posteriors[a, 0],
                                      &xi_sums[s, 0, 0], scratch, scratch + n_steps * k,
                                      scratch + 3 * n_steps * k + n_steps)
            free(scratch)
    finally:
        free(start)
        free(trans)
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
