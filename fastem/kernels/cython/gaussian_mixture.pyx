"""Gaussian mixture kernels, Cython backend. Same names and signatures as
``reference/gaussian_mixture.py`` (see its docstring for the contract).

This mirrors ``numba/gaussian_mixture.py`` step for step: one generic typed kernel
per job (log densities, log normaliser, fused statistics) with an int ``kind``
constant, on the canonical 3-D shapes of the precision factors and the second-moment
buffer (views, no copies; see ``_covariance.py``), whose ``export_kernels`` defines the
twelve public per-type kernels from them.

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
* spherical: ``p_k^2 sum_j (x_j - mu_kj)^2`` in float64;
* diag and spherical, while the precision bound of ``_covariance.py`` holds: the
  expanded form ``[y, y^2] @ B + offset`` (y = x - c, float64) by one gemm per block,
  with the operands of ``_covariance.expanded_form``.

The gemm products are stored transposed (features x block rows) and diag/spherical
read a float64 transposed copy of the block, so that every squared-distance sum runs
over features in order, for all the rows of a block at once (independent, vectorisable
accumulators; the summation order per sample is the plain feature order).

Second moments for full/tied use one float64 gemm per block and component,
``(w r y)^T y`` with ``y = x - shift_k`` (inner dimension = block rows), accumulated
into the slot's partial matrix; a component whose total responsibility in the block is
exactly 0 is skipped (as numba does).  In the expanded form the statistics of a block
are one gemm, ``(w r)^T [y, y^2]`` around c, turned into statistics around the shift
once at the end (``_unexpand_stats``).

Compiler directives (boundscheck, wraparound, cdivision, language_level) are set in
``setup.py``.  Because bounds checking is off, each kernel checks the shapes of its
arguments once before entering ``nogil`` code.
"""

import numpy as np

from cython cimport floating
from cython.parallel cimport prange, threadid

from libc.stdlib cimport free
from libc.string cimport memset

from fastem.kernels.cython._common cimport (
    _BLOCK, _MAX_SLOTS, _SLOT_BUDGET_BYTES, FASTEM_COMPILED_WITH_OPENMP, _add_weighted_outer,
    _alloc, _block_responsibilities, _block_stop, _check_arg, _gemm, _log_norm_rows, _n_blocks,
    _n_slots, _slot_start, _slot_stop, _sum_slots, _team_size)

from fastem.kernels._covariance import (COVARIANCE_TYPES, DIAG, FULL, SPHERICAL, TIED,
                                        export_kernels)

#: True iff this module was compiled with OpenMP (otherwise every prange runs serially).
OPENMP = bool(FASTEM_COMPILED_WITH_OPENMP)
#: Samples per block, slots per reduction at most, and the memory budget in bytes of
#: all slots of one reduction (see ``_common.pxd``).
BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES = _BLOCK, _MAX_SLOTS, _SLOT_BUDGET_BYTES

# the covariance kinds of _covariance.py, as C constants for the nogil code
cdef enum:
    _FULL = 0
    _TIED = 1
    _DIAG = 2
    _SPHERICAL = 3

assert (_FULL, _TIED, _DIAG, _SPHERICAL) == (FULL, TIED, DIAG, SPHERICAL), \
    "the C covariance kinds differ from fastem/kernels/_covariance.py"


# ---------------------------------------------------------------------------
# Python-level helpers (called once per kernel, with the GIL); the blocking and
# allocation helpers are in _common.pxd
# ---------------------------------------------------------------------------

cdef inline void _check(bint ok, str what) except *:
    _check_arg("gaussian_mixture", ok, what)


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
    cdef int ld = n_features if n_features > 1 else 1
    _gemm(c'N', c'N', n_features, n_rows, n_features, u, ld, a, ld, 0.0, z, ld)


cdef inline void _rows_times_square_t(const floating* a, int n_rows, const floating* u,
                                      int n_features, floating* zt) noexcept nogil:
    """``zt = (a @ u)^T`` row-major: a (n_rows x D), u (D x D), zt (D x n_rows).

    zt row-major is the column-major (n_rows x D) matrix ``a u``; column-major BLAS
    sees a as (D x n_rows) and u as u^T, so transa='T', transb='T', m=n_rows, n=D, k=D,
    ldc=n_rows.
    """
    cdef int ld = n_features if n_features > 1 else 1
    cdef int ldc = n_rows if n_rows > 1 else 1
    _gemm(c'T', c'T', n_rows, n_features, n_features, a, ld, u, ld, 0.0, zt, ldc)


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


cdef inline void _sum_sq_diff_t(const double* xt, Py_ssize_t m, const double* table,
                                Py_ssize_t k, Py_ssize_t n_components,
                                Py_ssize_t n_features, double* acc) noexcept nogil:
    """acc[i] = sum_j (xt[j, i] - table[j, k])^2 in float64 (feature order); xt (D x m)
    and table (D x K) row-major."""
    cdef Py_ssize_t i, j
    cdef double t, d
    cdef const double* zrow
    for i in range(m):
        acc[i] = 0.0
    for j in range(n_features):
        t = table[j * n_components + k]
        zrow = xt + j * m
        for i in range(m):
            d = zrow[i] - t
            acc[i] += d * d


cdef struct _Scratch:
    # Buffers of the block kernels: the parameter table, shared by all threads, and
    # n_team per-thread slices of every other buffer, thread tid's at tid * stride.
    Py_ssize_t fbuf     # stride of ybuf, zbuf, xt, y64, yw64: BLOCK x D items
    Py_ssize_t lbuf     # stride of lp: BLOCK x K items
    double* table       # per-kind parameter table of _prepare, read-only
    double* lp          # BLOCK x K float64: log densities, then w r (log_norm, stats)
    void* ybuf          # BLOCK x D, data dtype: x - mu_k (full)
    void* zbuf          # D x BLOCK, data dtype: gemm products (full, tied)
    double* xt          # D x BLOCK float64: z (tied) or the block (diag, spherical)
    double* acc         # BLOCK float64 squared-distance sums (stride BLOCK)
    double* y64         # BLOCK x D float64: x - shift_k (stats)
    double* yw64        # BLOCK x D float64: w r (x - shift_k) (stats)
    # the expanded form (diag/spherical; see _covariance.expanded_form)
    bint expanded
    const double* ex_c      # D: the common centre c
    const double* ex_B      # 2D x K row-major
    const double* ex_const  # K
    double* z64             # BLOCK x 2D float64: [y, y^2] with y = x - c


cdef void _scratch_alloc(_Scratch* sc, int kind, const floating[:, ::1] means,
                         const floating[:, :, ::1] pc, int n_team, bint with_lp,
                         bint with_moments, bint expanded, const double[::1] c,
                         const double[:, ::1] B, const double[::1] offset) except *:
    """Allocate ``*sc`` (zeroed by the caller) for n_team threads; lp only if with_lp,
    y64 and yw64 only if with_moments (and not expanded), z64 only if expanded (which
    keeps pointers to c, B and offset: they must outlive the kernel call).

    On error the buffers already allocated are in ``*sc``, for ``_scratch_free``.
    """
    cdef Py_ssize_t n_components = means.shape[0], n_features = means.shape[1]
    sc.fbuf = <Py_ssize_t>_BLOCK * n_features
    sc.lbuf = <Py_ssize_t>_BLOCK * n_components
    sc.table = _prepare(kind, means, pc)
    if with_lp:
        sc.lp = <double*>_alloc(<size_t>n_team * sc.lbuf, sizeof(double), False)
    sc.ybuf = _alloc(<size_t>n_team * sc.fbuf, sizeof(floating), False)
    sc.zbuf = _alloc(<size_t>n_team * sc.fbuf, sizeof(floating), False)
    sc.xt = <double*>_alloc(<size_t>n_team * sc.fbuf, sizeof(double), False)
    sc.acc = <double*>_alloc(<size_t>n_team * _BLOCK, sizeof(double), False)
    if with_moments and not expanded:
        sc.y64 = <double*>_alloc(<size_t>n_team * sc.fbuf, sizeof(double), False)
        sc.yw64 = <double*>_alloc(<size_t>n_team * sc.fbuf, sizeof(double), False)
    if expanded:
        n_components, n_features = means.shape[0], means.shape[1]
        _check(c.shape[0] == n_features and B.shape[0] == 2 * n_features
               and B.shape[1] == n_components and offset.shape[0] == n_components,
               "expanded-form operands have the wrong shapes")
        sc.expanded = True
        sc.ex_c = &c[0]
        sc.ex_B = &B[0, 0]
        sc.ex_const = &offset[0]
        sc.z64 = <double*>_alloc(<size_t>n_team * 2 * sc.fbuf, sizeof(double), False)


cdef void _scratch_free(_Scratch* sc) noexcept:
    free(sc.table)
    free(sc.lp)
    free(sc.ybuf)
    free(sc.zbuf)
    free(sc.xt)
    free(sc.acc)
    free(sc.y64)
    free(sc.yw64)
    free(sc.z64)


cdef void _expanded_log_prob_block(const floating* xb, Py_ssize_t m, const _Scratch* sc,
                                   Py_ssize_t tid, double* lp, Py_ssize_t n_components,
                                   Py_ssize_t n_features) noexcept nogil:
    """lp = [y, y^2] @ B + offset for the block xb (m rows), y = x - c; leaves [y, y^2]
    in thread tid's z64 (m x 2D row-major).

    Column-major BLAS sees lp^T (K x m) = B^T (K x 2D, ld K) z^T (2D x m, ld 2D).
    """
    cdef Py_ssize_t i, j, k
    cdef double y
    cdef double* z = sc.z64 + tid * 2 * sc.fbuf
    cdef double* zr
    cdef double* row
    cdef const floating* xr
    for i in range(m):
        xr = xb + i * n_features
        zr = z + i * 2 * n_features
        for j in range(n_features):
            y = <double>xr[j] - sc.ex_c[j]
            zr[j] = y
            zr[n_features + j] = y * y
    _gemm(c'N', c'N', <int>n_components, <int>m, <int>(2 * n_features), sc.ex_B,
          <int>n_components, z, <int>(2 * n_features), 0.0, lp, <int>n_components)
    for i in range(m):
        row = lp + i * n_components
        for k in range(n_components):
            row[k] += sc.ex_const[k]


cdef void _log_prob_block(int kind, const floating* X, Py_ssize_t start, Py_ssize_t m,
                          const floating* means, const floating* pc, const double* log_consts,
                          double* lp, const _Scratch* sc, Py_ssize_t tid,
                          Py_ssize_t n_components, Py_ssize_t n_features) noexcept nogil:
    """lp[i, k] = log_consts[k] - maha_k(x_{start+i}) / 2 for the block [start, start+m).

    lp is row-major with row stride n_components.  Uses the table of ``sc`` and thread
    tid's ybuf, zbuf (data dtype), xt and acc (float64).
    """
    cdef Py_ssize_t i, j, k
    cdef const double* table = sc.table
    cdef floating* ybuf = (<floating*>sc.ybuf) + tid * sc.fbuf
    cdef floating* zbuf = (<floating*>sc.zbuf) + tid * sc.fbuf
    cdef double* xt = sc.xt + tid * sc.fbuf
    cdef double* acc = sc.acc + tid * _BLOCK
    cdef const floating* xb = X + start * n_features
    cdef const floating* mu
    cdef const floating* xr
    cdef floating* yr
    cdef const double* zrow
    cdef double t, d, p, half = 0.5
    if sc.expanded:
        _expanded_log_prob_block(xb, m, sc, tid, lp, n_components, n_features)
        return
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
            _sum_sq_diff_t(xt, m, table, k, n_components, n_features, acc)
            for i in range(m):
                lp[i * n_components + k] = log_consts[k] - half * acc[i]
    else:
        # diag / spherical: float64 transposed copy of the block, xt[j, i] = x_ij
        for i in range(m):
            xr = xb + i * n_features
            for j in range(n_features):
                xt[j * m + i] = <double>xr[j]
        for k in range(n_components):
            if kind == _DIAG:
                for i in range(m):
                    acc[i] = 0.0
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
                _sum_sq_diff_t(xt, m, table, k, n_components, n_features, acc)
                p = <double>pc[k]
                for i in range(m):
                    lp[i * n_components + k] = log_consts[k] - half * acc[i] * p * p


cdef double _stats_slot(int kind, const floating* X, const double* sample_weight,
                        const floating* means, const floating* pc, const double* log_consts,
                        const floating* shift, const _Scratch* sc, Py_ssize_t tid,
                        double* p_nk, double* p_x, double* p_xx, double* p_z,
                        Py_ssize_t start, Py_ssize_t stop,
                        Py_ssize_t n_components, Py_ssize_t n_features) noexcept nogil:
    """Fused E/M statistics of samples [start, stop) into this slot's (zeroed) partials,
    with thread tid's scratch of ``sc``: p_nk, and p_x, p_xx (direct form) or p_z
    (K x 2D, expanded form: sum_i w_i r_ik [y_i, y_i^2] around c).

    Returns the slot's ``sum_i w_i log p(x_i)`` (-inf if a row of zero density has
    positive weight).
    """
    cdef double ll = 0.0, total, wr, y, s
    cdef Py_ssize_t b_start, b_stop, m, i, j, k
    cdef double* lp = sc.lp + tid * sc.lbuf
    cdef double* y64 = sc.y64 + tid * sc.fbuf
    cdef double* yw64 = sc.yw64 + tid * sc.fbuf
    cdef double* z64 = sc.z64 + tid * 2 * sc.fbuf
    cdef double* row
    cdef double* xk
    cdef double* xxk
    cdef double* yr
    cdef double* ywr
    cdef const floating* xr
    cdef const floating* sk
    b_start = start
    while b_start < stop:
        b_stop = _block_stop(b_start, stop)
        m = b_stop - b_start
        _log_prob_block(kind, X, b_start, m, means, pc, log_consts, lp, sc, tid,
                        n_components, n_features)
        # E-step: lp becomes w_i * r_ik (0 for rows with zero density); nk added to p_nk
        ll += _block_responsibilities(lp, m, n_components, sample_weight + b_start, p_nk)
        if sc.expanded:
            # p_z (K x 2D) += lp^T z; column-major: p_z^T (2D x K) += z^T (2D x m, ld 2D)
            # times lp (m x K), which BLAS sees as lp^T (K x m, ld K): transb='T'
            _gemm(c'N', c'T', <int>(2 * n_features), <int>n_components, <int>m, z64,
                  <int>(2 * n_features), lp, <int>n_components, 1.0, p_z,
                  <int>(2 * n_features))
            b_start = b_stop
            continue
        # M-step statistics around the shift, component by component
        for k in range(n_components):
            total = 0.0
            for i in range(m):
                total += lp[i * n_components + k]
            if total == 0.0:
                continue
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


# ---------------------------------------------------------------------------
# Generic typed kernels (canonical 3-D prec_chol / sum_xx, int kind)
# ---------------------------------------------------------------------------

cdef void _log_prob_blocks(int kind, const floating[:, ::1] X, const floating[:, ::1] means,
                           const floating[:, :, ::1] pc, const double[::1] log_consts,
                           bint expanded, const double[::1] c, const double[:, ::1] B,
                           const double[::1] offset, double* out, double* log_norm,
                           int* labels, n_threads) except *:
    """Log densities of all samples (n_samples, n_components >= 1), block-parallel.

    Written to ``out`` (n_samples x K) if it is not NULL; otherwise each block's are
    reduced per sample into ``log_norm`` (log sum_k exp) and ``labels`` (argmax, lowest
    index on ties).
    """
    cdef Py_ssize_t n_samples = X.shape[0], n_features = X.shape[1]
    cdef Py_ssize_t n_components = means.shape[0]
    cdef Py_ssize_t n_blocks = _n_blocks(n_samples)
    cdef int n_team = _team_size(n_threads, n_blocks)
    cdef Py_ssize_t b, start, stop, tid
    cdef double* lp
    cdef _Scratch sc
    memset(&sc, 0, sizeof(sc))  # all NULL: _scratch_free is safe whatever was allocated
    try:
        _scratch_alloc(&sc, kind, means, pc, n_team, out == NULL, False,
                       expanded and n_features > 0, c, B, offset)
        for b in prange(n_blocks, nogil=True, schedule='static', num_threads=n_team):
            tid = threadid()
            start = b * _BLOCK
            stop = _block_stop(start, n_samples)
            lp = out + start * n_components if out != NULL else sc.lp + tid * sc.lbuf
            _log_prob_block(kind, &X[0, 0], start, stop - start, &means[0, 0], &pc[0, 0, 0],
                            &log_consts[0], lp, &sc, tid, n_components, n_features)
            if out == NULL:
                _log_norm_rows(lp, stop - start, n_components, log_norm + start, labels + start)
    finally:
        _scratch_free(&sc)


def _estimate_log_prob_typed(int kind, const floating[:, ::1] X, const floating[:, ::1] means,
                             const floating[:, :, ::1] pc, const double[::1] log_consts,
                             bint expanded, const double[::1] c, const double[:, ::1] B,
                             const double[::1] offset, double[:, ::1] out, n_threads):
    cdef Py_ssize_t n_samples = X.shape[0], n_components = means.shape[0]
    _check_params(kind, X.shape[1], means, pc, log_consts)
    _check(out.shape[0] == n_samples and out.shape[1] == n_components,
           "out is not (n_samples, n_components)")
    if n_samples > 0 and n_components > 0:
        _log_prob_blocks(kind, X, means, pc, log_consts, expanded, c, B, offset, &out[0, 0],
                         NULL, NULL, n_threads)


def _estimate_log_norm_typed(int kind, const floating[:, ::1] X, const floating[:, ::1] means,
                             const floating[:, :, ::1] pc, const double[::1] log_consts,
                             bint expanded, const double[::1] c, const double[:, ::1] B,
                             const double[::1] offset, double[::1] log_norm, int[::1] labels,
                             n_threads):
    cdef Py_ssize_t n_samples = X.shape[0]
    _check_params(kind, X.shape[1], means, pc, log_consts)
    _check(log_norm.shape[0] == n_samples and labels.shape[0] == n_samples,
           "log_norm / labels do not have n_samples entries")
    if n_samples == 0:
        return
    _check(means.shape[0] >= 1, "need at least one component")
    _log_prob_blocks(kind, X, means, pc, log_consts, expanded, c, B, offset, NULL, &log_norm[0],
                     &labels[0], n_threads)


cdef void _unexpand_stats(int kind, const floating[:, ::1] shift, const double[::1] c,
                          const double[::1] nk, const double* sum_z, double[:, ::1] sum_x,
                          double[:, :, ::1] sum_xx) noexcept nogil:
    """Statistics around c (sum_z = [sum r y, sum r y^2], K x 2D) to statistics around
    the shift: with d = s_k - c, sum r (y - d) = S1 - nk d and
    sum r (y - d)^2 = S2 - 2 d S1 + nk d^2 (clamped at 0: it is a sum of squares)."""
    cdef Py_ssize_t n_components = shift.shape[0], n_features = shift.shape[1], k, j
    cdef double d, s1, s2, v, acc
    for k in range(n_components):
        acc = 0.0
        for j in range(n_features):
            d = <double>shift[k, j] - c[j]
            s1 = sum_z[k * 2 * n_features + j]
            s2 = sum_z[k * 2 * n_features + n_features + j]
            sum_x[k, j] = s1 - nk[k] * d
            v = s2 - 2.0 * d * s1 + nk[k] * d * d
            if v < 0.0:
                v = 0.0
            if kind == _DIAG:
                sum_xx[k, 0, j] = v
            acc += v
        if kind == _SPHERICAL:
            sum_xx[k, 0, 0] = acc


def _accumulate_stats_typed(int kind, const floating[:, ::1] X,
                            const double[::1] sample_weight, const floating[:, ::1] means,
                            const floating[:, :, ::1] pc, const double[::1] log_consts,
                            const floating[:, ::1] shift, bint expanded, const double[::1] c,
                            const double[:, ::1] B, const double[::1] offset, double[::1] nk,
                            double[:, ::1] sum_x, double[:, :, ::1] sum_xx, n_threads):
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

    expanded = expanded and n_components > 0 and n_features > 0
    cdef Py_ssize_t xx_size = sum_xx.shape[0] * sum_xx.shape[1] * sum_xx.shape[2]
    cdef Py_ssize_t x_size = n_components * n_features
    cdef Py_ssize_t z_size = 2 * x_size if expanded else 0
    cdef Py_ssize_t n_blocks = _n_blocks(n_samples)
    cdef Py_ssize_t n_slots = _n_slots(n_blocks, 8 * (1 + n_components * (1 + n_features)
                                                     + xx_size + z_size))
    cdef int n_team = _team_size(n_threads, n_slots)
    cdef Py_ssize_t slot, start, stop, tid
    cdef double ll
    cdef double* part_ll = NULL
    cdef double* part_nk = NULL
    cdef double* part_x = NULL
    cdef double* part_xx = NULL
    cdef double* part_z = NULL
    cdef double* sum_z = NULL
    cdef _Scratch sc
    memset(&sc, 0, sizeof(sc))  # all NULL: _scratch_free is safe whatever was allocated
    try:
        # per-slot partial results, zeroed: slot s owns row s of each
        part_ll = <double*>_alloc(n_slots, sizeof(double), True)
        part_nk = <double*>_alloc(<size_t>n_slots * n_components, sizeof(double), True)
        part_x = <double*>_alloc(<size_t>n_slots * x_size, sizeof(double), True)
        part_xx = <double*>_alloc(<size_t>n_slots * xx_size, sizeof(double), True)
        part_z = <double*>_alloc(<size_t>n_slots * z_size, sizeof(double), True)
        if n_samples > 0:
            _scratch_alloc(&sc, kind, means, pc, n_team, True, True, expanded, c, B, offset)
            for slot in prange(n_slots, nogil=True, schedule='static', num_threads=n_team):
                tid = threadid()
                start = _slot_start(slot, n_slots, n_blocks)
                stop = _slot_stop(slot, n_slots, n_blocks, n_samples)
                part_ll[slot] = _stats_slot(
                    kind, &X[0, 0], &sample_weight[0], &means[0, 0], &pc[0, 0, 0],
                    &log_consts[0], &shift[0, 0], &sc, tid, part_nk + slot * n_components,
                    part_x + slot * x_size, part_xx + slot * xx_size,
                    part_z + slot * z_size, start, stop, n_components, n_features)
        # fixed slot order: bit-identical for any thread count
        with nogil:
            _sum_slots(part_ll, n_slots, 1, &ll)
            _sum_slots(part_nk, n_slots, n_components, &nk[0] if n_components > 0 else NULL)
            _sum_slots(part_x, n_slots, x_size, &sum_x[0, 0] if x_size > 0 else NULL)
            _sum_slots(part_xx, n_slots, xx_size, &sum_xx[0, 0, 0] if xx_size > 0 else NULL)
        if expanded:
            sum_z = <double*>_alloc(z_size, sizeof(double), False)
            with nogil:
                _sum_slots(part_z, n_slots, z_size, sum_z)
                _unexpand_stats(kind, shift, c, nk, sum_z, sum_x, sum_xx)
    finally:
        free(part_ll)
        free(part_nk)
        free(part_x)
        free(part_xx)
        free(part_z)
        free(sum_z)
        _scratch_free(&sc)
    return ll


# ---------------------------------------------------------------------------
# Public per-type kernels: export_kernels (fastem/kernels/_covariance.py) defines
# them over these generic kernels, passing the canonical 3-D views of prec_chol
# and sum_xx.
# ---------------------------------------------------------------------------

# Small parameter inputs of any layout are made C-contiguous (a no-op when they are
# already, copies of K x D sized arrays otherwise, as numba accepts any layout);
# X must be C-contiguous and outputs must be C-contiguous (written in place).
_c = np.ascontiguousarray


def _estimate_log_prob(kind, X, means, pc, log_consts, expanded, c, B, offset, out, n_threads):
    _estimate_log_prob_typed(kind, X, _c(means), _c(pc), _c(log_consts), expanded, c, B, offset,
                             out, n_threads)


def _estimate_log_norm(kind, X, means, pc, log_consts, expanded, c, B, offset, log_norm, labels,
                       n_threads):
    _estimate_log_norm_typed(kind, X, _c(means), _c(pc), _c(log_consts), expanded, c, B, offset,
                             log_norm, labels, n_threads)


def _accumulate_stats(kind, X, sample_weight, means, pc, log_consts, shift, expanded, c, B,
                      offset, nk, sum_x, sum_xx, n_threads):
    # sum_xx is the caller's buffer in the canonical shape (a view: the reshape only
    # inserts unit axes, so it is C-contiguous iff the buffer is); it is written in
    # place, so it must never be replaced by a contiguous copy
    if not (isinstance(sum_xx, np.ndarray) and sum_xx.flags.c_contiguous):
        raise ValueError("fastem cython gaussian_mixture kernel: sum_xx must be a "
                         "C-contiguous ndarray")
    return _accumulate_stats_typed(kind, X, _c(sample_weight), _c(means), _c(pc),
                                   _c(log_consts), _c(shift), expanded, c, B, offset, nk, sum_x,
                                   sum_xx, n_threads)


export_kernels(globals(), _estimate_log_prob, _estimate_log_norm, _accumulate_stats,
               canonical_shapes=True)
