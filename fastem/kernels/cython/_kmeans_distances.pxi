# Distances to the centers for the K-means kernels (included by kmeans.pyx, whose
# cimports and constants it uses): the exact float64 distance, the GEMM fast path with
# the rounding-error bound that certifies it, the direct distances for few features,
# the argmin helpers and the per-block assignment.

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


cdef double _error_scale(const floating[:, ::1] centers):
    """The largest ``||c||^2 / 2`` in float64, slightly inflated (numba's _error_scale)."""
    cdef Py_ssize_t k, j
    cdef double acc, h_max = 0.0
    for k in range(centers.shape[0]):
        acc = 0.0
        for j in range(centers.shape[1]):
            acc += <double>centers[k, j] * <double>centers[k, j]
        if 0.5 * acc > h_max:
            h_max = 0.5 * acc
    return h_max * (1.0 + 1e-12)


cdef inline double _unit_roundoff(const floating* any_ptr) noexcept nogil:
    """Unit roundoff of the data dtype (the argument only selects the fused type)."""
    if floating is float:
        return 2.0 ** -24
    else:
        return 2.0 ** -53


cdef inline double _rel_error(Py_ssize_t n_features) noexcept nogil:
    """Relative error bound of a float64 sum of n_features squared differences, in any
    order (and of its square root), with room to spare: (D + 8) * 2^-53."""
    return (n_features + 8) * 2.0 ** -53


# ---------------------------------------------------------------------------
# nogil helpers
# ---------------------------------------------------------------------------

#: From this many clusters on, the argmin runs row by row as vectorisable integer
#: min-reductions (see numba/kmeans.py: a float min-reduction would need finite-math
#: flags); below, it scans the clusters with all rows of the block at once.
cdef enum:
    _KEYED_ARGMIN_MIN_CLUSTERS = 32
    # up to this many features the exact distances are computed directly, for fewer /
    # more than _KEYED_ARGMIN_MIN_CLUSTERS clusters (numba's DIRECT_MAX_FEATURES_*)
    _DIRECT_MAX_FEATURES_FEW = 2
    _DIRECT_MAX_FEATURES_MANY = 8


cdef enum:
    # rows per gemm for many clusters, and for the bounded step's tiles (numba's
    # GEMM_ROWS): a 256-row sgemm for K = 256 pays BLAS's per-call cost 4 times as often
    _GEMM_ROWS = 4 * _BLOCK


cdef inline Py_ssize_t _gemm_rows(Py_ssize_t n_clusters) noexcept nogil:
    """Rows per gemm (numba's ``_gemm_rows``): _GEMM_ROWS from _KEYED_ARGMIN_MIN_CLUSTERS
    clusters on, else one block."""
    return _BLOCK if n_clusters < _KEYED_ARGMIN_MIN_CLUSTERS else _GEMM_ROWS


cdef inline bint _direct(Py_ssize_t n_features, Py_ssize_t n_clusters) noexcept nogil:
    """True where ``_direct_block`` beats gemm + certification (numba's ``_direct``)."""
    if n_clusters < _KEYED_ARGMIN_MIN_CLUSTERS:
        return n_features <= _DIRECT_MAX_FEATURES_FEW
    return n_features <= _DIRECT_MAX_FEATURES_MANY


cdef inline Py_ssize_t _direct_rows(Py_ssize_t n_features) noexcept nogil:
    """Rows of ``_direct_block``'s transposed block and centers: at least two."""
    return n_features if n_features > 2 else 2


cdef double* _transposed_f64(const floating[:, ::1] centers) except NULL:
    """centers^T as a (max(D, 2), K) float64 array, a second row of zeros for D = 1
    (freed by the caller)."""
    cdef Py_ssize_t n_clusters = centers.shape[0], n_features = centers.shape[1]
    cdef double* out = <double*>_alloc(n_clusters * _direct_rows(n_features), sizeof(double),
                                       True)
    cdef Py_ssize_t k, j
    for k in range(n_clusters):
        for j in range(n_features):
            out[j * n_clusters + k] = <double>centers[k, j]
    return out


cdef inline void _block_dots(const floating* xb, const floating* centers, floating* dots,
                             int n_rows, int n_clusters, int n_features) noexcept nogil:
    """``dots = X_b @ centers.T`` (row-major, n_rows x n_clusters) with one gemm.

    In column-major BLAS terms the row-major result is ``C = A^T B`` with A the
    row-major centers seen as a (D x K) column-major matrix and B the row-major block
    seen as (D x B): transa='T', transb='N', m=K, n=B, k=D.  (The transposed layout,
    which numba uses, made OpenBLAS's sgemm 2.6x slower here: N=1e6, D=16, K=16.)
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
       the well-defined way to read the bits and compiles to a register move.  The map
       is its own inverse on keys (fastem_unkey_*), except that -0.0 comes back +0.0. */
    static inline int32_t fastem_key_f32(float v) {
        int32_t b; memcpy(&b, &v, sizeof b);
        return b == INT32_MIN ? 0 : b ^ ((b >> 31) & INT32_MAX);
    }
    static inline int64_t fastem_key_f64(double v) {
        int64_t b; memcpy(&b, &v, sizeof b);
        return b == INT64_MIN ? 0 : b ^ ((b >> 63) & INT64_MAX);
    }
    static inline float fastem_unkey_f32(int32_t k) {
        int32_t b = k ^ ((k >> 31) & INT32_MAX); float v; memcpy(&v, &b, sizeof v);
        return v;
    }
    static inline double fastem_unkey_f64(int64_t k) {
        int64_t b = k ^ ((k >> 63) & INT64_MAX); double v; memcpy(&v, &b, sizeof v);
        return v;
    }
    /* v, as rounded on its own.  The empty asm claims to change v, so the compiler
       cannot fuse the multiply that made v with the add that uses it into an FMA (gcc
       and clang contract a*b + c by default whenever the target has FMA: always on
       aarch64, on x86-64 with -march=haswell or later).  No instruction is emitted.
       Other compilers: MSVC does not contract under its default /fp:precise. */
    static inline double fastem_rounded(double v) {
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__SSE2_MATH__))
        __asm__("" : "+x"(v));
    #elif defined(__GNUC__) && defined(__aarch64__)
        __asm__("" : "+w"(v));
    #elif defined(__GNUC__)
        __asm__("" : "+m"(v));
    #endif
        return v;
    }
    """
    int fastem_key_f32(float v) noexcept nogil
    long long fastem_key_f64(double v) noexcept nogil
    float fastem_unkey_f32(int v) noexcept nogil
    double fastem_unkey_f64(long long v) noexcept nogil
    double fastem_rounded(double v) noexcept nogil


cdef extern from *:
    """
    /* The exact distance's loops across the rows of a block, for _direct_block:
       row[i] = (x[i] - c)^2, and row[i] = row[i] + (x[i] - c)^2, every operation rounded
       on its own.  Contraction into fused multiply-adds is switched off for these
       functions alone (gcc's optimize attribute, clang's fp pragma), so the loops still
       vectorise; fastem_rounded's barrier would keep them scalar. */
    static FASTEM_NO_CONTRACT void fastem_sq_diff(double* row, const double* x, double c,
                                                  Py_ssize_t m) {
    #if defined(__clang__)
    #pragma clang fp contract(off)
    #endif
        for (Py_ssize_t i = 0; i < m; i++) {
            double d = x[i] - c;
            row[i] = d * d;
        }
    }
    static FASTEM_NO_CONTRACT void fastem_add_sq_diff(double* row, const double* x,
                                                      double c, Py_ssize_t m) {
    #if defined(__clang__)
    #pragma clang fp contract(off)
    #endif
        for (Py_ssize_t i = 0; i < m; i++) {
            double d = x[i] - c;
            row[i] = row[i] + d * d;
        }
    }
    /* _direct_block's search for one or two features (numba's _nearest_of_pairs): four
       centers per pass over the rows, each distance written out, so the running minimum
       stays in registers across them; centers in index order, so ties go to the lowest.
       c0, c1: the centers' two coordinates (zeros, with x1 zeros, for one feature). */
    static FASTEM_NO_CONTRACT void fastem_nearest_of_pairs(
            const double* x0, const double* x1, const double* c0, const double* c1,
            Py_ssize_t n_clusters, Py_ssize_t m, int* best_idx, double* best_dist) {
    #if defined(__clang__)
    #pragma clang fp contract(off)
    #endif
        for (Py_ssize_t i = 0; i < m; i++) {
            best_idx[i] = 0;
            best_dist[i] = INFINITY;
        }
        for (Py_ssize_t k = 0; k < n_clusters; k += 4) {
            /* past the end, the block repeats the last center: it cannot win a strict
               comparison against itself */
            Py_ssize_t last = n_clusters - 1;
            int ka = (int)k, kb = (int)(k + 1 < last ? k + 1 : last);
            int kc = (int)(k + 2 < last ? k + 2 : last), kd = (int)(k + 3 < last ? k + 3 : last);
            double a0 = c0[ka], b0 = c0[kb], e0 = c0[kc], d0 = c0[kd];
            double a1 = c1[ka], b1 = c1[kb], e1 = c1[kc], d1 = c1[kd];
            for (Py_ssize_t i = 0; i < m; i++) {
                double u = x0[i], v = x1[i], p, q, va, vb, vc, vd;
                p = u - a0; q = v - a1; va = p * p; va = va + q * q;
                p = u - b0; q = v - b1; vb = p * p; vb = vb + q * q;
                p = u - e0; q = v - e1; vc = p * p; vc = vc + q * q;
                p = u - d0; q = v - d1; vd = p * p; vd = vd + q * q;
                double low = best_dist[i];
                int idx = best_idx[i];
                idx = va < low ? ka : idx; low = va < low ? va : low;
                idx = vb < low ? kb : idx; low = vb < low ? vb : low;
                idx = vc < low ? kc : idx; low = vc < low ? vc : low;
                idx = vd < low ? kd : idx; low = vd < low ? vd : low;
                best_idx[i] = idx;
                best_dist[i] = low;
            }
        }
    }
    """
    void fastem_sq_diff(double* row, const double* x, double c, Py_ssize_t m) noexcept nogil
    void fastem_add_sq_diff(double* row, const double* x, double c, Py_ssize_t m) noexcept nogil
    void fastem_nearest_of_pairs(const double* x0, const double* x1, const double* c0,
                                 const double* c1, Py_ssize_t n_clusters, Py_ssize_t m,
                                 int* best_idx, double* best_dist) noexcept nogil

cdef inline void _argmin_scan(const floating* half_sq_norms, const floating* dots,
                              Py_ssize_t m, Py_ssize_t n_clusters, int* best_idx,
                              floating* best_val, floating* second_val) noexcept nogil:
    """``_block_argmin`` for few clusters: clusters in the outer loop and rows in the
    inner one (a strided column of ``dots``), branch-free (a min, a max and a select: a
    tie makes the runner-up equal to the best), so it vectorises across rows.  A
    per-row scan would be a serial chain of dependent min/max per row."""
    cdef Py_ssize_t i, k
    cdef const floating* col
    cdef floating h, val, low, high, second
    cdef int kk, idx
    for i in range(m):
        best_idx[i] = 0
        best_val[i] = half_sq_norms[0] - dots[i * n_clusters]
        second_val[i] = <floating>INFINITY
    for k in range(1, n_clusters):
        h = half_sq_norms[k]
        col = dots + k
        kk = <int>k  # the floats' lane width (for float32) helps vectorisation
        for i in range(m):
            # every load unconditional, and the new best value selected by ``val > low``
            # (the same min as ``val < low``): gcc if-converts, hence vectorises, this
            # form only (two selects on one comparison defeat it)
            val = h - col[i * n_clusters]
            low = best_val[i]
            second = second_val[i]
            idx = best_idx[i]
            high = val if val > low else low
            second_val[i] = high if high < second else second
            best_idx[i] = kk if val < low else idx
            best_val[i] = low if val > low else val


cdef extern from *:
    """
    /* _block_argmin for many clusters (n >= 2), row by row, by branch-free integer
       min-reductions over keys that order like the floats (fastem_key_*): the smallest
       key, then in one more pass its lowest index, how many clusters share it, and the
       smallest of the other keys; the runner-up is the smallest key again if shared,
       else that one.  The second pass excludes the smallest key by an arithmetic select
       (key ^ (mask & (key ^ MAX))): a conditional expression there keeps gcc scalar.
       Compiled for AVX2 and the baseline, one picked at load time: the baseline's 4-lane
       integer vectors made this argmin 1.6x numba's (200,000 x 64 x 256 float32). */
    #define FASTEM_ARGMIN_KEYED(NAME, T, KT, KEY, UNKEY, KMAX)                           \
    static FASTEM_CLONES void NAME(const T* __restrict h, const T* __restrict dots,     \
                                   Py_ssize_t m, int n, int* __restrict best_idx,       \
                                   T* __restrict best_val, T* __restrict second_val) {  \
        for (Py_ssize_t i = 0; i < m; i++) {                                            \
            const T* row = dots + i * n;                                                \
            KT small = KMAX, above = KMAX, key, mask;                                   \
            int best = n, n_small = 0, cand, k;                                         \
            for (k = 0; k < n; k++) {                                                   \
                key = KEY(h[k] - row[k]);                                               \
                small = key < small ? key : small;                                      \
            }                                                                           \
            for (k = 0; k < n; k++) {                                                   \
                key = KEY(h[k] - row[k]);                                               \
                cand = key == small ? k : n;                                            \
                best = cand < best ? cand : best;                                       \
                mask = -(KT)(key == small);                                             \
                n_small -= (int)mask;                                                   \
                key = key ^ (mask & (key ^ KMAX));                                      \
                above = key < above ? key : above;                                      \
            }                                                                           \
            best_idx[i] = best;                                                         \
            best_val[i] = UNKEY(small);                                                 \
            second_val[i] = UNKEY(n_small > 1 ? small : above);                         \
        }                                                                               \
    }
    FASTEM_ARGMIN_KEYED(fastem_argmin_keyed_f32, float, int32_t, fastem_key_f32,
                        fastem_unkey_f32, INT32_MAX)
    FASTEM_ARGMIN_KEYED(fastem_argmin_keyed_f64, double, int64_t, fastem_key_f64,
                        fastem_unkey_f64, INT64_MAX)
    """
    void fastem_argmin_keyed_f32(const float* h, const float* dots, Py_ssize_t m, int n,
                                 int* best_idx, float* best_val,
                                 float* second_val) noexcept nogil
    void fastem_argmin_keyed_f64(const double* h, const double* dots, Py_ssize_t m, int n,
                                 int* best_idx, double* best_val,
                                 double* second_val) noexcept nogil


cdef inline void _block_argmin(const floating* half_sq_norms, const floating* dots,
                               Py_ssize_t m, Py_ssize_t n_clusters, int* best_idx,
                               floating* best_val, floating* second_val) noexcept nogil:
    """Per row of an m-row ``_block_dots`` block: the cluster minimising ||c||^2/2 - x.c
    (lowest index on ties) into ``best_idx``, that value into ``best_val`` and the
    smallest value of the other clusters into ``second_val`` (inf if K = 1).

    The scan or keyed path is chosen once per block: choosing inside the row loop
    keeps the compiler from optimising either.
    """
    if n_clusters < _KEYED_ARGMIN_MIN_CLUSTERS:
        _argmin_scan(half_sq_norms, dots, m, n_clusters, best_idx, best_val, second_val)
    elif floating is float:
        fastem_argmin_keyed_f32(half_sq_norms, dots, m, <int>n_clusters, best_idx, best_val,
                                second_val)
    else:
        fastem_argmin_keyed_f64(half_sq_norms, dots, m, <int>n_clusters, best_idx, best_val,
                                second_val)


cdef inline double _sq_dist_f64(const floating* x, const floating* point,
                                Py_ssize_t n_features) noexcept nogil:
    """sum_j (x_j - point_j)^2, each operand converted to float64 first (fast: not the
    exact distance's order, but within its relative error bound ``_rel_error``).

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
    """||x||^2 in float64 by four interleaved partial sums rather than one serial chain
    of D dependent additions (any order is within the error ``_gemm_error`` allows)."""
    cdef double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0
    cdef Py_ssize_t j = 0
    while j + 4 <= n_features:
        a0 += <double>x[j] * <double>x[j]
        a1 += <double>x[j + 1] * <double>x[j + 1]
        a2 += <double>x[j + 2] * <double>x[j + 2]
        a3 += <double>x[j + 3] * <double>x[j + 3]
        j += 4
    while j < n_features:
        a0 += <double>x[j] * <double>x[j]
        j += 1
    return (a0 + a1) + (a2 + a3)


cdef double _exact_sq_dist(const floating* x, const floating* center,
                           Py_ssize_t n_features) noexcept nogil:
    """The assignment's defining distance: ``sum_j (x_j - c_j)^2`` in float64, summed in
    feature order, each operation rounded: one accumulator, no reassociation, and
    ``fastem_rounded`` keeps the square from being fused into the add.  The reference
    and numba's ``_exact_sq_dist`` compute exactly these bits.  (gcc may compute several
    squares with one vector multiply, which rounds each alike; the additions stay one
    chain in feature order.)"""
    cdef double acc = 0.0, diff
    cdef Py_ssize_t j
    for j in range(n_features):
        diff = <double>x[j] - <double>center[j]
        acc = acc + fastem_rounded(diff * diff)
    return acc


cdef Py_ssize_t _exact_row(const floating* x, const floating* centers, Py_ssize_t n_clusters,
                           Py_ssize_t n_features, double* dist) noexcept nogil:
    """Exact distances of x to every center into ``dist``; returns the nearest (lowest
    index on ties)."""
    cdef Py_ssize_t best = 0, k
    for k in range(n_clusters):
        dist[k] = _exact_sq_dist(x, centers + k * n_features, n_features)
        if dist[k] < dist[best]:
            best = k
    return best


cdef inline bint _separated(double low, double up, double rel) noexcept nogil:
    """True if a center at exact distance >= ``low`` is certainly farther than one at
    exact distance <= ``up``, also as measured by the exact (rounded) distance."""
    return low - up > 2.0 * rel * (low + up)


cdef inline double _gemm_error(double x_sq, Py_ssize_t n_features, double h_max,
                               double unit) noexcept nogil:
    """Bound on the error of ``r_k = ||x||^2 + 2 (h_k - x.c_k)`` when ``h_k = ||c_k||^2/2``
    and the dot product are rounded in X's dtype (unit roundoff ``unit``) by any gemm:
    |fl(x.c) - x.c| <= D u sum_j |x_j c_j| <= D u ||x|| ||c|| <= D u (||x||^2/2 + h_max)
    (no square root), plus the rounding of h_k and of the subtraction, plus float64
    rounding of ||x||^2 and of the sum (numba's ``_gemm_error``)."""
    cdef double e_val = (n_features + 6) * unit * (2.0 * h_max + 0.5 * x_sq)
    return 2.0 * e_val + (n_features + 4) * 2.0 ** -53 * x_sq


cdef inline bint _settles(double r_best, double r_second, double err,
                          double rel) noexcept nogil:
    """True if squared distances ``r_best`` < ``r_second``, each within ``err`` of the
    true value, certainly order the two centers as the exact distance does: the gap
    beats both errors plus the exact distance's own rounding (relative ``rel``)."""
    return r_second - r_best > 2.0 * err + 2.0 * rel * (abs(r_best) + abs(r_second) + 2.0 * err)


cdef inline bint _gemm_settles(double best_val, double second_val, double x_sq, double err,
                               double rel) noexcept nogil:
    """True if the gemm's choice is certainly the exact nearest center: its values give
    r_k = ||x||^2 + 2 v_k within ``err`` (``_gemm_error``) of the true distances."""
    return _settles(x_sq + 2.0 * best_val, x_sq + 2.0 * second_val, err, rel)


cdef inline void _add_sample(double* part_sums, double* part_weights, const floating* x,
                             double w, Py_ssize_t k, Py_ssize_t n_features) noexcept nogil:
    """This slot's partial rows: part_sums[k] += w x (in float64), part_weights[k] += w.
    Shared by ``lloyd_step`` and ``bounded_step``, so equal labels give equal sums."""
    cdef double* row = part_sums + k * n_features
    cdef Py_ssize_t j
    part_weights[k] += w
    for j in range(n_features):
        row[j] += w * <double>x[j]


cdef void _direct_block(const floating* X, const double* centers_t64, double* xt,
                        Py_ssize_t start, Py_ssize_t m, Py_ssize_t n_clusters,
                        Py_ssize_t n_features, int* best_idx, double* best_dist) noexcept nogil:
    """Exact nearest center of the m samples from ``start``, computed directly (numba's
    ``_direct_block``): the defining distance to every center, ties to the lowest index,
    into ``best_idx`` and ``best_dist``.  The block is transposed into ``xt`` (max(D, 2)
    x BLOCK float64, then one BLOCK row of scratch for a center's distances), so every
    loop runs across rows and vectorises.  One or two features:
    ``fastem_nearest_of_pairs`` (for one, a second feature of zeros in ``xt`` and in
    ``centers_t64``)."""
    cdef Py_ssize_t i, j, k
    cdef const floating* x = X + start * n_features
    cdef double* row = xt + _direct_rows(n_features) * _BLOCK
    cdef double val, low
    cdef int kk, idx
    for j in range(n_features):  # feature-major: numba measured 1.8 -> 1.0 ms (1M x 2)
        for i in range(m):
            xt[j * _BLOCK + i] = <double>x[i * n_features + j]
    if n_features <= 2:
        if n_features == 1:  # (0 - 0)^2 = 0 adds nothing, exactly
            for i in range(m):
                xt[_BLOCK + i] = 0.0
        fastem_nearest_of_pairs(xt, xt + _BLOCK, centers_t64, centers_t64 + n_clusters,
                                n_clusters, m, best_idx, best_dist)
        return
    for k in range(n_clusters):
        fastem_sq_diff(row, xt, centers_t64[k], m)
        for j in range(1, n_features):
            fastem_add_sq_diff(row, xt + j * _BLOCK, centers_t64[j * n_clusters + k], m)
        if k == 0:
            for i in range(m):
                best_idx[i] = 0
                best_dist[i] = row[i]
        else:
            kk = <int>k
            for i in range(m):  # branch-free, as in _argmin_scan
                val = row[i]
                low = best_dist[i]
                idx = best_idx[i]
                best_idx[i] = kk if val < low else idx
                best_dist[i] = low if val > low else val


cdef void _nearest_block(const floating* X, const floating* centers,
                         const floating* half_sq_norms, const double* centers_t64,
                         floating* dots, double* dist, double* xt,
                         Py_ssize_t start, Py_ssize_t m, Py_ssize_t n_clusters,
                         Py_ssize_t n_features, double h_max, double unit, double rel,
                         int* best_idx, double* min_sq_dist) noexcept nogil:
    """Exact nearest center of the m samples from ``start`` into ``best_idx`` and, if
    ``min_sq_dist`` is not NULL, the squared distance to it.  With a direct scratch
    ``xt`` (not NULL: few features) by ``_direct_block``; otherwise from the gemm when
    its choice is certified (distance clipped at 0 against cancellation), else the
    exact one.  ``dots`` (BLOCK x K), ``dist`` (K) and ``xt`` are this thread's
    scratch."""
    cdef floating best_vals[_GEMM_ROWS]
    cdef floating second_vals[_GEMM_ROWS]
    cdef double best_dist[_BLOCK]
    cdef Py_ssize_t i
    cdef const floating* x
    cdef double x_sq, err, d2
    if xt != NULL:
        _direct_block(X, centers_t64, xt, start, m, n_clusters, n_features, best_idx,
                      min_sq_dist if min_sq_dist != NULL else best_dist)
        return
    _block_dots(X + start * n_features, centers, dots, <int>m, <int>n_clusters,
                <int>n_features)
    _block_argmin(half_sq_norms, dots, m, n_clusters, best_idx, best_vals, second_vals)
    for i in range(m):
        x = X + (start + i) * n_features
        x_sq = _sq_norm_f64(x, n_features)
        err = _gemm_error(x_sq, n_features, h_max, unit)
        if n_clusters == 1 or _gemm_settles(best_vals[i], second_vals[i], x_sq, err, rel):
            if min_sq_dist != NULL:
                # ||x - c||^2 = ||x||^2 + 2 (||c||^2/2 - x.c)
                d2 = x_sq + 2.0 * <double>best_vals[i]
                min_sq_dist[i] = d2 if d2 > 0.0 else 0.0
        else:  # near-tie for the gemm: settle by the exact distance
            best_idx[i] = <int>_exact_row(x, centers, n_clusters, n_features, dist)
            if min_sq_dist != NULL:
                min_sq_dist[i] = dist[best_idx[i]]


cdef void _assign_block(const floating* X, const floating* centers,
                        const floating* half_sq_norms, const double* centers_t64,
                        floating* dots, double* dist, double* xt,
                        int* labels, double* min_sq_dist,
                        Py_ssize_t start, Py_ssize_t stop,
                        Py_ssize_t n_clusters, Py_ssize_t n_features,
                        double h_max, double unit, double rel) noexcept nogil:
    """Labels and squared distances of samples [start, stop) (one block)."""
    cdef Py_ssize_t i
    cdef int best_idx[_BLOCK]
    _nearest_block(X, centers, half_sq_norms, centers_t64, dots, dist, xt, start,
                   stop - start, n_clusters, n_features, h_max, unit, rel, best_idx,
                   min_sq_dist + start)
    for i in range(stop - start):
        labels[start + i] = <int>best_idx[i]


cdef Py_ssize_t _lloyd_slot(const floating* X, const double* sample_weight,
                            const floating* centers, const floating* half_sq_norms,
                            const double* centers_t64, floating* dots, double* dist,
                            double* xt, int* labels, double* part_sums,
                            double* part_weights, Py_ssize_t start, Py_ssize_t stop,
                            Py_ssize_t n_clusters, Py_ssize_t n_features,
                            double h_max, double unit, double rel) noexcept nogil:
    """Assign samples [start, stop) and add w_i x_i into this slot's (zeroed) partial
    rows; returns how many labels changed."""
    cdef Py_ssize_t b_start, b_stop, i, best, n_changed = 0
    cdef Py_ssize_t rows = _BLOCK if xt != NULL else _gemm_rows(n_clusters)
    cdef int best_idx[_GEMM_ROWS]
    b_start = start
    while b_start < stop:
        b_stop = b_start + rows if b_start + rows < stop else stop
        _nearest_block(X, centers, half_sq_norms, centers_t64, dots, dist, xt, b_start,
                       b_stop - b_start, n_clusters, n_features, h_max, unit, rel,
                       best_idx, NULL)
        for i in range(b_stop - b_start):
            best = best_idx[i]
            n_changed += labels[b_start + i] != best
            labels[b_start + i] = <int>best
            _add_sample(part_sums, part_weights, X + (b_start + i) * n_features,
                        sample_weight[b_start + i], best, n_features)
        b_start = b_stop
    return n_changed
