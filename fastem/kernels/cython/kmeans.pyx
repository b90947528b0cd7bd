"""K-means kernels, Cython backend. Same names and signatures as ``reference/kmeans.py``.

This mirrors ``numba/kmeans.py`` step for step (see its docstring); the numpy
reference is the specification.

Determinism: samples are cut into fixed blocks of ``BLOCK_SIZE``; reductions map
contiguous runs of whole blocks onto a number of slots that depends only on the
problem size.  Each slot is reduced serially by one thread into its own row of a
partial-results buffer, and the rows are added in slot order after the parallel
loop.  No ``prange`` reduction and no shared ``+=`` is used, so results are
bit-identical for any ``n_threads``.

The assignment is the reference's: the nearest center under the *exact* squared
distance (float64, summed in feature order, every operation rounded; ties to the lowest
index).  It is found fast with ``||x - c||^2 = ||x||^2 + 2 (||c||^2 / 2 - x.c)`` and
the ``x.c`` block from one BLAS gemm per block of samples (the argmin only needs
``||c||^2 / 2 - x.c``); a row's gemm choice is kept only when its margin over the
runner-up beats the gemm's rounding error bound (``_gemm_settles``), and otherwise the
row is settled by the exact distance (``_exact_row``).  So labels equal the reference's
and the numba backend's bit for bit, for every algorithm (``lloyd_step`` and
``bounded_step``).  Inertia and the k-means++ distances are computed directly as
``sum_j (x_j - c_j)^2`` in float64.

Compiler directives (boundscheck, wraparound, cdivision, language_level) are set
in ``setup.py``.  Because bounds checking is off, each kernel checks the shapes of
its arguments once before entering ``nogil`` code.  ``setup.py`` must not add flags
that change float semantics (-ffast-math, -fassociative-math): the exact distance
relies on strict IEEE order.  Fused multiply-adds (gcc's default -ffp-contract=fast
when the target has FMA, e.g. aarch64 or -march=haswell) are kept out of the exact
distance by ``fastem_rounded``.
"""

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.math cimport INFINITY, sqrt
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free

from fastem.kernels.cython._common cimport (
    _BLOCK, _MAX_SLOTS, _SLOT_BUDGET_BYTES, FASTEM_COMPILED_WITH_OPENMP, _alloc, _block_stop,
    _check_arg, _gemm, _n_blocks, _n_slots, _slot_start, _slot_stop, _sum_slots, _team_size)

#: True iff this module was compiled with OpenMP (otherwise every prange runs serially).
OPENMP = bool(FASTEM_COMPILED_WITH_OPENMP)
#: Samples per block, slots per reduction at most, and the memory budget in bytes of
#: all slots of one reduction (see ``_common.pxd``).
BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES = _BLOCK, _MAX_SLOTS, _SLOT_BUDGET_BYTES

#: A lower bound that bounds nothing (finite, so bound arithmetic never meets inf - inf).
cdef double _FAR = 1e300
FAR = _FAR


# The kernels by concern: distances (shared), the bounded step, k-means++ seeding and
# the kernels on CSR rows in their own files, textually included (one extension module
# per family);
# assignment, the Lloyd step and the inertia below.
include "_kmeans_distances.pxi"
include "_kmeans_bounded.pxi"
include "_kmeans_seeding.pxi"
include "_kmeans_sparse.pxi"


cdef double _inertia_slot(const floating* X, const double* sample_weight,
                          const floating* centers, const int* labels,
                          Py_ssize_t start, Py_ssize_t stop,
                          Py_ssize_t n_features) noexcept nogil:
    """sum_{i in [start, stop)} w_i ||x_i - c_{label_i}||^2, in sample order."""
    cdef double acc = 0.0
    cdef Py_ssize_t i
    for i in range(start, stop):
        acc += sample_weight[i] * _sq_dist_f64(X + i * n_features,
                                               centers + labels[i] * n_features, n_features)
    return acc


# ---------------------------------------------------------------------------
# Public kernels
# ---------------------------------------------------------------------------

def assign_labels(const floating[:, ::1] X, const floating[:, ::1] centers,
                  int[::1] labels, double[::1] min_sq_dist, n_threads):
    """Nearest center of every sample.

    Follows the contract of ``fastem.kernels.reference.kmeans.assign_labels``: the
    labels are the exact distance's nearest centers, bit for bit (see the module
    docstring for how the gemm's proposals are certified).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64, C-contiguous
        Samples, read.
    centers : ndarray of shape (n_clusters, n_features), X's dtype, C-contiguous
        Centers, read.
    labels : ndarray of shape (n_samples,), int32
        Written: index of the nearest center (lowest index on ties).
    min_sq_dist : ndarray of shape (n_samples,), float64
        Written: squared distance to that center.
    n_threads : int
        Number of OpenMP threads (results do not depend on it).
    """
    cdef Py_ssize_t n_samples = X.shape[0], n_features = X.shape[1]
    cdef Py_ssize_t n_clusters = centers.shape[0]
    _check(centers.shape[1] == n_features, "centers and X have different n_features")
    _check(labels.shape[0] == n_samples and min_sq_dist.shape[0] == n_samples,
           "labels / min_sq_dist do not have n_samples entries")
    if n_samples == 0:
        return
    _check(n_clusters >= 1, "need at least one center")

    cdef Py_ssize_t n_blocks = _n_blocks(n_samples)
    cdef int n_team = _team_size(n_threads, n_blocks)
    cdef Py_ssize_t b, start, stop, tid
    cdef double h_max = _error_scale(centers)
    cdef double unit = _unit_roundoff(&X[0, 0])
    cdef double rel = _rel_error(n_features)
    cdef floating* half_sq_norms = <floating*>_half_sq_norms(centers)
    cdef bint direct = _direct(n_features, n_clusters)
    cdef Py_ssize_t xt_len = (_direct_rows(n_features) + 1) * _BLOCK
    cdef floating* dots = NULL
    cdef double* dist = NULL
    cdef double* centers_t64 = NULL
    cdef double* xt = NULL
    try:
        # per-thread scratch indexed by threadid(): either the direct path's transposed
        # block, or a (BLOCK x K) gemm output and the K exact distances of a row
        if direct:
            centers_t64 = _transposed_f64(centers)
            xt = <double*>_alloc(<size_t>n_team * xt_len, sizeof(double), False)
        else:
            dots = <floating*>_alloc(<size_t>n_team * _BLOCK * n_clusters, sizeof(floating),
                                     False)
            dist = <double*>_alloc(<size_t>n_team * n_clusters, sizeof(double), False)
        for b in prange(n_blocks, nogil=True, schedule='static', num_threads=n_team):
            tid = threadid()
            start = b * _BLOCK
            stop = _block_stop(start, n_samples)
            _assign_block(&X[0, 0], &centers[0, 0], half_sq_norms, centers_t64,
                          dots + tid * _BLOCK * n_clusters if not direct else NULL,
                          dist + tid * n_clusters if not direct else NULL,
                          xt + tid * xt_len if direct else NULL,
                          &labels[0], &min_sq_dist[0], start, stop, n_clusters, n_features,
                          h_max, unit, rel)
    finally:
        free(dots)
        free(dist)
        free(centers_t64)
        free(xt)
        free(half_sq_norms)


def lloyd_step(const floating[:, ::1] X, const double[::1] sample_weight,
               const floating[:, ::1] centers, int[::1] labels,
               double[:, ::1] sums, double[::1] weight_sums, n_threads):
    """One Lloyd iteration's data pass: assignment fused with the weighted center sums.

    Follows the contract of ``fastem.kernels.reference.kmeans.lloyd_step``; the
    assignment is certified as in ``assign_labels``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64, C-contiguous
        Samples, read.
    sample_weight : ndarray of shape (n_samples,), float64
        Non-negative sample weights, read.
    centers : ndarray of shape (n_clusters, n_features), X's dtype, C-contiguous
        Centers, read.
    labels : ndarray of shape (n_samples,), int32
        Read and written: the previous labels on entry (any value where there are
        none), the nearest center of each sample under ``centers`` on return.
    sums : ndarray of shape (n_clusters, n_features), float64
        Written: ``sum_{i: label_i = k} w_i x_i``.
    weight_sums : ndarray of shape (n_clusters,), float64
        Written: ``sum_{i: label_i = k} w_i``.
    n_threads : int
        Number of OpenMP threads (results do not depend on it).

    Returns
    -------
    n_changed : int
        The number of samples whose label differs from the one on entry.
    """
    cdef Py_ssize_t n_samples = X.shape[0], n_features = X.shape[1]
    cdef Py_ssize_t n_clusters = centers.shape[0]
    _check(centers.shape[1] == n_features, "centers and X have different n_features")
    _check(sample_weight.shape[0] == n_samples and labels.shape[0] == n_samples,
           "sample_weight / labels do not have n_samples entries")
    _check(sums.shape[0] == n_clusters and sums.shape[1] == n_features
           and weight_sums.shape[0] == n_clusters,
           "sums / weight_sums do not have the shape of centers")
    if n_samples > 0:
        _check(n_clusters >= 1, "need at least one center")

    cdef Py_ssize_t n_blocks = _n_blocks(n_samples)
    cdef Py_ssize_t n_slots = _n_slots(n_blocks, 8 * n_clusters * (n_features + 1))
    cdef int n_team = _team_size(n_threads, n_slots)
    cdef Py_ssize_t slot, start, stop, tid
    cdef Py_ssize_t slot_len = n_clusters * n_features
    cdef double h_max = 0.0, unit = 0.0
    cdef double rel = _rel_error(n_features)
    cdef bint direct = _direct(n_features, n_clusters)
    cdef Py_ssize_t xt_len = (_direct_rows(n_features) + 1) * _BLOCK
    cdef Py_ssize_t n_changed = 0
    cdef floating* half_sq_norms = NULL
    cdef floating* dots = NULL
    cdef double* dist = NULL
    cdef double* centers_t64 = NULL
    cdef double* xt = NULL
    cdef double* part_sums = NULL
    cdef double* part_weights = NULL
    cdef Py_ssize_t* part_changed = NULL
    try:
        # per-slot partial results, zeroed: slot s owns rows [s*K, (s+1)*K)
        part_sums = <double*>_alloc(<size_t>n_slots * slot_len, sizeof(double), True)
        part_weights = <double*>_alloc(<size_t>n_slots * n_clusters, sizeof(double), True)
        part_changed = <Py_ssize_t*>_alloc(n_slots, sizeof(Py_ssize_t), True)
        if n_samples > 0:
            h_max = _error_scale(centers)
            unit = _unit_roundoff(&X[0, 0])
            half_sq_norms = <floating*>_half_sq_norms(centers)
            if direct:
                centers_t64 = _transposed_f64(centers)
                xt = <double*>_alloc(<size_t>n_team * xt_len, sizeof(double), False)
            else:
                dots = <floating*>_alloc(<size_t>n_team * _gemm_rows(n_clusters) * n_clusters,
                                         sizeof(floating), False)
                dist = <double*>_alloc(<size_t>n_team * n_clusters, sizeof(double), False)
            for slot in prange(n_slots, nogil=True, schedule='static', num_threads=n_team):
                tid = threadid()
                start = _slot_start(slot, n_slots, n_blocks)
                stop = _slot_stop(slot, n_slots, n_blocks, n_samples)
                part_changed[slot] = _lloyd_slot(
                    &X[0, 0], &sample_weight[0], &centers[0, 0], half_sq_norms, centers_t64,
                    dots + tid * _gemm_rows(n_clusters) * n_clusters if not direct else NULL,
                    dist + tid * n_clusters if not direct else NULL,
                    xt + tid * xt_len if direct else NULL,
                    &labels[0], part_sums + slot * slot_len, part_weights + slot * n_clusters,
                    start, stop, n_clusters, n_features, h_max, unit, rel)
        # fixed slot order: bit-identical for any thread count
        with nogil:
            _sum_slots(part_weights, n_slots, n_clusters,
                       &weight_sums[0] if n_clusters > 0 else NULL)
            _sum_slots(part_sums, n_slots, slot_len, &sums[0, 0] if slot_len > 0 else NULL)
            for slot in range(n_slots):
                n_changed += part_changed[slot]
    finally:
        free(part_sums)
        free(part_weights)
        free(part_changed)
        free(dots)
        free(dist)
        free(centers_t64)
        free(xt)
        free(half_sq_norms)
    return n_changed


def inertia(const floating[:, ::1] X, const double[::1] sample_weight,
            const floating[:, ::1] centers, const int[::1] labels, n_threads):
    """Weighted sum of squared distances of samples to their assigned centers.

    Follows the contract of ``fastem.kernels.reference.kmeans.inertia``.  Labels must
    lie in ``[0, n_clusters)``; they are not checked.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64, C-contiguous
        Samples, read.
    sample_weight : ndarray of shape (n_samples,), float64
        Sample weights, read.
    centers : ndarray of shape (n_clusters, n_features), X's dtype, C-contiguous
        Centers, read.
    labels : ndarray of shape (n_samples,), int32
        Assigned center of each sample, read.
    n_threads : int
        Number of OpenMP threads (results do not depend on it).

    Returns
    -------
    inertia : float
        ``sum_i w_i * ||x_i - centers[labels_i]||^2``, accumulated in float64.
    """
    cdef Py_ssize_t n_samples = X.shape[0], n_features = X.shape[1]
    _check(centers.shape[1] == n_features, "centers and X have different n_features")
    _check(sample_weight.shape[0] == n_samples and labels.shape[0] == n_samples,
           "sample_weight / labels do not have n_samples entries")
    if n_samples == 0:
        return 0.0
    _check(centers.shape[0] >= 1, "need at least one center")

    cdef Py_ssize_t n_blocks = _n_blocks(n_samples)
    cdef Py_ssize_t n_slots = _n_slots(n_blocks, 8)
    cdef int n_team = _team_size(n_threads, n_slots)
    cdef Py_ssize_t slot, start, stop
    cdef double total
    cdef double* partial = <double*>_alloc(n_slots, sizeof(double), True)
    try:
        for slot in prange(n_slots, nogil=True, schedule='static', num_threads=n_team):
            start = _slot_start(slot, n_slots, n_blocks)
            stop = _slot_stop(slot, n_slots, n_blocks, n_samples)
            partial[slot] = _inertia_slot(&X[0, 0], &sample_weight[0], &centers[0, 0],
                                          &labels[0], start, stop, n_features)
        _sum_slots(partial, n_slots, 1, &total)  # fixed slot order
    finally:
        free(partial)
    return total
