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

#: Samples per block. Blocks are fixed by the data size alone, never by the thread count.
BLOCK_SIZE = 256
#: At most this many partial-result slots per reduction (the parallelism of reductions).
MAX_SLOTS = 64
#: Memory budget for all slots of one reduction, in bytes.
SLOT_BUDGET_BYTES = 64 * 2**20

cdef enum:
    _BLOCK = 256
cdef Py_ssize_t _MAX_SLOTS = 64
cdef Py_ssize_t _SLOT_BUDGET_BYTES = 64 * 2**20


# ---------------------------------------------------------------------------
# Python-level helpers (called once per kernel, with the GIL)
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
        raise ValueError(f"fastem cython kmeans kernel: {what}")


cdef void* _alloc(size_t n_items, size_t item_size, bint zero) except NULL:
    """malloc/calloc of at least one item, raising MemoryError on failure."""
    cdef void* p
    if n_items < 1:
        n_items = 1
    p = calloc(n_items, item_size) if zero else malloc(n_items * item_size)
    if p == NULL:
        raise MemoryError()
    return p


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
    cdef char transa = b'T'
    cdef char transb = b'N'
    cdef int ld_in = n_features if n_features > 1 else 1
    cdef int ld_out = n_clusters if n_clusters > 1 else 1
    cdef floating alpha = 1.0
    cdef floating beta = 0.0
    if floating is float:
        sgemm(&transa, &transb, &n_clusters, &n_rows, &n_features, &alpha,
              <float*>centers, &ld_in, <float*>xb, &ld_in, &beta, dots, &ld_out)
    else:
        dgemm(&transa, &transb, &n_clusters, &n_rows, &n_features, &alpha,
              <double*>centers, &ld_in, <double*>xb, &ld_in, &beta, dots, &ld_out)


cdef inline Py_ssize_t _argmin_row(const floating* half_sq_norms, const floating* dots_row,
                                   Py_ssize_t n_clusters, floating* best_val_out) noexcept nogil:
    """Cluster minimising ||c||^2/2 - x.c (strict <: lowest index on ties), and that value."""
    cdef Py_ssize_t best = 0, k
    cdef floating best_val = half_sq_norms[0] - dots_row[0]
    cdef floating val
    for k in range(1, n_clusters):
        val = half_sq_norms[k] - dots_row[k]
        if val < best_val:
            best_val = val
            best = k
    best_val_out[0] = best_val
    return best


cdef inline double _sq_dist_f64(const floating* x, const floating* point,
                                Py_ssize_t n_features) noexcept nogil:
    """sum_j (x_j - point_j)^2, each operand converted to float64 first."""
    cdef double acc = 0.0, diff
    cdef Py_ssize_t j
    for j in range(n_features):
        diff = <double>x[j] - <double>point[j]
        acc += diff * diff
    return acc


cdef inline double _sq_norm_f64(const floating* x, Py_ssize_t n_features) noexcept nogil:
    cdef double acc = 0.0
    cdef Py_ssize_t j
    for j in range(n_features):
        acc += <double>x[j] * <double>x[j]
    return acc


cdef inline Py_ssize_t _slot_start(Py_ssize_t slot, Py_ssize_t n_slots,
                                   Py_ssize_t n_blocks) noexcept nogil:
    """First sample of a slot; slot s covers blocks [s*nb//ns, (s+1)*nb//ns)."""
    return (slot * n_blocks // n_slots) * _BLOCK


cdef inline Py_ssize_t _slot_stop(Py_ssize_t slot, Py_ssize_t n_slots, Py_ssize_t n_blocks,
                                  Py_ssize_t n_samples) noexcept nogil:
    """One past the last sample of a slot (a contiguous run of whole blocks)."""
    cdef Py_ssize_t stop = ((slot + 1) * n_blocks // n_slots) * _BLOCK
    return stop if stop < n_samples else n_samples


cdef void _assign_block(const floating* X, const floating* centers,
                        const floating* half_sq_norms, floating* dots,
                        int* labels, double* min_sq_dist,
                        Py_ssize_t start, Py_ssize_t stop,
                        Py_ssize_t n_clusters, Py_ssize_t n_features) noexcept nogil:
    """Labels and squared distances of samples [start, stop) (one block)."""
    cdef Py_ssize_t i, best
    cdef floating best_val
    cdef const floating* x
    cdef double d2
    _block_dots(X + start * n_features, centers, dots,
                <int>(stop - start), <int>n_clusters, <int>n_features)
    for i in range(stop - start):
        best = _argmin_row(half_sq_norms, dots + i * n_clusters, n_clusters, &best_val)
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
    cdef floating best_val
    cdef const floating* x
    cdef double* row
    cdef double w
    b_start = start
    while b_start < stop:
        b_stop = b_start + _BLOCK if b_start + _BLOCK < stop else stop
        _block_dots(X + b_start * n_features, centers, dots,
                    <int>(b_stop - b_start), <int>n_clusters, <int>n_features)
        for i in range(b_stop - b_start):
            best = _argmin_row(half_sq_norms, dots + i * n_clusters, n_clusters, &best_val)
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
                           const floating* candidates, const double* closest_sq_dist,
                           double* part, Py_ssize_t start, Py_ssize_t stop,
                           Py_ssize_t n_trials, Py_ssize_t n_features) noexcept nogil:
    """part[t] += w_i min(closest_i, ||x_i - cand_t||^2) for i in [start, stop), in order."""
    cdef Py_ssize_t i, t
    cdef double closest, w, d2
    cdef const floating* x
    for i in range(start, stop):
        closest = closest_sq_dist[i]
        w = sample_weight[i]
        x = X + i * n_features
        for t in range(n_trials):
            d2 = _sq_dist_f64(x, candidates + t * n_features, n_features)
            part[t] += w * (d2 if d2 < closest else closest)


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
            stop = start + _BLOCK if start + _BLOCK < n_samples else n_samples
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
    cdef Py_ssize_t slot, start, stop, k, j, s
    cdef Py_ssize_t slot_len = n_clusters * n_features
    cdef double acc
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
            for k in range(n_clusters):
                acc = 0.0
                for s in range(n_slots):
                    acc = acc + part_weights[s * n_clusters + k]
                weight_sums[k] = acc
                for j in range(n_features):
                    acc = 0.0
                    for s in range(n_slots):
                        acc = acc + part_sums[s * slot_len + k * n_features + j]
                    sums[k, j] = acc
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
    cdef Py_ssize_t slot, start, stop, s
    cdef double total = 0.0
    cdef double* partial = <double*>_alloc(n_slots, sizeof(double), True)
    try:
        for slot in prange(n_slots, nogil=True, schedule='static', num_threads=n_team):
            start = _slot_start(slot, n_slots, n_blocks)
            stop = _slot_stop(slot, n_slots, n_blocks, n_samples)
            partial[slot] = _inertia_slot(&X[0, 0], &sample_weight[0], &centers[0, 0],
                                          &labels[0], start, stop, n_features)
        for s in range(n_slots):  # fixed slot order
            total = total + partial[s]
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
    cdef Py_ssize_t slot, start, stop, t, s
    cdef double acc
    # slot s owns partial[s * n_trials : (s + 1) * n_trials], zeroed
    cdef double* partial = <double*>_alloc(<size_t>n_slots * n_trials, sizeof(double), True)
    try:
        if n_samples > 0 and n_trials > 0:
            for slot in prange(n_slots, nogil=True, schedule='static', num_threads=n_team):
                start = _slot_start(slot, n_slots, n_blocks)
                stop = _slot_stop(slot, n_slots, n_blocks, n_samples)
                _potentials_slot(&X[0, 0], &sample_weight[0], &candidates[0, 0],
                                 &closest_sq_dist[0], partial + slot * n_trials,
                                 start, stop, n_trials, n_features)
        for t in range(n_trials):  # fixed slot order
            acc = 0.0
            for s in range(n_slots):
                acc = acc + partial[s * n_trials + t]
            potentials[t] = acc
    finally:
        free(partial)


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
        stop = start + _BLOCK if start + _BLOCK < n_samples else n_samples
        _update_closest_block(&X[0, 0], &center[0], &closest_sq_dist[0],
                              start, stop, n_features)
