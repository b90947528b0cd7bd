"""K-means kernels, Cython backend. Same names and signatures as ``reference/kmeans.py``.

This mirrors ``numba/kmeans.py`` step for step (see its docstring); the numpy
reference is the specification.

Determinism: samples are cut into fixed blocks of ``BLOCK_SIZE``; reductions map
contiguous runs of whole blocks onto a number of slots that depends only on the
problem size.  Each slot is reduced serially by one thread into its own row of a
partial-results buffer, and the rows are added in slot order after the parallel
loop.  No ``prange`` reduction and no shared ``+=`` is used, so results are
bit-identical for any ``n_threads``.

Distances for the assignment use ``||x - c||^2 = ||x||^2 + 2 (||c||^2 / 2 - x.c)``
with the ``x.c`` block computed by one BLAS gemm per block of samples; the argmin
only needs ``||c||^2 / 2 - x.c``.  Inertia and the k-means++ distances are computed
directly as ``sum_j (x_j - c_j)^2`` in float64.

Compiler directives (boundscheck, wraparound, cdivision, language_level) are set
in ``setup.py``.  Because bounds checking is off, each kernel checks the shapes of
its arguments once before entering ``nogil`` code.
"""

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdlib cimport free

from fastem.kernels.cython._common cimport (
    _BLOCK, _MAX_SLOTS, _SLOT_BUDGET_BYTES, FASTEM_COMPILED_WITH_OPENMP, _alloc, _block_stop,
    _check_arg, _gemm, _n_blocks, _n_slots, _slot_start, _slot_stop, _sum_slots, _team_size)

#: True iff this module was compiled with OpenMP (otherwise every prange runs serially).
OPENMP = bool(FASTEM_COMPILED_WITH_OPENMP)
#: Samples per block, slots per reduction at most, and the memory budget in bytes of
#: all slots of one reduction (see ``_common.pxd``).
BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES = _BLOCK, _MAX_SLOTS, _SLOT_BUDGET_BYTES


# ---------------------------------------------------------------------------
# Python-level helpers (called once per kernel, with the GIL); the blocking and
# allocation helpers are in _common.pxd
# ---------------------------------------------------------------------------

cdef inline void _check(bint ok, str what) except *:
    _check_arg("kmeans", ok, what)


cdef void* _half_sq_norms(const floating[:, ::1] centers) except NULL:
    """``0.5 * ||c_k||^2`` per center, accumulated in float64, stored in the data dtype."""
    cdef Py_ssize_t n_clusters = centers.shape[0], n_features = centers.shape[1]
    cdef floating* out = <floating*>_alloc(n_clusters, sizeof(floating), False)
    cdef Py_ssize_t k, j
    cdef double acc
    for k in range(n_clusters):
        acc = 0.0
        for j in range(n_features):
            acc += <double>centers[k, j] * <double>centers[k, j]
        out[k] = <floating>(0.5 * acc)
    return out


# ---------------------------------------------------------------------------
# nogil helpers
# ---------------------------------------------------------------------------

cdef inline void _block_dots(const floating* xb, const floating* centers, floating* dots,
                             int n_rows, int n_clusters, int n_features) noexcept nogil:
    """``dots = X_b @ centers.T`` (row-major, n_rows x n_clusters) with one gemm.

    In column-major BLAS terms the row-major result is ``C = A^T B`` with A the
    row-major centers seen as a (D x K) column-major matrix and B the row-major block
    seen as (D x B): transa='T', transb='N', m=K, n=B, k=D.
    """
    cdef int ld_in = n_features if n_features > 1 else 1
    cdef int ld_out = n_clusters if n_clusters > 1 else 1
    _gemm(c'T', c'N', n_clusters, n_rows, n_features, centers, ld_in, xb, ld_in, 0.0,
          dots, ld_out)


cdef extern from *:
    """
    #include <string.h>
    #include <stdint.h>
    /* Integer keys that order like the floats: IEEE bits, negatives with all but the
       sign flipped; -0.0 gets the key of +0.0 since the two compare equal.  memcpy is
       the well-defined way to read the bits and compiles to a register move. */
    static inline int32_t fastem_key_f32(float v) {
        int32_t b; memcpy(&b, &v, sizeof b);
        return b == INT32_MIN ? 0 : b ^ ((b >> 31) & INT32_MAX);
    }
    static inline int64_t fastem_key_f64(double v) {
        int64_t b; memcpy(&b, &v, sizeof b);
        return b == INT64_MIN ? 0 : b ^ ((b >> 63) & INT64_MAX);
    }
    """
    int fastem_key_f32(float v) noexcept nogil
    long long fastem_key_f64(double v) noexcept nogil

#: From this many clusters on, the argmin runs as vectorisable integer min-reductions
#: (see numba/kmeans.py: a float min-reduction would need finite-math flags).
cdef enum:
    _KEYED_ARGMIN_MIN_CLUSTERS = 32


cdef inline Py_ssize_t _argmin_scan(const floating* half_sq_norms, const floating* dots_row,
                                    Py_ssize_t n_clusters) noexcept nogil:
    """Scalar scan for the cluster minimising ||c||^2/2 - x.c (strict <: lowest index)."""
    cdef Py_ssize_t best = 0, k
    cdef floating low = half_sq_norms[0] - dots_row[0]
    cdef floating val
    for k in range(1, n_clusters):
        val = half_sq_norms[k] - dots_row[k]
        if val < low:
            low = val
            best = k
    return best


cdef inline Py_ssize_t _argmin_keyed(const floating* half_sq_norms, const floating* dots_row,
                                     Py_ssize_t n_clusters) noexcept nogil:
    """The same by branch-free integer min-reductions: smallest key, then its lowest index."""
    cdef Py_ssize_t best = n_clusters, k
    cdef int small32 = 2147483647, key32
    cdef long long small64 = 9223372036854775807, key64
    if floating is float:
        for k in range(n_clusters):
            key32 = fastem_key_f32(half_sq_norms[k] - dots_row[k])
            small32 = key32 if key32 < small32 else small32
        for k in range(n_clusters):
            key32 = fastem_key_f32(half_sq_norms[k] - dots_row[k])
            best = k if (key32 == small32 and k < best) else best
    else:
        for k in range(n_clusters):
            key64 = fastem_key_f64(half_sq_norms[k] - dots_row[k])
            small64 = key64 if key64 < small64 else small64
        for k in range(n_clusters):
            key64 = fastem_key_f64(half_sq_norms[k] - dots_row[k])
            best = k if (key64 == small64 and k < best) else best
    return best


cdef inline void _block_argmin(const floating* half_sq_norms, const floating* dots,
                               Py_ssize_t m, Py_ssize_t n_clusters,
                               Py_ssize_t* best_idx) noexcept nogil:
    """Nearest cluster of each of the m rows of ``dots`` (lowest index on ties).

    The scan or keyed path is chosen once per block: choosing inside the row loop
    keeps the compiler from optimising either.
    """
    cdef Py_ssize_t i
    if n_clusters < _KEYED_ARGMIN_MIN_CLUSTERS:
        for i in range(m):
            best_idx[i] = _argmin_scan(half_sq_norms, dots + i * n_clusters, n_clusters)
    else:
        for i in range(m):
            best_idx[i] = _argmin_keyed(half_sq_norms, dots + i * n_clusters, n_clusters)


cdef inline double _sq_dist_f64(const floating* x, const floating* point,
                                Py_ssize_t n_features) noexcept nogil:
    """sum_j (x_j - point_j)^2, each operand converted to float64 first.

    Four interleaved partial sums (features j = 0, 1, 2, 3 mod 4), added in a fixed
    order at the end: without fast-math the compiler keeps one sum's strict order, a
    serial chain of additions.  Four chains stay deterministic and were measured faster
    (k-means++ update on 200,000 x 64 float32: 4.2 -> 3.1 ms per call, 2 threads)."""
    cdef double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0, d0, d1, d2, d3
    cdef Py_ssize_t j = 0
    while j + 4 <= n_features:
        d0 = <double>x[j] - <double>point[j]
        d1 = <double>x[j + 1] - <double>point[j + 1]
        d2 = <double>x[j + 2] - <double>point[j + 2]
        d3 = <double>x[j + 3] - <double>point[j + 3]
        a0 += d0 * d0
        a1 += d1 * d1
        a2 += d2 * d2
        a3 += d3 * d3
        j += 4
    while j < n_features:
        d0 = <double>x[j] - <double>point[j]
        a0 += d0 * d0
        j += 1
    return (a0 + a1) + (a2 + a3)


cdef inline double _sq_norm_f64(const floating* x, Py_ssize_t n_features) noexcept nogil:
    cdef double acc = 0.0
    cdef Py_ssize_t j
    for j in range(n_features):
        acc += <double>x[j] * <double>x[j]
    return acc


cdef void _assign_block(const floating* X, const floating* centers,
                        const floating* half_sq_norms, floating* dots,
                        int* labels, double* min_sq_dist,
                        Py_ssize_t start, Py_ssize_t stop,
                        Py_ssize_t n_clusters, Py_ssize_t n_features) noexcept nogil:
    """Labels and squared distances of samples [start, stop) (one block)."""
    cdef Py_ssize_t i, best
    cdef Py_ssize_t best_idx[_BLOCK]
    cdef floating best_val
    cdef const floating* x
    cdef double d2
    _block_dots(X + start * n_features, centers, dots,
                <int>(stop - start), <int>n_clusters, <int>n_features)
    _block_argmin(half_sq_norms, dots, stop - start, n_clusters, best_idx)
    for i in range(stop - start):
        best = best_idx[i]
        best_val = half_sq_norms[best] - dots[i * n_clusters + best]
        labels[start + i] = <int>best
        x = X + (start + i) * n_features
        # ||x - c||^2 = ||x||^2 + 2 (||c||^2/2 - x.c); clipped at 0 against cancellation
        d2 = _sq_norm_f64(x, n_features) + 2.0 * <double>best_val
        min_sq_dist[start + i] = d2 if d2 > 0.0 else 0.0


cdef void _lloyd_slot(const floating* X, const double* sample_weight,
                      const floating* centers, const floating* half_sq_norms,
                      floating* dots, int* labels, double* part_sums, double* part_weights,
                      Py_ssize_t start, Py_ssize_t stop,
                      Py_ssize_t n_clusters, Py_ssize_t n_features) noexcept nogil:
    """Assign samples [start, stop) and add w_i x_i into this slot's (zeroed) partial rows."""
    cdef Py_ssize_t b_start, b_stop, i, j, best
    cdef Py_ssize_t best_idx[_BLOCK]
    cdef const floating* x
    cdef double* row
    cdef double w
    b_start = start
    while b_start < stop:
        b_stop = _block_stop(b_start, stop)
        _block_dots(X + b_start * n_features, centers, dots,
                    <int>(b_stop - b_start), <int>n_clusters, <int>n_features)
        _block_argmin(half_sq_norms, dots, b_stop - b_start, n_clusters, best_idx)
        for i in range(b_stop - b_start):
            best = best_idx[i]
            labels[b_start + i] = <int>best
            w = sample_weight[b_start + i]
            part_weights[best] += w
            x = X + (b_start + i) * n_features
            row = part_sums + best * n_features
            for j in range(n_features):
                row[j] += w * <double>x[j]
        b_start = b_stop


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


cdef void _potentials_slot(const floating* X, const double* sample_weight,
                           const double* cand_t, const double* cand_sq,
                           const double* closest_sq_dist, double* part, Py_ssize_t start,
                           Py_ssize_t stop, Py_ssize_t n_trials, Py_ssize_t n_features,
                           double* z, double* dots) noexcept nogil:
    """part[t] += w_i min(closest_i, ||x_i - cand_t||^2) for i in [start, stop), in order.

    Block by block, as numba does: z = the block in float64 (m x D), dots = z cand_t
    (one dgemm; cand_t is D x T row-major), ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2
    clamped at 0.  z and dots are this thread's BLOCK x D and BLOCK x T buffers.
    """
    cdef Py_ssize_t b, m, i, j, t
    cdef double closest, w, d2, v, x_sq
    cdef const floating* x
    cdef int ld = <int>(n_features if n_features > 1 else 1)
    b = start
    while b < stop:
        m = _block_stop(b, stop) - b
        for i in range(m):
            x = X + (b + i) * n_features
            for j in range(n_features):
                z[i * n_features + j] = <double>x[j]
        # row-major dots (m x T) = z (m x D) cand_t (D x T); column-major BLAS computes
        # dots^T (T x m) = cand_t^T (T x D, ld T) z^T (D x m, ld D)
        _gemm(c'N', c'N', <int>n_trials, <int>m, <int>n_features, cand_t, <int>n_trials,
              z, ld, 0.0, dots, <int>n_trials)
        for i in range(m):
            x_sq = 0.0
            for j in range(n_features):
                v = z[i * n_features + j]
                x_sq = x_sq + v * v
            closest = closest_sq_dist[b + i]
            w = sample_weight[b + i]
            for t in range(n_trials):
                d2 = x_sq - 2.0 * dots[i * n_trials + t] + cand_sq[t]
                if d2 < 0.0:
                    d2 = 0.0
                part[t] += w * (d2 if d2 < closest else closest)
        b += m


cdef void _update_closest_block(const floating* X, const floating* center,
                                double* closest_sq_dist, Py_ssize_t start, Py_ssize_t stop,
                                Py_ssize_t n_features) noexcept nogil:
    cdef Py_ssize_t i
    cdef double d2
    for i in range(start, stop):
        d2 = _sq_dist_f64(X + i * n_features, center, n_features)
        if d2 < closest_sq_dist[i]:
            closest_sq_dist[i] = d2


# ---------------------------------------------------------------------------
# Public kernels
# ---------------------------------------------------------------------------

def assign_labels(const floating[:, ::1] X, const floating[:, ::1] centers,
                  int[::1] labels, double[::1] min_sq_dist, n_threads):
    """Nearest center of every sample.

    Follows the contract of ``fastem.kernels.reference.kmeans.assign_labels``.

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
    cdef Py_ssize_t b, start, stop
    cdef floating* half_sq_norms = <floating*>_half_sq_norms(centers)
    cdef floating* dots = NULL
    try:
        # one (BLOCK x K) gemm output buffer per thread, indexed by threadid()
        dots = <floating*>_alloc(<size_t>n_team * _BLOCK * n_clusters, sizeof(floating), False)
        for b in prange(n_blocks, nogil=True, schedule='static', num_threads=n_team):
            start = b * _BLOCK
            stop = _block_stop(start, n_samples)
            _assign_block(&X[0, 0], &centers[0, 0], half_sq_norms,
                          dots + <Py_ssize_t>threadid() * _BLOCK * n_clusters,
                          &labels[0], &min_sq_dist[0], start, stop, n_clusters, n_features)
    finally:
        free(dots)
        free(half_sq_norms)


def lloyd_step(const floating[:, ::1] X, const double[::1] sample_weight,
               const floating[:, ::1] centers, int[::1] labels,
               double[:, ::1] sums, double[::1] weight_sums, n_threads):
    """One Lloyd iteration's data pass: assignment fused with the weighted center sums.

    Follows the contract of ``fastem.kernels.reference.kmeans.lloyd_step``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64, C-contiguous
        Samples, read.
    sample_weight : ndarray of shape (n_samples,), float64
        Non-negative sample weights, read.
    centers : ndarray of shape (n_clusters, n_features), X's dtype, C-contiguous
        Centers, read.
    labels : ndarray of shape (n_samples,), int32
        Written: nearest center of each sample under ``centers``.
    sums : ndarray of shape (n_clusters, n_features), float64
        Written: ``sum_{i: label_i = k} w_i x_i``.
    weight_sums : ndarray of shape (n_clusters,), float64
        Written: ``sum_{i: label_i = k} w_i``.
    n_threads : int
        Number of OpenMP threads (results do not depend on it).
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
    cdef Py_ssize_t slot, start, stop
    cdef Py_ssize_t slot_len = n_clusters * n_features
    cdef floating* half_sq_norms = NULL
    cdef floating* dots = NULL
    cdef double* part_sums = NULL
    cdef double* part_weights = NULL
    try:
        # per-slot partial results, zeroed: slot s owns rows [s*K, (s+1)*K)
        part_sums = <double*>_alloc(<size_t>n_slots * slot_len, sizeof(double), True)
        part_weights = <double*>_alloc(<size_t>n_slots * n_clusters, sizeof(double), True)
        if n_samples > 0:
            half_sq_norms = <floating*>_half_sq_norms(centers)
            dots = <floating*>_alloc(<size_t>n_team * _BLOCK * n_clusters,
                                     sizeof(floating), False)
            for slot in prange(n_slots, nogil=True, schedule='static', num_threads=n_team):
                start = _slot_start(slot, n_slots, n_blocks)
                stop = _slot_stop(slot, n_slots, n_blocks, n_samples)
                _lloyd_slot(&X[0, 0], &sample_weight[0], &centers[0, 0], half_sq_norms,
                            dots + <Py_ssize_t>threadid() * _BLOCK * n_clusters,
                            &labels[0], part_sums + slot * slot_len,
                            part_weights + slot * n_clusters,
                            start, stop, n_clusters, n_features)
        # fixed slot order: bit-identical for any thread count
        with nogil:
            _sum_slots(part_weights, n_slots, n_clusters,
                       &weight_sums[0] if n_clusters > 0 else NULL)
            _sum_slots(part_sums, n_slots, slot_len, &sums[0, 0] if slot_len > 0 else NULL)
    finally:
        free(part_sums)
        free(part_weights)
        free(dots)
        free(half_sq_norms)


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


def kmeanspp_trial_potentials(const floating[:, ::1] X, const double[::1] sample_weight,
                              const floating[:, ::1] candidates,
                              const double[::1] closest_sq_dist, double[::1] potentials,
                              n_threads):
    """Potential of each k-means++ candidate center.

    Follows the contract of
    ``fastem.kernels.reference.kmeans.kmeanspp_trial_potentials``:
    ``potentials[t] = sum_i w_i * min(closest_sq_dist_i, ||x_i - candidates_t||^2)``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64, C-contiguous
        Samples, read.
    sample_weight : ndarray of shape (n_samples,), float64
        Sample weights, read.
    candidates : ndarray of shape (n_trials, n_features), X's dtype, C-contiguous
        Candidate centers, read.
    closest_sq_dist : ndarray of shape (n_samples,), float64
        Squared distance of each sample to its nearest chosen center, read.
    potentials : ndarray of shape (n_trials,), float64
        Written.
    n_threads : int
        Number of OpenMP threads (results do not depend on it).
    """
    cdef Py_ssize_t n_samples = X.shape[0], n_features = X.shape[1]
    cdef Py_ssize_t n_trials = candidates.shape[0]
    _check(candidates.shape[1] == n_features, "candidates and X have different n_features")
    _check(sample_weight.shape[0] == n_samples and closest_sq_dist.shape[0] == n_samples,
           "sample_weight / closest_sq_dist do not have n_samples entries")
    _check(potentials.shape[0] == n_trials, "potentials does not have n_trials entries")

    cdef Py_ssize_t n_blocks = _n_blocks(n_samples)
    cdef Py_ssize_t n_slots = _n_slots(n_blocks, 8 * n_trials)
    cdef int n_team = _team_size(n_threads, n_slots)
    cdef Py_ssize_t slot, start, stop, tid, t, j
    # slot s owns partial[s * n_trials : (s + 1) * n_trials], zeroed
    cdef double* partial = <double*>_alloc(<size_t>n_slots * n_trials, sizeof(double), True)
    cdef double* cand_t = NULL  # candidates^T in float64 (D x T) and their squared norms
    cdef double* cand_sq = NULL
    cdef double* z = NULL  # per-thread block buffers
    cdef double* dots = NULL
    try:
        cand_t = <double*>_alloc(<size_t>n_features * n_trials, sizeof(double), False)
        cand_sq = <double*>_alloc(n_trials, sizeof(double), True)
        z = <double*>_alloc(<size_t>n_team * _BLOCK * n_features, sizeof(double), False)
        dots = <double*>_alloc(<size_t>n_team * _BLOCK * n_trials, sizeof(double), False)
        for t in range(n_trials):
            for j in range(n_features):
                cand_t[j * n_trials + t] = <double>candidates[t, j]
                cand_sq[t] += <double>candidates[t, j] * <double>candidates[t, j]
        if n_samples > 0 and n_trials > 0:
            for slot in prange(n_slots, nogil=True, schedule='static', num_threads=n_team):
                tid = threadid()
                start = _slot_start(slot, n_slots, n_blocks)
                stop = _slot_stop(slot, n_slots, n_blocks, n_samples)
                _potentials_slot(&X[0, 0], &sample_weight[0], cand_t, cand_sq,
                                 &closest_sq_dist[0], partial + slot * n_trials,
                                 start, stop, n_trials, n_features,
                                 z + tid * _BLOCK * n_features, dots + tid * _BLOCK * n_trials)
        _sum_slots(partial, n_slots, n_trials,  # fixed slot order
                   &potentials[0] if n_trials > 0 else NULL)
    finally:
        free(partial)
        free(cand_t)
        free(cand_sq)
        free(z)
        free(dots)


def kmeanspp_update_closest(const floating[:, ::1] X, const floating[::1] center,
                            double[::1] closest_sq_dist, n_threads):
    """Add a chosen center to the k-means++ distances, in place.

    Follows the contract of
    ``fastem.kernels.reference.kmeans.kmeanspp_update_closest``:
    ``closest_sq_dist_i = min(closest_sq_dist_i, ||x_i - center||^2)``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64, C-contiguous
        Samples, read.
    center : ndarray of shape (n_features,), X's dtype
        The chosen center, read.
    closest_sq_dist : ndarray of shape (n_samples,), float64
        Read and written in place.
    n_threads : int
        Number of OpenMP threads (results do not depend on it).
    """
    cdef Py_ssize_t n_samples = X.shape[0], n_features = X.shape[1]
    _check(center.shape[0] == n_features, "center and X have different n_features")
    _check(closest_sq_dist.shape[0] == n_samples,
           "closest_sq_dist does not have n_samples entries")
    if n_samples == 0:
        return
    cdef Py_ssize_t n_blocks = _n_blocks(n_samples)
    cdef int n_team = _team_size(n_threads, n_blocks)
    cdef Py_ssize_t b, start, stop
    for b in prange(n_blocks, nogil=True, schedule='static', num_threads=n_team):
        start = b * _BLOCK
        stop = _block_stop(start, n_samples)
        _update_closest_block(&X[0, 0], &center[0], &closest_sq_dist[0],
                              start, stop, n_features)
