"""Mixtures of discrete distributions, Cython backend. Same names and signatures as
``reference/discrete_mixture.py`` (see its docstring for the contract).

This mirrors ``numba/discrete_mixture.py``: dense blocks go through one gemm for the log
densities (z @ W, with z = [x0, o] in float64 and W = [coef; obs_coef]) and one for the
statistics (z^T (w r)); CSR rows add ``v * coef[j, :]`` per stored entry, and their
statistics ``v * w r`` to row j of the slot's (D, K) partial.  Determinism follows
``cython/kmeans.pyx``: fixed blocks, slots fixed by the problem size, each slot reduced
serially by one thread, the slots added in order after the parallel loop.

Compiler directives are set in ``setup.py``; bounds checking is off, so each kernel
checks its arguments' shapes once before entering ``nogil`` code.
"""

import numpy as np

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free
from libc.string cimport memcpy

from fastem.kernels.cython._common cimport (
    _BLOCK, _MAX_SLOTS, _SLOT_BUDGET_BYTES, FASTEM_COMPILED_WITH_OPENMP, _alloc,
    _block_responsibilities, _block_stop, _check_arg, _gemm, _log_norm_rows, _n_blocks,
    _n_slots, _slot_start, _slot_stop, _sum_slots, _team_size)

#: True iff this module was compiled with OpenMP (otherwise every prange runs serially).
OPENMP = bool(FASTEM_COMPILED_WITH_OPENMP)
#: The determinism constants (see ``_common.pxd``).
BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES = _BLOCK, _MAX_SLOTS, _SLOT_BUDGET_BYTES

ctypedef fused index_t:
    int32_t
    int64_t


cdef inline void _check(bint ok, str what) except *:
    _check_arg("discrete_mixture", ok, what)


# ---------------------------------------------------------------------------
# nogil block helpers
# ---------------------------------------------------------------------------

cdef void _dense_block(const floating* X, Py_ssize_t start, Py_ssize_t m, Py_ssize_t n_features,
                       const double* W, Py_ssize_t width, const double* offset,
                       Py_ssize_t n_components, bint missing, double* z,
                       double* lp) noexcept nogil:
    """lp (m x K) = z @ W + offset for rows [start, start + m); z (m x width) is left
    holding [x0, o] (missing) or x.

    Column-major BLAS: lp^T (K x m) = W^T (K x width, ld K) z^T (width x m, ld width).
    """
    cdef Py_ssize_t i, j, k
    cdef double x
    cdef const floating* xr
    cdef double* zr
    for i in range(m):
        xr = X + (start + i) * n_features
        zr = z + i * width
        for j in range(n_features):
            x = <double>xr[j]
            if missing:
                if x == x:
                    zr[j] = x
                    zr[n_features + j] = 1.0
                else:  # NaN: a missing entry, marginalised (both terms drop out)
                    zr[j] = 0.0
                    zr[n_features + j] = 0.0
            else:
                zr[j] = x
    _gemm(c'N', c'N', <int>n_components, <int>m, <int>width, W, <int>n_components, z,
          <int>width, 0.0, lp, <int>n_components)
    for i in range(m):
        for k in range(n_components):
            lp[i * n_components + k] += offset[k]


cdef void _csr_block(const floating* data, const index_t* indices, const index_t* indptr,
                     Py_ssize_t start, Py_ssize_t m, const double* coef,
                     const double* offset, Py_ssize_t n_components, double* lp) noexcept nogil:
    """lp[i, k] = offset_k + sum over row start+i's entries of v * coef[j, k]."""
    cdef Py_ssize_t i, p, k
    cdef double v
    cdef double* row
    cdef const double* crow
    for i in range(m):
        row = lp + i * n_components
        for k in range(n_components):
            row[k] = offset[k]
        for p in range(indptr[start + i], indptr[start + i + 1]):
            v = <double>data[p]
            crow = coef + indices[p] * n_components
            for k in range(n_components):
                row[k] += v * crow[k]


cdef void _csr_scatter(const floating* data, const index_t* indices, const index_t* indptr,
                       Py_ssize_t start, Py_ssize_t m, const double* wr,
                       Py_ssize_t n_components, double* part) noexcept nogil:
    """part[j, :] += v * wr[i, :] for every stored entry v = x_ij of rows [start, start+m)."""
    cdef Py_ssize_t i, p, k
    cdef double v
    cdef const double* row
    cdef double* xrow
    for i in range(m):
        row = wr + i * n_components
        for p in range(indptr[start + i], indptr[start + i + 1]):
            v = <double>data[p]
            xrow = part + indices[p] * n_components
            for k in range(n_components):
                xrow[k] += v * row[k]


# ---------------------------------------------------------------------------
# argument checks (with the GIL)
# ---------------------------------------------------------------------------

cdef double* _stacked(const double[:, ::1] coef, const double[:, ::1] obs_coef, bint missing,
                      Py_ssize_t n_components) except NULL:
    """W = [coef; obs_coef] (2D x K) if missing, else a copy of coef (D x K)."""
    cdef Py_ssize_t n_features = coef.shape[0]
    cdef Py_ssize_t size = n_features * n_components
    _check(coef.shape[1] == n_components, "coef is not (n_features, n_components)")
    if missing:
        _check(obs_coef.shape[0] == n_features and obs_coef.shape[1] == n_components,
               "obs_coef is not (n_features, n_components)")
    cdef double* W = <double*>_alloc((2 if missing else 1) * size, sizeof(double), False)
    if size > 0:
        memcpy(W, &coef[0, 0], size * sizeof(double))
        if missing:
            memcpy(W + size, &obs_coef[0, 0], size * sizeof(double))
    return W


cdef void _check_csr(Py_ssize_t nnz_data, Py_ssize_t nnz_indices, Py_ssize_t n_ptr,
                     Py_ssize_t n_out) except *:
    _check(nnz_data == nnz_indices, "data and indices differ in length")
    _check(n_ptr == n_out + 1, "indptr does not have n_samples + 1 entries")


# ---------------------------------------------------------------------------
# dense kernels
# ---------------------------------------------------------------------------

def _dense_log_prob(const floating[:, ::1] X, const double[:, ::1] coef,
                    const double[:, ::1] obs_coef, const double[::1] offset, bint missing,
                    double[:, ::1] out, double[::1] log_norm, int[::1] labels, n_threads):
    """Log densities into out (if it has rows) or reduced into log_norm / labels."""
    cdef Py_ssize_t n_samples = X.shape[0], n_features = X.shape[1]
    cdef Py_ssize_t n_components = offset.shape[0]
    cdef bint to_out = out.shape[0] > 0
    _check(coef.shape[0] == n_features, "coef does not have n_features rows")
    if to_out:
        _check(out.shape[0] == n_samples and out.shape[1] == n_components,
               "out is not (n_samples, n_components)")
    else:
        _check(log_norm.shape[0] == n_samples and labels.shape[0] == n_samples,
               "log_norm / labels do not have n_samples entries")
    if n_samples == 0 or n_components == 0:
        return
    cdef Py_ssize_t width = (2 if missing else 1) * n_features
    cdef Py_ssize_t n_blocks = _n_blocks(n_samples)
    cdef int n_team = _team_size(n_threads, n_blocks)
    cdef Py_ssize_t b, start, stop, tid
    cdef double* lp
    cdef double* W = NULL
    cdef double* z = NULL
    cdef double* lbuf = NULL
    try:
        W = _stacked(coef, obs_coef, missing, n_components)
        z = <double*>_alloc(<size_t>n_team * _BLOCK * width, sizeof(double), False)
        lbuf = <double*>_alloc(<size_t>n_team * _BLOCK * n_components, sizeof(double), False)
        for b in prange(n_blocks, nogil=True, schedule='static', num_threads=n_team):
            tid = threadid()
            start = b * _BLOCK
            stop = _block_stop(start, n_samples)
            lp = &out[start, 0] if to_out else lbuf + tid * _BLOCK * n_components
            _dense_block(&X[0, 0], start, stop - start, n_features, W, width, &offset[0],
                         n_components, missing, z + tid * _BLOCK * width, lp)
            if not to_out:
                _log_norm_rows(lp, stop - start, n_components, &log_norm[start], &labels[start])
    finally:
        free(W)
        free(z)
        free(lbuf)


def estimate_log_prob_dense(X, coef, obs_coef, offset, missing, out, n_threads):
    _dense_log_prob(X, coef, obs_coef, offset, missing, out, np.empty(0), np.empty(0, np.int32),
                    n_threads)


def estimate_log_norm_dense(X, coef, obs_coef, offset, missing, log_norm, labels, n_threads):
    _dense_log_prob(X, coef, obs_coef, offset, missing, np.empty((0, 0)), log_norm, labels,
                    n_threads)


def accumulate_stats_dense(const floating[:, ::1] X, const double[::1] sample_weight,
                           const double[:, ::1] coef, const double[:, ::1] obs_coef,
                           const double[::1] offset, bint missing, double[::1] nk,
                           double[:, ::1] sum_x, double[:, ::1] sum_obs, n_threads):
    cdef Py_ssize_t n_samples = X.shape[0], n_features = X.shape[1]
    cdef Py_ssize_t n_components = offset.shape[0]
    _check(coef.shape[0] == n_features, "coef does not have n_features rows")
    _check(sample_weight.shape[0] == n_samples, "sample_weight does not have n_samples entries")
    _check(nk.shape[0] == n_components, "nk does not have n_components entries")
    _check(sum_x.shape[0] == n_features and sum_x.shape[1] == n_components
           and sum_obs.shape[0] == n_features and sum_obs.shape[1] == n_components,
           "sum_x / sum_obs are not (n_features, n_components)")
    cdef Py_ssize_t width = (2 if missing else 1) * n_features
    cdef Py_ssize_t z_size = width * n_components
    cdef Py_ssize_t n_blocks = _n_blocks(n_samples)
    cdef Py_ssize_t n_slots = _n_slots(n_blocks, 8 * (1 + n_components * (1 + width)))
    cdef int n_team = _team_size(n_threads, n_slots)
    cdef Py_ssize_t slot, start, stop, tid, b_start, b_stop, j, k
    cdef double ll = 0.0
    cdef double* lp
    cdef double* W = NULL
    cdef double* z = NULL
    cdef double* lbuf = NULL
    cdef double* part_ll = NULL
    cdef double* part_nk = NULL
    cdef double* part_z = NULL
    cdef double* total = NULL
    try:
        W = _stacked(coef, obs_coef, missing, n_components)
        z = <double*>_alloc(<size_t>n_team * _BLOCK * width, sizeof(double), False)
        lbuf = <double*>_alloc(<size_t>n_team * _BLOCK * n_components, sizeof(double), False)
        part_ll = <double*>_alloc(n_slots, sizeof(double), True)
        part_nk = <double*>_alloc(<size_t>n_slots * n_components, sizeof(double), True)
        part_z = <double*>_alloc(<size_t>n_slots * z_size, sizeof(double), True)
        total = <double*>_alloc(z_size, sizeof(double), True)
        if n_samples > 0 and n_components > 0:
            for slot in prange(n_slots, nogil=True, schedule='static', num_threads=n_team):
                tid = threadid()
                lp = lbuf + tid * _BLOCK * n_components
                start = _slot_start(slot, n_slots, n_blocks)
                stop = _slot_stop(slot, n_slots, n_blocks, n_samples)
                b_start = start
                while b_start < stop:
                    b_stop = _block_stop(b_start, stop)
                    _dense_block(&X[0, 0], b_start, b_stop - b_start, n_features, W, width,
                                 &offset[0], n_components, missing,
                                 z + tid * _BLOCK * width, lp)
                    part_ll[slot] += _block_responsibilities(
                        lp, b_stop - b_start, n_components, &sample_weight[b_start],
                        part_nk + slot * n_components)
                    # part_z (width x K) += z^T (w r); column-major: part_z^T (K x width)
                    # += lp^T (K x m, ld K) z (m x width), z seen as z^T: transb='T'
                    _gemm(c'N', c'T', <int>n_components, <int>width, <int>(b_stop - b_start),
                          lp, <int>n_components, z + tid * _BLOCK * width, <int>width, 1.0,
                          part_z + slot * z_size, <int>n_components)
                    b_start = b_stop
        with nogil:  # fixed slot order: bit-identical for any thread count
            _sum_slots(part_ll, n_slots, 1, &ll)
            if n_components > 0:
                _sum_slots(part_nk, n_slots, n_components, &nk[0])
            _sum_slots(part_z, n_slots, z_size, total)
            for j in range(n_features):
                for k in range(n_components):
                    sum_x[j, k] = total[j * n_components + k]
                    sum_obs[j, k] = (total[(n_features + j) * n_components + k] if missing
                                     else nk[k])
    finally:
        free(W)
        free(z)
        free(lbuf)
        free(part_ll)
        free(part_nk)
        free(part_z)
        free(total)
    return ll


# ---------------------------------------------------------------------------
# CSR kernels
# ---------------------------------------------------------------------------

def _csr_log_prob(const floating[::1] data, const index_t[::1] indices,
                  const index_t[::1] indptr, const double[:, ::1] coef,
                  const double[::1] offset, double[:, ::1] out, double[::1] log_norm,
                  int[::1] labels, n_threads):
    cdef bint to_out = out.shape[0] > 0
    cdef Py_ssize_t n_samples = out.shape[0] if to_out else log_norm.shape[0]
    cdef Py_ssize_t n_components = offset.shape[0]
    _check_csr(data.shape[0], indices.shape[0], indptr.shape[0], n_samples)
    _check(coef.shape[1] == n_components, "coef is not (n_features, n_components)")
    if to_out:
        _check(out.shape[1] == n_components, "out is not (n_samples, n_components)")
    else:
        _check(labels.shape[0] == n_samples, "labels does not have n_samples entries")
    if n_samples == 0 or n_components == 0:
        return
    cdef Py_ssize_t n_blocks = _n_blocks(n_samples)
    cdef int n_team = _team_size(n_threads, n_blocks)
    cdef Py_ssize_t b, start, stop, tid
    cdef double* lp
    cdef double* lbuf = NULL
    cdef const floating* data_p = &data[0] if data.shape[0] > 0 else NULL
    cdef const index_t* indices_p = &indices[0] if indices.shape[0] > 0 else NULL
    try:
        lbuf = <double*>_alloc(<size_t>n_team * _BLOCK * n_components, sizeof(double), False)
        for b in prange(n_blocks, nogil=True, schedule='static', num_threads=n_team):
            tid = threadid()
            start = b * _BLOCK
            stop = _block_stop(start, n_samples)
            lp = &out[start, 0] if to_out else lbuf + tid * _BLOCK * n_components
            _csr_block(data_p, indices_p, &indptr[0], start, stop - start, &coef[0, 0],
                       &offset[0], n_components, lp)
            if not to_out:
                _log_norm_rows(lp, stop - start, n_components, &log_norm[start], &labels[start])
    finally:
        free(lbuf)


def estimate_log_prob_csr(data, indices, indptr, coef, offset, out, n_threads):
    _csr_log_prob(data, indices, indptr, coef, offset, out, np.empty(0), np.empty(0, np.int32),
                  n_threads)


def estimate_log_norm_csr(data, indices, indptr, coef, offset, log_norm, labels, n_threads):
    _csr_log_prob(data, indices, indptr, coef, offset, np.empty((0, 0)), log_norm, labels,
                  n_threads)


def accumulate_stats_csr(const floating[::1] data, const index_t[::1] indices,
                         const index_t[::1] indptr, const double[::1] sample_weight,
                         const double[:, ::1] coef, const double[::1] offset, double[::1] nk,
                         double[:, ::1] sum_x, n_threads):
    cdef Py_ssize_t n_samples = sample_weight.shape[0]
    cdef Py_ssize_t n_features = coef.shape[0], n_components = offset.shape[0]
    _check_csr(data.shape[0], indices.shape[0], indptr.shape[0], n_samples)
    _check(coef.shape[1] == n_components, "coef is not (n_features, n_components)")
    _check(nk.shape[0] == n_components, "nk does not have n_components entries")
    _check(sum_x.shape[0] == n_features and sum_x.shape[1] == n_components,
           "sum_x is not (n_features, n_components)")
    cdef Py_ssize_t x_size = n_features * n_components
    cdef Py_ssize_t n_blocks = _n_blocks(n_samples)
    # fewer slots when each would hold fewer stored entries than its (D x K) partial sums
    # (as numba's _csr_slots): zeroing and adding them would cost more than the work
    cdef Py_ssize_t n_slots = max(1, min(
        _n_slots(n_blocks, 8 * (1 + n_components * (1 + n_features))),
        indices.shape[0] // max(1, x_size)))
    cdef int n_team = _team_size(n_threads, n_slots)
    cdef Py_ssize_t slot, start, stop, tid, b_start, b_stop
    cdef double ll = 0.0
    cdef double* lp
    cdef double* lbuf = NULL
    cdef double* part_ll = NULL
    cdef double* part_nk = NULL
    cdef double* part_x = NULL
    cdef const floating* data_p = &data[0] if data.shape[0] > 0 else NULL
    cdef const index_t* indices_p = &indices[0] if indices.shape[0] > 0 else NULL
    try:
        lbuf = <double*>_alloc(<size_t>n_team * _BLOCK * n_components, sizeof(double), False)
        part_ll = <double*>_alloc(n_slots, sizeof(double), True)
        part_nk = <double*>_alloc(<size_t>n_slots * n_components, sizeof(double), True)
        part_x = <double*>_alloc(<size_t>n_slots * x_size, sizeof(double), True)
        if n_samples > 0 and n_components > 0:
            for slot in prange(n_slots, nogil=True, schedule='static', num_threads=n_team):
                tid = threadid()
                lp = lbuf + tid * _BLOCK * n_components
                start = _slot_start(slot, n_slots, n_blocks)
                stop = _slot_stop(slot, n_slots, n_blocks, n_samples)
                b_start = start
                while b_start < stop:
                    b_stop = _block_stop(b_start, stop)
                    _csr_block(data_p, indices_p, &indptr[0], b_start, b_stop - b_start,
                               &coef[0, 0], &offset[0], n_components, lp)
                    part_ll[slot] += _block_responsibilities(
                        lp, b_stop - b_start, n_components, &sample_weight[b_start],
                        part_nk + slot * n_components)
                    _csr_scatter(data_p, indices_p, &indptr[0], b_start, b_stop - b_start,
                                 lp, n_components, part_x + slot * x_size)
                    b_start = b_stop
        with nogil:  # fixed slot order: bit-identical for any thread count
            _sum_slots(part_ll, n_slots, 1, &ll)
            if n_components > 0:
                _sum_slots(part_nk, n_slots, n_components, &nk[0])
            if x_size > 0:
                _sum_slots(part_x, n_slots, x_size, &sum_x[0, 0])
    finally:
        free(lbuf)
        free(part_ll)
        free(part_nk)
        free(part_x)
    return ll
