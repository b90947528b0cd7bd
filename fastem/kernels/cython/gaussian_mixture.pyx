"""Gaussian mixture kernels, Cython backend. Same names and signatures as
``reference/gaussian_mixture.py`` (see its docstring for the contract).

This mirrors ``numba/gaussian_mixture.py`` step for step: one generic typed kernel
per job (log densities, log normaliser, fused statistics) with an int ``kind``
constant, and thin per-type public kernels that reshape the precision factors and the
second-moment buffer to one canonical 3-D form (views, no copies):

=========== ============= ===============
kind        prec_chol     sum_xx
=========== ============= ===============
full        (K, D, D)     (K, D, D)
tied        (1, D, D)     (1, D, D)
diag        (K, 1, D)     (K, 1, D)
spherical   (K, 1, 1)     (K, 1, 1)
=========== ============= ===============

Determinism follows ``cython/kmeans.pyx``: fixed blocks of ``BLOCK_SIZE`` samples,
slots fixed by the problem size (contiguous runs of whole blocks), each slot reduced
serially by one thread into its own partial rows, the rows added in slot order after
the parallel loop.  No ``prange`` reduction and no shared ``+=``: results are
bit-identical for any ``n_threads``.

Mahalanobis distances, per block of samples:

* full: ``y = x - mu_k`` (data dtype), ``z = y U_k`` by one gemm per block and
  component, ``maha = sum_j z_j^2`` in float64;
* tied: ``z = x U`` by one gemm per block, ``maha = sum_j (z_j - (mu_k U)_j)^2`` in
  float64, with ``means @ U`` computed once before the parallel loop;
* diag: ``sum_j ((x_j - mu_kj) p_kj)^2`` in float64;
* spherical: ``p_k^2 sum_j (x_j - mu_kj)^2`` in float64.

The gemm products are stored transposed (features x block rows) and diag/spherical
read a float64 transposed copy of the block, so that every squared-distance sum runs
over features in order, for all the rows of a block at once (independent, vectorisable
accumulators; the summation order per sample is the plain feature order).

Second moments for full/tied use one float64 gemm per block and component,
``(w r y)^T y`` with ``y = x - shift_k`` (inner dimension = block rows), accumulated
into the slot's partial matrix; a component whose total responsibility in the block is
exactly 0 is skipped (as numba does).

Compiler directives (boundscheck, wraparound, cdivision, language_level) are set in
``setup.py``.  Because bounds checking is off, each kernel checks the shapes of its
arguments once before entering ``nogil`` code.
"""

import numpy as np

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.math cimport INFINITY, exp, log
from libc.stdlib cimport calloc, free, malloc
from scipy.linalg.cython_blas cimport dgemm, sgemm

cdef extern from *:
    """
    #ifdef _OPENMP
    #define FASTEM_COMPILED_WITH_OPENMP 1
    #else
    #define FASTEM_COMPILED_WITH_OPENMP 0
    #endif
    """
    int FASTEM_COMPILED_WITH_OPENMP

#: True iff this module was compiled with OpenMP (otherwise every prange runs serially).
OPENMP = bool(FASTEM_COMPILED_WITH_OPENMP)

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

#: Samples per block. Blocks are fixed by the data size alone, never by the thread count.
BLOCK_SIZE = 256
#: At most this many partial-result slots per reduction (the parallelism of reductions).
MAX_SLOTS = 64
#: Memory budget for all slots of one reduction, in bytes.
SLOT_BUDGET_BYTES = 64 * 2**20

FULL, TIED, DIAG, SPHERICAL = 0, 1, 2, 3

cdef enum:
    _BLOCK = 256
    _FULL = 0
    _TIED = 1
    _DIAG = 2
    _SPHERICAL = 3
cdef Py_ssize_t _MAX_SLOTS = 64
cdef Py_ssize_t _SLOT_BUDGET_BYTES = 64 * 2**20


# ---------------------------------------------------------------------------
# Python-level helpers (called once per kernel, with the GIL).  The blocking
# helpers duplicate those of kmeans.pyx (separate extension, same formulas).
# ---------------------------------------------------------------------------

cdef Py_ssize_t _n_blocks(Py_ssize_t n_samples):
    return (n_samples + _BLOCK - 1) // _BLOCK


cdef Py_ssize_t _n_slots(Py_ssize_t n_blocks, Py_ssize_t bytes_per_slot):
    """Number of reduction slots: a function of the problem size only."""
    cdef Py_ssize_t by_budget = max(1, _SLOT_BUDGET_BYTES // max(1, bytes_per_slot))
    return max(1, min(n_blocks, _MAX_SLOTS, by_budget))


cdef int _team_size(n_threads, Py_ssize_t n_items):
    """Threads to request: at least 1, never more than there are parallel items.

    The per-thread scratch buffers are indexed by ``threadid()``, which is always
    below the ``num_threads`` requested, so they are allocated for this many threads.
    """
    cdef Py_ssize_t n = int(n_threads)
    return <int>max(1, min(n, n_items))


cdef void _check(bint ok, str what) except *:
    if not ok:
        raise ValueError(f"fastem cython gaussian_mixture kernel: {what}")


cdef void* _alloc(size_t n_items, size_t item_size, bint zero) except NULL:
    """malloc/calloc of at least one item, raising MemoryError on failure."""
    cdef void* p
    if n_items < 1:
        n_items = 1
    p = calloc(n_items, item_size) if zero else malloc(n_items * item_size)
    if p == NULL:
        raise MemoryError()
    return p


cdef void _check_params(int kind, Py_ssize_t n_features, const floating[:, ::1] means,
                        const floating[:, :, ::1] pc, const double[::1] log_consts) except *:
    """Shapes of means, the canonical prec_chol and log_consts."""
    cdef Py_ssize_t n_components = means.shape[0]
    _check(0 <= kind <= 3, "unknown covariance kind")
    _check(means.shape[1] == n_features, "means and X have different n_features")
    _check(log_consts.shape[0] == n_components, "log_consts does not have n_components entries")
    if kind == _FULL:
        _check(pc.shape[0] == n_components and pc.shape[1] == n_features
               and pc.shape[2] == n_features, "prec_chol is not (n_components, D, D)")
    elif kind == _TIED:
        _check(pc.shape[0] == 1 and pc.shape[1] == n_features and pc.shape[2] == n_features,
               "prec_chol is not (D, D)")
    elif kind == _DIAG:
        _check(pc.shape[0] == n_components and pc.shape[1] == 1 and pc.shape[2] == n_features,
               "prec_chol is not (n_components, D)")
    else:
        _check(pc.shape[0] == n_components and pc.shape[1] == 1 and pc.shape[2] == 1,
               "prec_chol is not (n_components,)")


cdef double* _prepare(int kind, const floating[:, ::1] means,
                      const floating[:, :, ::1] pc) except NULL:
    """Per-kind float64 parameter table used inside the parallel loops.

    tied: ``(means @ U)^T`` (D x K; the product computed in the data dtype by one gemm,
    as numba's ``np.dot(means, U)``); diag and spherical: ``means^T`` (D x K); full:
    unused (one item).
    """
    cdef Py_ssize_t n_components = means.shape[0], n_features = means.shape[1]
    cdef Py_ssize_t k, j
    cdef double* table
    cdef floating* mu_u
    if kind == _FULL or n_components == 0 or n_features == 0:
        return <double*>_alloc(1, sizeof(double), True)
    table = <double*>_alloc(<size_t>n_features * n_components, sizeof(double), False)
    if kind == _TIED:
        mu_u = <floating*>_alloc(<size_t>n_components * n_features, sizeof(floating), False)
        try:
            _rows_times_square(&means[0, 0], <int>n_components, &pc[0, 0, 0],
                               <int>n_features, mu_u)
            for k in range(n_components):
                for j in range(n_features):
                    table[j * n_components + k] = <double>mu_u[k * n_features + j]
        finally:
            free(mu_u)
    else:
        for k in range(n_components):
            for j in range(n_features):
                table[j * n_components + k] = <double>means[k, j]
    return table


# ---------------------------------------------------------------------------
# nogil helpers
# ---------------------------------------------------------------------------

cdef inline void _rows_times_square(const floating* a, int n_rows, const floating* u,
                                    int n_features, floating* z) noexcept nogil:
    """``z = a @ u`` row-major: a (n_rows x D), u (D x D), z (n_rows x D).

    Column-major BLAS sees the row-major arrays transposed: ``z^T = u^T a^T``, i.e.
    transa='N', transb='N', m=D, n=n_rows, k=D, A=u, B=a.
    """
    cdef char trans = b'N'
    cdef int ld = n_features if n_features > 1 else 1
    cdef floating alpha = 1.0
    cdef floating beta = 0.0
    if floating is float:
        sgemm(&trans, &trans, &n_features, &n_rows, &n_features, &alpha,
              <float*>u, &ld, <float*>a, &ld, &beta, z, &ld)
    else:
        dgemm(&trans, &trans, &n_features, &n_rows, &n_features, &alpha,
              <double*>u, &ld, <double*>a, &ld, &beta, z, &ld)


cdef inline void _rows_times_square_t(const floating* a, int n_rows, const floating* u,
                                      int n_features, floating* zt) noexcept nogil:
    """``zt = (a @ u)^T`` row-major: a (n_rows x D), u (D x D), zt (D x n_rows).

    zt row-major is the column-major (n_rows x D) matrix ``a u``; column-major BLAS
    sees a as (D x n_rows) and u as u^T, so transa='T', transb='T', m=n_rows, n=D, k=D,
    ldc=n_rows.
    """
    cdef char trans = b'T'
    cdef int ld = n_features if n_features > 1 else 1
    cdef int ldc = n_rows if n_rows > 1 else 1
    cdef floating alpha = 1.0
    cdef floating beta = 0.0
    if floating is float:
        sgemm(&trans, &trans, &n_rows, &n_features, &n_features, &alpha,
              <float*>a, &ld, <float*>u, &ld, &beta, zt, &ldc)
    else:
        dgemm(&trans, &trans, &n_rows, &n_features, &n_features, &alpha,
              <double*>a, &ld, <double*>u, &ld, &beta, zt, &ldc)


cdef inline void _add_weighted_outer(const double* y, const double* yw, int n_rows,
                                     int n_features, double* c) noexcept nogil:
    """``c += yw^T @ y`` row-major: y, yw (n_rows x D), c (D x D); float64 gemm.

    Column-major: c^T += y^T yw with y^T = y seen as (D x n_rows) ('N') and yw = yw
    seen as (D x n_rows) transposed ('T'): m=D, n=D, k=n_rows.
    """
    cdef char transa = b'N'
    cdef char transb = b'T'
    cdef int ld = n_features if n_features > 1 else 1
    cdef double alpha = 1.0
    cdef double beta = 1.0
    dgemm(&transa, &transb, &n_features, &n_features, &n_rows, &alpha,
          <double*>y, &ld, <double*>yw, &ld, &beta, c, &ld)


cdef inline void _sum_sq_t(const floating* zt, Py_ssize_t m, Py_ssize_t n_features,
                           double* acc) noexcept nogil:
    """acc[i] = sum_j zt[j, i]^2 in float64 (feature order), zt (D x m) row-major."""
    cdef Py_ssize_t i, j
    cdef double v
    cdef const floating* row
    for i in range(m):
        acc[i] = 0.0
    for j in range(n_features):
        row = zt + j * m
        for i in range(m):
            v = <double>row[i]
            acc[i] += v * v


cdef void _log_prob_block(int kind, const floating* X, Py_ssize_t start, Py_ssize_t m,
                          const floating* means, const floating* pc, const double* table,
                          const double* log_consts, double* lp, floating* ybuf,
                          floating* zbuf, double* xt, double* acc,
                          Py_ssize_t n_components, Py_ssize_t n_features) noexcept nogil:
    """lp[i, k] = log_consts[k] - maha_k(x_{start+i}) / 2 for the block [start, start+m).

    lp is row-major with row stride n_components.  Scratch: ybuf, zbuf (BLOCK x D, data
    dtype), xt (BLOCK x D, float64), acc (BLOCK, float64).
    """
    cdef Py_ssize_t i, j, k
    cdef const floating* xb = X + start * n_features
    cdef const floating* mu
    cdef const floating* xr
    cdef floating* yr
    cdef const double* col
    cdef const double* zrow
    cdef double t, d, p, half = 0.5
    if kind == _FULL:
        for k in range(n_components):
            mu = means + k * n_features
            for i in range(m):
                xr = xb + i * n_features
                yr = ybuf + i * n_features
                for j in range(n_features):
                    yr[j] = xr[j] - mu[j]
            _rows_times_square_t(ybuf, <int>m, pc + k * n_features * n_features,
                                 <int>n_features, zbuf)
            _sum_sq_t(zbuf, m, n_features, acc)
            for i in range(m):
                lp[i * n_components + k] = log_consts[k] - half * acc[i]
    elif kind == _TIED:
        # (x - mu_k) U = x U - mu_k U: one gemm per block; table = (means @ U)^T
        _rows_times_square_t(xb, <int>m, pc, <int>n_features, zbuf)
        for j in range(n_features):  # zt in float64, reused for every component
            for i in range(m):
                xt[j * m + i] = <double>zbuf[j * m + i]
        for k in range(n_components):
            for i in range(m):
                acc[i] = 0.0
            for j in range(n_features):
                t = table[j * n_components + k]
                zrow = xt + j * m
                for i in range(m):
                    d = zrow[i] - t
                    acc[i] += d * d
            for i in range(m):
                lp[i * n_components + k] = log_consts[k] - half * acc[i]
    else:
        # diag / spherical: float64 transposed copy of the block, xt[j, i] = x_ij
        for i in range(m):
            xr = xb + i * n_features
            for j in range(n_features):
                xt[j * m + i] = <double>xr[j]
        for k in range(n_components):
            for i in range(m):
                acc[i] = 0.0
            if kind == _DIAG:
                for j in range(n_features):
                    t = table[j * n_components + k]
                    p = <double>pc[k * n_features + j]
                    zrow = xt + j * m
                    for i in range(m):
                        d = (zrow[i] - t) * p
                        acc[i] += d * d
                for i in range(m):
                    lp[i * n_components + k] = log_consts[k] - half * acc[i]
            else:
                for j in range(n_features):
                    t = table[j * n_components + k]
                    zrow = xt + j * m
                    for i in range(m):
                        d = zrow[i] - t
                        acc[i] += d * d
                p = <double>pc[k]
                for i in range(m):
                    lp[i * n_components + k] = log_consts[k] - half * acc[i] * p * p


cdef inline double _logsumexp_row(const double* row, Py_ssize_t n_components) noexcept nogil:
    """log sum_k exp(row[k]), subtracting the maximum; -inf for an all -inf row."""
    cdef double top = -INFINITY, acc = 0.0
    cdef Py_ssize_t k
    for k in range(n_components):
        if row[k] > top:
            top = row[k]
    if top == -INFINITY:
        return -INFINITY
    for k in range(n_components):
        acc += exp(row[k] - top)
    return top + log(acc)


cdef double _stats_slot(int kind, const floating* X, const double* sample_weight,
                        const floating* means, const floating* pc, const double* table,
                        const double* log_consts, const floating* shift,
                        double* lp, floating* ybuf, floating* zbuf, double* xt, double* acc,
                        double* y64, double* yw64,
                        double* p_nk, double* p_x, double* p_xx,
                        Py_ssize_t start, Py_ssize_t stop,
                        Py_ssize_t n_components, Py_ssize_t n_features) noexcept nogil:
    """Fused E/M statistics of samples [start, stop) into this slot's (zeroed) partials.

    Returns the slot's ``sum_i w_i log p(x_i)`` (-inf if a row of zero density has
    positive weight).
    """
    cdef double ll = 0.0, lse, w, total, wr, y, s
    cdef Py_ssize_t b_start, b_stop, m, i, j, k
    cdef double* row
    cdef double* xk
    cdef double* xxk
    cdef double* yr
    cdef double* ywr
    cdef const floating* xr
    cdef const floating* sk
    b_start = start
    while b_start < stop:
        b_stop = b_start + _BLOCK if b_start + _BLOCK < stop else stop
        m = b_stop - b_start
        _log_prob_block(kind, X, b_start, m, means, pc, table, log_consts, lp, ybuf, zbuf,
                        xt, acc, n_components, n_features)
        # E-step: lp becomes w_i * r_ik (0 for rows with zero density)
        for i in range(m):
            row = lp + i * n_components
            lse = _logsumexp_row(row, n_components)
            w = sample_weight[b_start + i]
            if lse == -INFINITY:
                for k in range(n_components):
                    row[k] = 0.0
                if w > 0:
                    ll = -INFINITY
                continue
            ll += w * lse
            for k in range(n_components):
                row[k] = w * exp(row[k] - lse)
        # M-step statistics around the shift, component by component
        for k in range(n_components):
            total = 0.0
            for i in range(m):
                total += lp[i * n_components + k]
            if total == 0.0:
                continue
            p_nk[k] += total
            sk = shift + k * n_features
            xk = p_x + k * n_features
            if kind == _FULL or kind == _TIED:
                for i in range(m):
                    wr = lp[i * n_components + k]
                    xr = X + (b_start + i) * n_features
                    yr = y64 + i * n_features
                    ywr = yw64 + i * n_features
                    for j in range(n_features):
                        y = <double>xr[j] - <double>sk[j]
                        yr[j] = y
                        ywr[j] = wr * y
                        xk[j] += wr * y
                xxk = p_xx + k * n_features * n_features if kind == _FULL else p_xx
                _add_weighted_outer(y64, yw64, <int>m, <int>n_features, xxk)
            elif kind == _DIAG:
                xxk = p_xx + k * n_features
                for i in range(m):
                    wr = lp[i * n_components + k]
                    xr = X + (b_start + i) * n_features
                    for j in range(n_features):
                        y = <double>xr[j] - <double>sk[j]
                        xk[j] += wr * y
                        xxk[j] += (wr * y) * y
            else:
                for i in range(m):
                    wr = lp[i * n_components + k]
                    xr = X + (b_start + i) * n_features
                    s = 0.0
                    for j in range(n_features):
                        y = <double>xr[j] - <double>sk[j]
                        xk[j] += wr * y
                        s += (wr * y) * y
                    p_xx[k] += s
        b_start = b_stop
    return ll


cdef inline Py_ssize_t _slot_start(Py_ssize_t slot, Py_ssize_t n_slots,
                                   Py_ssize_t n_blocks) noexcept nogil:
    """First sample of a slot; slot s covers blocks [s*nb//ns, (s+1)*nb//ns)."""
    return (slot * n_blocks // n_slots) * _BLOCK


cdef inline Py_ssize_t _slot_stop(Py_ssize_t slot, Py_ssize_t n_slots, Py_ssize_t n_blocks,
                                  Py_ssize_t n_samples) noexcept nogil:
    """One past the last sample of a slot (a contiguous run of whole blocks)."""
    cdef Py_ssize_t stop = ((slot + 1) * n_blocks // n_slots) * _BLOCK
    return stop if stop < n_samples else n_samples


# ---------------------------------------------------------------------------
# Generic kernels (canonical 3-D prec_chol / sum_xx, int kind)
# ---------------------------------------------------------------------------

def _estimate_log_prob(int kind, const floating[:, ::1] X, const floating[:, ::1] means,
                       const floating[:, :, ::1] pc, const double[::1] log_consts,
                       double[:, ::1] out, n_threads):
    cdef Py_ssize_t n_samples = X.shape[0], n_features = X.shape[1]
    cdef Py_ssize_t n_components = means.shape[0]
    _check_params(kind, n_features, means, pc, log_consts)
    _check(out.shape[0] == n_samples and out.shape[1] == n_components,
           "out is not (n_samples, n_components)")
    if n_samples == 0 or n_components == 0:
        return

    cdef Py_ssize_t n_blocks = _n_blocks(n_samples)
    cdef int n_team = _team_size(n_threads, n_blocks)
    cdef Py_ssize_t b, start, stop, tid
    cdef Py_ssize_t fbuf = <Py_ssize_t>_BLOCK * n_features
    cdef double* table = NULL
    cdef floating* ybuf = NULL
    cdef floating* zbuf = NULL
    cdef double* xt = NULL
    cdef double* acc = NULL
    try:
        table = _prepare(kind, means, pc)
        ybuf = <floating*>_alloc(<size_t>n_team * fbuf, sizeof(floating), False)
        zbuf = <floating*>_alloc(<size_t>n_team * fbuf, sizeof(floating), False)
        xt = <double*>_alloc(<size_t>n_team * fbuf, sizeof(double), False)
        acc = <double*>_alloc(<size_t>n_team * _BLOCK, sizeof(double), False)
        for b in prange(n_blocks, nogil=True, schedule='static', num_threads=n_team):
            tid = threadid()
            start = b * _BLOCK
            stop = start + _BLOCK if start + _BLOCK < n_samples else n_samples
            _log_prob_block(kind, &X[0, 0], start, stop - start, &means[0, 0], &pc[0, 0, 0],
                            table, &log_consts[0], &out[start, 0],
                            ybuf + tid * fbuf, zbuf + tid * fbuf, xt + tid * fbuf,
                            acc + tid * _BLOCK, n_components, n_features)
    finally:
        free(table)
        free(ybuf)
        free(zbuf)
        free(xt)
        free(acc)


def _estimate_log_norm(int kind, const floating[:, ::1] X, const floating[:, ::1] means,
                       const floating[:, :, ::1] pc, const double[::1] log_consts,
                       double[::1] log_norm, int[::1] labels, n_threads):
    cdef Py_ssize_t n_samples = X.shape[0], n_features = X.shape[1]
    cdef Py_ssize_t n_components = means.shape[0]
    _check_params(kind, n_features, means, pc, log_consts)
    _check(log_norm.shape[0] == n_samples and labels.shape[0] == n_samples,
           "log_norm / labels do not have n_samples entries")
    if n_samples == 0:
        return
    _check(n_components >= 1, "need at least one component")

    cdef Py_ssize_t n_blocks = _n_blocks(n_samples)
    cdef int n_team = _team_size(n_threads, n_blocks)
    cdef Py_ssize_t b, start, stop, tid, i, k, best
    cdef Py_ssize_t fbuf = <Py_ssize_t>_BLOCK * n_features
    cdef Py_ssize_t lbuf = <Py_ssize_t>_BLOCK * n_components
    cdef double* row
    cdef double* table = NULL
    cdef double* lp = NULL
    cdef floating* ybuf = NULL
    cdef floating* zbuf = NULL
    cdef double* xt = NULL
    cdef double* acc = NULL
    try:
        table = _prepare(kind, means, pc)
        lp = <double*>_alloc(<size_t>n_team * lbuf, sizeof(double), False)
        ybuf = <floating*>_alloc(<size_t>n_team * fbuf, sizeof(floating), False)
        zbuf = <floating*>_alloc(<size_t>n_team * fbuf, sizeof(floating), False)
        xt = <double*>_alloc(<size_t>n_team * fbuf, sizeof(double), False)
        acc = <double*>_alloc(<size_t>n_team * _BLOCK, sizeof(double), False)
        for b in prange(n_blocks, nogil=True, schedule='static', num_threads=n_team):
            tid = threadid()
            start = b * _BLOCK
            stop = start + _BLOCK if start + _BLOCK < n_samples else n_samples
            _log_prob_block(kind, &X[0, 0], start, stop - start, &means[0, 0], &pc[0, 0, 0],
                            table, &log_consts[0], lp + tid * lbuf,
                            ybuf + tid * fbuf, zbuf + tid * fbuf, xt + tid * fbuf,
                            acc + tid * _BLOCK, n_components, n_features)
            for i in range(stop - start):
                row = lp + tid * lbuf + i * n_components
                log_norm[start + i] = _logsumexp_row(row, n_components)
                best = 0
                for k in range(1, n_components):
                    if row[k] > row[best]:
                        best = k
                labels[start + i] = <int>best
    finally:
        free(table)
        free(lp)
        free(ybuf)
        free(zbuf)
        free(xt)
        free(acc)


def _accumulate_stats(int kind, const floating[:, ::1] X, const double[::1] sample_weight,
                      const floating[:, ::1] means, const floating[:, :, ::1] pc,
                      const double[::1] log_consts, const floating[:, ::1] shift,
                      double[::1] nk, double[:, ::1] sum_x, double[:, :, ::1] sum_xx,
                      n_threads):
    cdef Py_ssize_t n_samples = X.shape[0], n_features = X.shape[1]
    cdef Py_ssize_t n_components = means.shape[0]
    _check_params(kind, n_features, means, pc, log_consts)
    _check(sample_weight.shape[0] == n_samples, "sample_weight does not have n_samples entries")
    _check(shift.shape[0] == n_components and shift.shape[1] == n_features,
           "shift does not have the shape of means")
    _check(nk.shape[0] == n_components, "nk does not have n_components entries")
    _check(sum_x.shape[0] == n_components and sum_x.shape[1] == n_features,
           "sum_x does not have the shape of means")
    # the canonical second-moment buffer has the canonical shape of prec_chol
    _check(sum_xx.shape[0] == pc.shape[0] and sum_xx.shape[1] == pc.shape[1]
           and sum_xx.shape[2] == pc.shape[2],
           "sum_xx does not have the shape of the second moments")
    if n_samples > 0:
        _check(n_components >= 1, "need at least one component")

    cdef Py_ssize_t xx_size = sum_xx.shape[0] * sum_xx.shape[1] * sum_xx.shape[2]
    cdef Py_ssize_t x_size = n_components * n_features
    cdef Py_ssize_t n_blocks = _n_blocks(n_samples)
    cdef Py_ssize_t n_slots = _n_slots(n_blocks, 8 * (1 + n_components * (1 + n_features)
                                                     + xx_size))
    cdef int n_team = _team_size(n_threads, n_slots)
    cdef Py_ssize_t slot, start, stop, tid, s, q
    cdef Py_ssize_t fbuf = <Py_ssize_t>_BLOCK * n_features
    cdef Py_ssize_t lbuf = <Py_ssize_t>_BLOCK * n_components
    cdef double ll = 0.0, total
    cdef double* table = NULL
    cdef double* lp = NULL
    cdef floating* ybuf = NULL
    cdef floating* zbuf = NULL
    cdef double* xt = NULL
    cdef double* acc = NULL
    cdef double* y64 = NULL
    cdef double* yw64 = NULL
    cdef double* part_ll = NULL
    cdef double* part_nk = NULL
    cdef double* part_x = NULL
    cdef double* part_xx = NULL
    cdef double* out_x
    cdef double* out_xx
    try:
        # per-slot partial results, zeroed: slot s owns row s of each
        part_ll = <double*>_alloc(n_slots, sizeof(double), True)
        part_nk = <double*>_alloc(<size_t>n_slots * n_components, sizeof(double), True)
        part_x = <double*>_alloc(<size_t>n_slots * x_size, sizeof(double), True)
        part_xx = <double*>_alloc(<size_t>n_slots * xx_size, sizeof(double), True)
        if n_samples > 0:
            table = _prepare(kind, means, pc)
            lp = <double*>_alloc(<size_t>n_team * lbuf, sizeof(double), False)
            ybuf = <floating*>_alloc(<size_t>n_team * fbuf, sizeof(floating), False)
            zbuf = <floating*>_alloc(<size_t>n_team * fbuf, sizeof(floating), False)
            xt = <double*>_alloc(<size_t>n_team * fbuf, sizeof(double), False)
            acc = <double*>_alloc(<size_t>n_team * _BLOCK, sizeof(double), False)
            y64 = <double*>_alloc(<size_t>n_team * fbuf, sizeof(double), False)
            yw64 = <double*>_alloc(<size_t>n_team * fbuf, sizeof(double), False)
            for slot in prange(n_slots, nogil=True, schedule='static', num_threads=n_team):
                tid = threadid()
                start = _slot_start(slot, n_slots, n_blocks)
                stop = _slot_stop(slot, n_slots, n_blocks, n_samples)
                part_ll[slot] = _stats_slot(
                    kind, &X[0, 0], &sample_weight[0], &means[0, 0], &pc[0, 0, 0], table,
                    &log_consts[0], &shift[0, 0], lp + tid * lbuf, ybuf + tid * fbuf,
                    zbuf + tid * fbuf, xt + tid * fbuf, acc + tid * _BLOCK,
                    y64 + tid * fbuf, yw64 + tid * fbuf,
                    part_nk + slot * n_components, part_x + slot * x_size,
                    part_xx + slot * xx_size, start, stop, n_components, n_features)
        # fixed slot order: bit-identical for any thread count
        with nogil:
            for s in range(n_slots):
                ll = ll + part_ll[s]
            for q in range(n_components):
                total = 0.0
                for s in range(n_slots):
                    total = total + part_nk[s * n_components + q]
                nk[q] = total
            out_x = &sum_x[0, 0] if x_size > 0 else NULL
            for q in range(x_size):
                total = 0.0
                for s in range(n_slots):
                    total = total + part_x[s * x_size + q]
                out_x[q] = total
            out_xx = &sum_xx[0, 0, 0] if xx_size > 0 else NULL
            for q in range(xx_size):
                total = 0.0
                for s in range(n_slots):
                    total = total + part_xx[s * xx_size + q]
                out_xx[q] = total
    finally:
        free(part_ll)
        free(part_nk)
        free(part_x)
        free(part_xx)
        free(table)
        free(lp)
        free(ybuf)
        free(zbuf)
        free(xt)
        free(acc)
        free(y64)
        free(yw64)
    return ll


# ---------------------------------------------------------------------------
# Public per-type kernels
# ---------------------------------------------------------------------------

def _canonical(int kind, a, Py_ssize_t n_components, Py_ssize_t n_features):
    """Reshape prec_chol (or a second-moment buffer) to the canonical 3-D view."""
    if kind == _FULL:
        shape = (n_components, n_features, n_features)
    elif kind == _TIED:
        shape = (1, n_features, n_features)
    elif kind == _DIAG:
        shape = (n_components, 1, n_features)
    else:
        shape = (n_components, 1, 1)
    return a.reshape(shape)


def _canonical_out(int kind, sum_xx, Py_ssize_t n_components, Py_ssize_t n_features):
    """Canonical view of the sum_xx output buffer; it must be a view, never a copy."""
    if not (isinstance(sum_xx, np.ndarray) and sum_xx.flags.c_contiguous):
        raise ValueError("fastem cython gaussian_mixture kernel: sum_xx must be a "
                         "C-contiguous ndarray")
    return _canonical(kind, sum_xx, n_components, n_features)


def _make(int kind, str cov):
    # Small parameter inputs of any layout are made C-contiguous (a no-op when they are
    # already, copies of K x D sized arrays otherwise, as numba accepts any layout);
    # X must be C-contiguous and outputs must be C-contiguous (written in place).
    _c = np.ascontiguousarray

    def estimate_log_prob(X, means, prec_chol, log_consts, out, n_threads):
        means = _c(means)
        pc = _c(_canonical(kind, prec_chol, means.shape[0], means.shape[1]))
        _estimate_log_prob(kind, X, means, pc, _c(log_consts), out, n_threads)

    def estimate_log_norm(X, means, prec_chol, log_consts, log_norm, labels, n_threads):
        means = _c(means)
        pc = _c(_canonical(kind, prec_chol, means.shape[0], means.shape[1]))
        _estimate_log_norm(kind, X, means, pc, _c(log_consts), log_norm, labels, n_threads)

    def accumulate_stats(X, sample_weight, means, prec_chol, log_consts, shift, nk, sum_x,
                         sum_xx, n_threads):
        means = _c(means)
        pc = _c(_canonical(kind, prec_chol, means.shape[0], means.shape[1]))
        xx = _canonical_out(kind, sum_xx, means.shape[0], means.shape[1])  # written in place
        return _accumulate_stats(kind, X, _c(sample_weight), means, pc, _c(log_consts),
                                 _c(shift), nk, sum_x, xx, n_threads)

    for f, name in ((estimate_log_prob, "estimate_log_prob"),
                    (estimate_log_norm, "estimate_log_norm"),
                    (accumulate_stats, "accumulate_stats")):
        f.__name__ = f.__qualname__ = f"{name}_{cov}"
        f.__doc__ = f"``{name}_<cov>`` for ``cov={cov!r}`` (see the reference contract)."
    return estimate_log_prob, estimate_log_norm, accumulate_stats


(estimate_log_prob_full, estimate_log_norm_full, accumulate_stats_full) = _make(_FULL, "full")
(estimate_log_prob_tied, estimate_log_norm_tied, accumulate_stats_tied) = _make(_TIED, "tied")
(estimate_log_prob_diag, estimate_log_norm_diag, accumulate_stats_diag) = _make(_DIAG, "diag")
(estimate_log_prob_spherical, estimate_log_norm_spherical,
 accumulate_stats_spherical) = _make(_SPHERICAL, "spherical")
