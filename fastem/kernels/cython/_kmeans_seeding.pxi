# The k-means++ seeding kernels (included by kmeans.pyx after _kmeans_distances.pxi):
# their helpers and kmeanspp_trial_potentials / kmeanspp_update_closest.

cdef extern from *:
    """
    /* n floats widened to doubles, for _potentials_slot's float64 copy of a block:
       compiled for AVX2 and the baseline (the baseline's 16-byte loads made the copy,
       which streams X from memory, 60% of a call: 200,000 x 64 float32, 7 candidates,
       one thread). */
    static FASTEM_CLONES void fastem_widen_f32(const float* __restrict x,
                                               double* __restrict z, Py_ssize_t n) {
        for (Py_ssize_t j = 0; j < n; j++) z[j] = (double)x[j];
    }
    """
    void fastem_widen_f32(const float* x, double* z, Py_ssize_t n) noexcept nogil


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
    cdef double closest, w, d2, x_sq
    cdef const floating* x
    cdef int ld = <int>(n_features if n_features > 1 else 1)
    b = start
    while b < stop:
        m = _block_stop(b, stop) - b
        if floating is float:
            fastem_widen_f32(X + b * n_features, z, m * n_features)
        else:
            for i in range(m):
                x = X + (b + i) * n_features
                for j in range(n_features):
                    z[i * n_features + j] = x[j]
        # row-major dots (m x T) = z (m x D) cand_t (D x T); column-major BLAS computes
        # dots^T (T x m) = cand_t^T (T x D, ld T) z^T (D x m, ld D)
        _gemm(c'N', c'N', <int>n_trials, <int>m, <int>n_features, cand_t, <int>n_trials,
              z, ld, 0.0, dots, <int>n_trials)
        for i in range(m):
            # four partial sums, not one serial chain of D dependent additions (200,000 x
            # 64 float32, 7 candidates, 2 threads: 5.7 -> 4.7 ms a call)
            x_sq = _sq_norm_f64(z + i * n_features, n_features)
            closest = closest_sq_dist[b + i]
            w = sample_weight[b + i]
            for t in range(n_trials):
                d2 = x_sq - 2.0 * dots[i * n_trials + t] + cand_sq[t]
                if d2 < 0.0:
                    d2 = 0.0
                part[t] += w * (d2 if d2 < closest else closest)
        b += m


cdef extern from *:
    """
    /* kmeanspp_update_closest's loop, for X of either dtype: closest[i] = min(closest[i],
       sum_j (x_ij - c_j)^2) over rows [start, stop), each distance by four interleaved
       float64 partial sums (the fast distance, as _sq_dist_f64), lane l summing the
       features j = l mod 4.  With gcc the four sums are one vector of four doubles (it
       would otherwise pair them into 2-wide vectors even for AVX2), and the loop is
       compiled twice, for AVX2 and the baseline, one picked at load time: the baseline's
       2-wide vectors made this pass 2.5x slower than numba's (200,000 x 64 float32;
       3.2 -> 1.3 ms, numba 1.2).  _sq_dist_f64 keeps its four scalar sums (the same
       bits): this vector form, compiled for the baseline only, made the inertia pass
       on 200,000 x 64 2.2x slower and Yinyang's step 9% slower. */
    #if defined(__GNUC__)
    typedef double fastem_v4d __attribute__((vector_size(32)));
    #define FASTEM_ACC4_DECL fastem_v4d acc = {0.0, 0.0, 0.0, 0.0};
    #define FASTEM_ACC4_ADD(x, c, j) {                                                \
        fastem_v4d xv = {(double)x[j], (double)x[j + 1], (double)x[j + 2], (double)x[j + 3]}; \
        fastem_v4d cv = {(double)c[j], (double)c[j + 1], (double)c[j + 2], (double)c[j + 3]}; \
        fastem_v4d dv = xv - cv;                                                        \
        acc += dv * dv; }
    #else
    #define FASTEM_ACC4_DECL double acc[4] = {0.0, 0.0, 0.0, 0.0};
    #define FASTEM_ACC4_ADD(x, c, j) {                                                \
        for (int l = 0; l < 4; l++) {                                                   \
            double dl = (double)x[j + l] - (double)c[j + l]; acc[l] += dl * dl; } }
    #endif
    #define FASTEM_UPDATE_CLOSEST(NAME, T)                                              \
    static FASTEM_CLONES void NAME(const T* X, const T* c, double* closest,            \
                                   Py_ssize_t start, Py_ssize_t stop, Py_ssize_t n) {  \
        for (Py_ssize_t i = start; i < stop; i++) {                                     \
            const T* x = X + i * n;                                                     \
            FASTEM_ACC4_DECL                                                            \
            double d, a0;                                                               \
            Py_ssize_t j = 0;                                                           \
            for (; j + 4 <= n; j += 4) FASTEM_ACC4_ADD(x, c, j)                      \
            a0 = acc[0];                                                                \
            for (; j < n; j++) { d = (double)x[j] - (double)c[j]; a0 += d * d; }        \
            d = (a0 + acc[1]) + (acc[2] + acc[3]);                                      \
            if (d < closest[i]) closest[i] = d;                                         \
        }                                                                               \
    }
    FASTEM_UPDATE_CLOSEST(fastem_update_closest_f32, float)
    FASTEM_UPDATE_CLOSEST(fastem_update_closest_f64, double)
    """
    void fastem_update_closest_f32(const float* X, const float* c, double* closest,
                                   Py_ssize_t start, Py_ssize_t stop, Py_ssize_t n) noexcept nogil
    void fastem_update_closest_f64(const double* X, const double* c, double* closest,
                                   Py_ssize_t start, Py_ssize_t stop, Py_ssize_t n) noexcept nogil


cdef inline void _update_closest_block(const floating* X, const floating* center,
                                       double* closest_sq_dist, Py_ssize_t start,
                                       Py_ssize_t stop, Py_ssize_t n_features) noexcept nogil:
    if floating is float:
        fastem_update_closest_f32(X, center, closest_sq_dist, start, stop, n_features)
    else:
        fastem_update_closest_f64(X, center, closest_sq_dist, start, stop, n_features)

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
