# Blocking, allocation and argument-check helpers shared by the Cython kernels
# (kmeans.pyx, gaussian_mixture.pyx); cimported, so no module of its own.
#
# Determinism: samples are cut into fixed blocks of _BLOCK; a reduction maps contiguous
# runs of whole blocks onto _n_slots(...) slots, a function of the problem size only,
# never of the thread count.  Each slot is reduced serially by one thread into its own
# partial results, and _sum_slots adds the slots in slot order after the parallel loop.

from cython cimport floating
from libc.math cimport INFINITY, exp, log
from libc.stdlib cimport calloc, malloc
from scipy.linalg.cython_blas cimport dgemm, sgemm

cdef extern from "_fastem.h":  # the C macros of every kernel module (FASTEM_CLONES, ...)
    int FASTEM_COMPILED_WITH_OPENMP

cdef enum:
    # The determinism constants of fastem/kernels/_determinism.py (the one source; the
    # contract tests check that these agree with it).
    # Samples per block. Blocks are fixed by the data size alone, never by the thread count.
    _BLOCK = 256
    # At most this many partial-result slots per reduction (the parallelism of reductions).
    _MAX_SLOTS = 64
    # Memory budget for all slots of one reduction, in bytes (64 MiB).
    _SLOT_BUDGET_BYTES = 64 * 1024 * 1024


# ---------------------------------------------------------------------------
# Python-level helpers (called once per kernel, with the GIL)
# ---------------------------------------------------------------------------

cdef inline Py_ssize_t _n_blocks(Py_ssize_t n_samples):
    return (n_samples + _BLOCK - 1) // _BLOCK


cdef inline Py_ssize_t _n_slots(Py_ssize_t n_blocks, Py_ssize_t bytes_per_slot):
    """Number of reduction slots: a function of the problem size only."""
    cdef Py_ssize_t by_budget = max(1, <Py_ssize_t>_SLOT_BUDGET_BYTES // max(1, bytes_per_slot))
    return max(1, min(n_blocks, <Py_ssize_t>_MAX_SLOTS, by_budget))


cdef inline int _team_size(n_threads, Py_ssize_t n_items):
    """Threads to request: at least 1, never more than there are parallel items.

    The per-thread scratch buffers are indexed by ``threadid()``, which is always
    below the ``num_threads`` requested, so they are allocated for this many threads.
    """
    cdef Py_ssize_t n = int(n_threads)
    return <int>max(1, min(n, n_items))


cdef inline void _check_arg(str family, bint ok, str what) except *:
    """Raise the kernel family's ValueError unless ``ok``."""
    if not ok:
        raise ValueError(f"fastem cython {family} kernel: {what}")


cdef inline void* _alloc(size_t n_items, size_t item_size, bint zero) except NULL:
    """malloc/calloc of at least one item, raising MemoryError on failure."""
    cdef void* p
    if n_items < 1:
        n_items = 1
    p = calloc(n_items, item_size) if zero else malloc(n_items * item_size)
    if p == NULL:
        raise MemoryError()
    return p


# ---------------------------------------------------------------------------
# nogil helpers
# ---------------------------------------------------------------------------

cdef inline void _gemm(char transa, char transb, int m, int n, int k, const floating* a,
                       int lda, const floating* b, int ldb, double beta, floating* c,
                       int ldc) noexcept nogil:
    """Column-major BLAS ``c = op(a) op(b) + beta c``: sgemm or dgemm for the dtype."""
    cdef floating alpha = 1.0
    cdef floating beta_f = <floating>beta
    if floating is float:
        sgemm(&transa, &transb, &m, &n, &k, &alpha, <float*>a, &lda, <float*>b, &ldb,
              &beta_f, c, &ldc)
    else:
        dgemm(&transa, &transb, &m, &n, &k, &alpha, <double*>a, &lda, <double*>b, &ldb,
              &beta_f, c, &ldc)


cdef inline Py_ssize_t _block_stop(Py_ssize_t start, Py_ssize_t stop) noexcept nogil:
    """One past the last sample of the block starting at ``start`` (cut at ``stop``)."""
    return start + _BLOCK if start + _BLOCK < stop else stop


cdef inline Py_ssize_t _slot_start(Py_ssize_t slot, Py_ssize_t n_slots,
                                   Py_ssize_t n_blocks) noexcept nogil:
    """First sample of a slot; slot s covers blocks [s*nb//ns, (s+1)*nb//ns)."""
    return (slot * n_blocks // n_slots) * _BLOCK


cdef inline Py_ssize_t _slot_stop(Py_ssize_t slot, Py_ssize_t n_slots, Py_ssize_t n_blocks,
                                  Py_ssize_t n_samples) noexcept nogil:
    """One past the last sample of a slot (a contiguous run of whole blocks)."""
    cdef Py_ssize_t stop = ((slot + 1) * n_blocks // n_slots) * _BLOCK
    return stop if stop < n_samples else n_samples


cdef inline void _sum_slots(const double* part, Py_ssize_t n_slots, Py_ssize_t size,
                            double* out) noexcept nogil:
    """``out[q] = sum_s part[s * size + q]`` for q < size: slot s owns row s of ``part``.

    The slots are added in slot order, starting from 0.0: bit-identical for any thread
    count.  Slot-major, so each slot's row is read contiguously.  ``out`` may be NULL
    when ``size`` is 0.
    """
    cdef Py_ssize_t q, s
    cdef const double* row
    for q in range(size):
        out[q] = 0.0
    for s in range(n_slots):
        row = part + s * size
        for q in range(size):
            out[q] = out[q] + row[q]


# ---------------------------------------------------------------------------
# log space (mixtures): the same helpers as numba/_logspace.py
# ---------------------------------------------------------------------------

cdef inline double _exp_or_zero(double d) noexcept nogil:
    """exp(d), or an exact zero for d <= -700 (exp < 1e-304): next to the row maximum's
    exp(0) = 1 such a term cannot change a sum, and as a responsibility it would reach
    the statistics as a subnormal number, whose arithmetic is ~100x slower.  (A literal,
    not a module variable: this .pxd has no module to hold one.)"""
    return exp(d) if d > -700.0 else 0.0


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
        acc += _exp_or_zero(row[k] - top)
    return top + log(acc)


cdef inline int _argmax_row(const double* row, Py_ssize_t n_components) noexcept nogil:
    """The most probable component of a row (lowest index on ties)."""
    cdef Py_ssize_t k, best = 0
    for k in range(1, n_components):
        if row[k] > row[best]:
            best = k
    return <int>best


cdef inline void _log_norm_rows(const double* lp, Py_ssize_t m, Py_ssize_t n_components,
                                double* log_norm, int* labels) noexcept nogil:
    """log_norm[i] / labels[i] of rows [0, m) of lp (row stride n_components)."""
    cdef Py_ssize_t i
    for i in range(m):
        log_norm[i] = _logsumexp_row(lp + i * n_components, n_components)
        labels[i] = _argmax_row(lp + i * n_components, n_components)


cdef inline double _weighted_resp_row(double* row, Py_ssize_t n_components,
                                      double w) noexcept nogil:
    """Turn a row of log joint densities into w * responsibilities; return its
    logsumexp.  One exp per entry: r_k = e_k / sum_k e_k with e_k = exp(row_k - max).
    An all -inf row (zero density) gets zero responsibilities and returns -inf."""
    cdef double top = -INFINITY, acc = 0.0, e, scale
    cdef Py_ssize_t k
    for k in range(n_components):
        if row[k] > top:
            top = row[k]
    if top == -INFINITY:
        for k in range(n_components):
            row[k] = 0.0
        return -INFINITY
    for k in range(n_components):
        e = _exp_or_zero(row[k] - top)
        row[k] = e
        acc += e
    scale = w / acc
    for k in range(n_components):
        row[k] *= scale
    return top + log(acc)


cdef inline double _block_responsibilities(double* lp, Py_ssize_t m, Py_ssize_t n_components,
                                           const double* sample_weight,
                                           double* nk_row) noexcept nogil:
    """E-step of a block: rows [0, m) of lp (row stride n_components) become
    w_i * r_ik, their column sums are added to nk_row, and the block's
    sum_i w_i log p(x_i) is returned (-inf if a row of positive weight has zero density;
    such a row gets no responsibility).  sample_weight points at the block's first."""
    cdef double ll = 0.0, lse, w, total
    cdef Py_ssize_t i, k
    for i in range(m):
        w = sample_weight[i]
        lse = _weighted_resp_row(lp + i * n_components, n_components, w)
        if lse == -INFINITY:
            if w > 0:
                ll = -INFINITY
            continue
        ll += w * lse
    for k in range(n_components):
        total = 0.0
        for i in range(m):
            total += lp[i * n_components + k]
        nk_row[k] += total
    return ll


cdef inline void _add_weighted_outer(const double* y, const double* yw, int n_rows,
                                     int n_features, double* c) noexcept nogil:
    """``c += yw^T @ y`` row-major: y, yw (n_rows x D), c (D x D); float64 gemm.

    Column-major: c^T += y^T yw with y^T = y seen as (D x n_rows) ('N') and yw = yw
    seen as (D x n_rows) transposed ('T'): m=D, n=D, k=n_rows.
    """
    cdef int ld = n_features if n_features > 1 else 1
    _gemm(c'N', c'T', n_features, n_features, n_rows, y, ld, yw, ld, 1.0, c, ld)
