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
from libc.stdint cimport int64_t
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


# ---------------------------------------------------------------------------
# bounded_step helpers (numba's _bounds_from, _tiles, _group_top2; the one-group rows'
# settling, which numba's bounded_step writes out, is _settle_from_gemm)
# ---------------------------------------------------------------------------

cdef double _bounds_from(const double* dist, Py_ssize_t best, double rel,
                         const int64_t* group_start, const int64_t* group_members,
                         Py_ssize_t n_groups, double* lower_row) noexcept nogil:
    """Bounds of a row from squared distances ``dist`` to every center, each within
    relative error ``rel`` of the exact distance: lower_row[g] <= the exact distance to
    every center of group g other than ``best`` (FAR if none).  Returns the upper bound
    to ``best``."""
    cdef Py_ssize_t g, p, k
    cdef double low
    for g in range(n_groups):
        low = _FAR
        for p in range(group_start[g], group_start[g + 1]):
            k = group_members[p]
            if k != best and dist[k] < low:
                low = dist[k]
        lower_row[g] = _FAR if low == _FAR else sqrt((low if low > 0.0 else 0.0) * (1.0 - rel))
    low = dist[best]
    return sqrt((low if low > 0.0 else 0.0) * (1.0 + rel))


cdef enum:
    # centers per gemm tile of the bounded step with several groups (numba's
    # MIN_TILE_CENTERS)
    _MIN_TILE_CENTERS = 8

#: A row whose open groups' tiles hold more than this fraction of the centers goes
#: through the gemm with all centers, the last tile (numba's TILED_MAX_FRACTION).
cdef double _TILED_MAX_FRACTION = 0.5
TILED_MAX_FRACTION = _TILED_MAX_FRACTION


cdef Py_ssize_t _tiles(const int64_t[::1] group_start, int64_t* first, int64_t* tile_of):
    """Tiles of consecutive groups, each of at least _MIN_TILE_CENTERS centers but the
    last (numba's ``_tiles``): ``first`` (n_groups + 1) gets each tile's first group and
    the end, ``tile_of`` (n_groups) each group's tile.  Returns the number of tiles."""
    cdef Py_ssize_t n_groups = group_start.shape[0] - 1, n_tiles = 0, g = 0
    cdef int64_t size
    first[0] = 0
    while g < n_groups:
        size = 0
        while g < n_groups and size < _MIN_TILE_CENTERS:
            size += group_start[g + 1] - group_start[g]
            tile_of[g] = n_tiles
            g += 1
        n_tiles += 1
        first[n_tiles] = g
    return n_tiles


cdef floating* _members_t(const floating[:, ::1] centers, const int64_t[::1] group_members,
                          const int64_t[::1] group_start, const int64_t* tile_first,
                          Py_ssize_t n_tiles) except NULL:
    """The centers in group-member order, each tile's block transposed: tile t's (D, n_t)
    block starts at D * (its first member); then, from D * K, all the centers as one
    (D, K) block, the last tile (numba's ``_members_t``; freed by the caller).  The
    transposed operand: with the centers as the transposed one, sgemm took 1.7x as long
    for a tile of 10 (150 x 64 rows, one thread: 4.5 against 2.6 us)."""
    cdef Py_ssize_t n_clusters = centers.shape[0], n_features = centers.shape[1]
    cdef floating* out = <floating*>_alloc(2 * n_clusters * n_features, sizeof(floating),
                                           False)
    cdef Py_ssize_t t, q, j, k, base, n_t, offset
    for t in range(n_tiles + 1):
        base = 0 if t == n_tiles else group_start[tile_first[t]]
        n_t = n_clusters if t == n_tiles else group_start[tile_first[t + 1]] - base
        offset = n_features * (n_clusters if t == n_tiles else base)
        for q in range(n_t):
            k = group_members[base + q]
            for j in range(n_features):
                out[offset + j * n_t + q] = centers[k, j]
    return out


cdef extern from *:
    """
    /* bounded_step's tiled rows (_tiled_block).  fastem_transpose: a tile's gemm output,
       row-major (c, n_t), into (n_t, c), in runs of 32 rows.  fastem_group_top2 (numba's
       _group_top2): for the c rows, the two smallest v = h_q - dot over the columns
       [q0, q1) of one group, and the first's center, across rows and branch-free.  In C
       over __restrict pointers, so that gcc vectorises them (as Cython code, whose
       pointers may alias, they stayed scalar), compiled for AVX2 and the baseline. */
    #define FASTEM_TILE_FUNCS(SUFFIX, T)                                                \
    static FASTEM_CLONES void fastem_transpose_##SUFFIX(                                \
            const T* __restrict in, T* __restrict out, Py_ssize_t c, Py_ssize_t n_t) {  \
        for (Py_ssize_t p0 = 0; p0 < c; p0 += 32) {                                     \
            Py_ssize_t p1 = p0 + 32 < c ? p0 + 32 : c;                                  \
            for (Py_ssize_t q = 0; q < n_t; q++)                                        \
                for (Py_ssize_t p = p0; p < p1; p++) out[q * c + p] = in[p * n_t + q];  \
        }                                                                               \
    }                                                                                   \
    static FASTEM_CLONES void fastem_group_top2_##SUFFIX(                               \
            const T* __restrict dots_t, Py_ssize_t c, const T* __restrict h,            \
            const int64_t* __restrict members, Py_ssize_t q0, Py_ssize_t q1,            \
            T* __restrict v1, int* __restrict k1, T* __restrict v2) {                   \
        const T* col = dots_t + q0 * c;                                                 \
        T hq = h[q0];                                                                   \
        int k = (int)members[q0];                                                       \
        for (Py_ssize_t p = 0; p < c; p++) {                                            \
            v1[p] = hq - col[p]; k1[p] = k; v2[p] = (T)INFINITY; }                      \
        for (Py_ssize_t q = q0 + 1; q < q1; q++) {                                      \
            col = dots_t + q * c;                                                       \
            hq = h[q];                                                                  \
            k = (int)members[q];                                                        \
            for (Py_ssize_t p = 0; p < c; p++) {                                        \
                T v = hq - col[p], low = v1[p];                                         \
                T high = v > low ? v : low;                                             \
                v2[p] = high < v2[p] ? high : v2[p];                                    \
                k1[p] = v < low ? k : k1[p];                                            \
                v1[p] = v < low ? v : low;                                              \
            }                                                                           \
        }                                                                               \
    }
    FASTEM_TILE_FUNCS(f32, float)
    FASTEM_TILE_FUNCS(f64, double)
    """
    void fastem_transpose_f32(const float* a, float* out, Py_ssize_t c,
                              Py_ssize_t n_t) noexcept nogil
    void fastem_transpose_f64(const double* a, double* out, Py_ssize_t c,
                              Py_ssize_t n_t) noexcept nogil
    void fastem_group_top2_f32(const float* dots_t, Py_ssize_t c, const float* h,
                               const int64_t* members, Py_ssize_t q0, Py_ssize_t q1,
                               float* v1, int* k1, float* v2) noexcept nogil
    void fastem_group_top2_f64(const double* dots_t, Py_ssize_t c, const double* h,
                               const int64_t* members, Py_ssize_t q0, Py_ssize_t q1,
                               double* v1, int* k1, double* v2) noexcept nogil


cdef inline void _group_top2(const floating* dots_t, Py_ssize_t c,
                             const floating* half_sq_members, const int64_t* group_members,
                             Py_ssize_t q0, Py_ssize_t q1, floating* v1, int* k1,
                             floating* v2) noexcept nogil:
    if floating is float:
        fastem_group_top2_f32(dots_t, c, half_sq_members, group_members, q0, q1, v1, k1, v2)
    else:
        fastem_group_top2_f64(dots_t, c, half_sq_members, group_members, q0, q1, v1, k1, v2)


cdef inline void _transpose(const floating* a, floating* out, Py_ssize_t c,
                            Py_ssize_t n_t) noexcept nogil:
    if floating is float:
        fastem_transpose_f32(a, out, c, n_t)
    else:
        fastem_transpose_f64(a, out, c, n_t)


cdef int _settle_from_gemm(const floating* x, Py_ssize_t p, const int* best_idx,
                           const floating* best_vals, const floating* second_vals,
                           const floating* centers, Py_ssize_t n_clusters,
                           Py_ssize_t n_features, double h_max, double unit, double rel,
                           const int64_t* group_start, const int64_t* group_members,
                           double* lower_row, double* upper_i, double* dist) noexcept nogil:
    """One group: the label of x, row p of a gemm block with all centers (certified,
    else exact), and its two bounds rebuilt (as numba's ``bounded_step`` writes out)."""
    cdef double x_sq = _sq_norm_f64(x, n_features)
    cdef double err = _gemm_error(x_sq, n_features, h_max, unit)
    cdef Py_ssize_t best
    cdef double r, low
    if n_clusters == 1 or _gemm_settles(best_vals[p], second_vals[p], x_sq, err, rel):
        best = best_idx[p]
        low = <double>second_vals[p]  # the runner-up: the other centers
        if low == INFINITY:
            lower_row[0] = _FAR
        else:
            r = x_sq + 2.0 * low - err
            lower_row[0] = sqrt(r if r > 0.0 else 0.0)
        r = x_sq + 2.0 * <double>best_vals[p] + err
        upper_i[0] = sqrt(r if r > 0.0 else 0.0)
    else:
        best = _exact_row(x, centers, n_clusters, n_features, dist)
        upper_i[0] = _bounds_from(dist, best, rel, group_start, group_members, 1, lower_row)
    return <int>best


cdef struct _TileScratch:
    # one thread's scratch for the tiled rows (numba's bounded_step names them alike):
    # each tile's rows, the rows' tile list, and per tiled row its candidates so far
    int64_t* tile_rows     # (n_tiles + 1) x _GEMM_ROWS
    int64_t* tile_count    # n_tiles + 1, zero between blocks
    int64_t* touched       # n_tiles
    int64_t* tiled         # _GEMM_ROWS: the block row of each tiled row
    int64_t* k_best        # the nearest candidate's center,
    int64_t* g_best        # its group (-1: the own center, at its float64 distance)
    double* x_sqs
    double* errs
    double* r_olds
    double* r_best         # the nearest candidate's squared distance,
    double* r_next         # the runner-up in its group,
    double* r_other        # the nearest candidate outside its group
    void* tile_dots        # _GEMM_ROWS x K of X's dtype, and transposed
    void* tile_dots_t
    void* v1               # _GEMM_ROWS of X's dtype: _group_top2's outputs
    void* v2
    int* k1
    char* own_f64          # the own center is not in the row's tiles


cdef char* _tile_scratch(_TileScratch* ts, Py_ssize_t n_team, Py_ssize_t n_tiles,
                         Py_ssize_t n_clusters, size_t itemsize) except NULL:
    """One arena for every thread's ``_TileScratch`` (8-byte items first: aligned);
    freed by the caller.  tile_count starts at zero."""
    cdef size_t r = _GEMM_ROWS, n8 = (n_tiles + 1) * r + (n_tiles + 1) + n_tiles + 3 * r + 6 * r
    cdef size_t per = 8 * n8 + itemsize * (2 * r * n_clusters + 2 * r) + 4 * r + r
    per = (per + 63) // 64 * 64
    cdef char* arena = <char*>_alloc(<size_t>n_team * per, 1, True)
    cdef char* at
    cdef Py_ssize_t t
    for t in range(n_team):
        at = arena + t * per
        ts[t].tile_rows = <int64_t*>at
        at += 8 * (n_tiles + 1) * r
        ts[t].tile_count = <int64_t*>at
        at += 8 * (n_tiles + 1)
        ts[t].touched = <int64_t*>at
        at += 8 * n_tiles
        ts[t].tiled = <int64_t*>at
        ts[t].k_best = ts[t].tiled + r
        ts[t].g_best = ts[t].k_best + r
        at += 8 * 3 * r
        ts[t].x_sqs = <double*>at
        ts[t].errs = ts[t].x_sqs + r
        ts[t].r_olds = ts[t].errs + r
        ts[t].r_best = ts[t].r_olds + r
        ts[t].r_next = ts[t].r_best + r
        ts[t].r_other = ts[t].r_next + r
        at += 8 * 6 * r
        ts[t].tile_dots = at
        at += itemsize * r * n_clusters
        ts[t].tile_dots_t = at
        at += itemsize * r * n_clusters
        ts[t].v1 = at
        at += itemsize * r
        ts[t].v2 = at
        at += itemsize * r
        ts[t].k1 = <int*>at
        at += 4 * r
        ts[t].own_f64 = at
    return arena


cdef void _tiled_block(const floating* X, const floating* centers,
                       const floating* members_t, const floating* half_sq_members,
                       const int64_t* group_of, const int64_t* group_start,
                       const int64_t* group_members, Py_ssize_t n_groups,
                       const int64_t* tile_first, Py_ssize_t n_tiles, int* labels,
                       double* upper, double* lower, Py_ssize_t b_start, Py_ssize_t m,
                       Py_ssize_t n_tiled, _TileScratch* ts, floating* gathered,
                       double* dist, int* new_labels, double* largest, double* n_dist,
                       Py_ssize_t n_clusters, Py_ssize_t n_features,
                       double rel) noexcept nogil:
    """The tiled rows of a block (see ``bounded_step``): one gemm per tile for its rows,
    each group's bounds and the rows' candidates from it, then each row's label,
    certified (``_settles``) or else exact, into ``new_labels``."""
    cdef int64_t* tile_rows = ts.tile_rows
    cdef int64_t* tile_count = ts.tile_count
    cdef int64_t* tiled = ts.tiled
    cdef floating* tile_dots = <floating*>ts.tile_dots
    cdef floating* tile_dots_t = <floating*>ts.tile_dots_t
    cdef floating* v1 = <floating*>ts.v1
    cdef floating* v2 = <floating*>ts.v2
    cdef Py_ssize_t t, c, base, n_t, p, g, g0, g1, s, i, j, best, old
    cdef const floating* src
    cdef const floating* x
    cdef double x_sq, r1, r, e, err
    cdef bint last
    for t in range(n_tiles + 1):
        c = tile_count[t]
        if c == 0:
            continue
        tile_count[t] = 0
        last = t == n_tiles
        base = 0 if last else group_start[tile_first[t]]
        n_t = n_clusters if last else group_start[tile_first[t + 1]] - base
        if c == m:  # every row of the block, in order: no need to gather
            src = X + b_start * n_features
        else:
            for p in range(c):
                x = X + (b_start + tiled[tile_rows[t * _GEMM_ROWS + p]]) * n_features
                for j in range(n_features):
                    gathered[p * n_features + j] = x[j]
            src = gathered
        # row-major (c, n_t) = src (c, D) @ the tile's (D, n_t) block: in column-major
        # terms (n_t, c) = block (n_t, D) @ src (D, c), neither transposed
        _gemm(c'N', c'N', <int>n_t, <int>c, <int>n_features,
              members_t + n_features * (n_clusters if last else base), <int>n_t, src,
              <int>n_features, 0.0, tile_dots, <int>n_t)
        _transpose(tile_dots, tile_dots_t, c, n_t)
        g0 = 0 if last else tile_first[t]
        g1 = n_groups if last else tile_first[t + 1]
        for g in range(g0, g1):
            if group_start[g + 1] == group_start[g]:
                continue  # an empty group
            _group_top2(tile_dots_t, c, half_sq_members + base, group_members + base,
                        group_start[g] - base, group_start[g + 1] - base, v1, ts.k1, v2)
            for p in range(c):
                # r = ||x||^2 + 2 v lies within err of the exact squared distance
                s = tile_rows[t * _GEMM_ROWS + p]
                x_sq = ts.x_sqs[s]
                r1 = x_sq + 2.0 * <double>v1[p]
                # the group's bound, which the nearest's group gets again below without
                # the nearest
                r = r1 - ts.errs[s]
                lower[(b_start + tiled[s]) * n_groups + g] = sqrt(r if r > 0.0 else 0.0)
                if r1 < ts.r_best[s]:
                    if ts.r_best[s] < ts.r_other[s]:
                        ts.r_other[s] = ts.r_best[s]
                    ts.r_best[s] = r1
                    ts.k_best[s] = ts.k1[p]
                    ts.g_best[s] = g
                    ts.r_next[s] = _FAR if v2[p] == INFINITY else x_sq + 2.0 * <double>v2[p]
                elif r1 < ts.r_other[s]:
                    ts.r_other[s] = r1
    for s in range(n_tiled):
        i = b_start + tiled[s]
        old = labels[i]
        err = ts.errs[s]
        # the own center's float64 distance is within rel of the true one
        e = err
        if ts.own_f64[s] and rel * ts.r_olds[s] > e:
            e = rel * ts.r_olds[s]
        best = ts.k_best[s]
        g = ts.g_best[s]
        r = ts.r_other[s] if ts.r_other[s] < ts.r_next[s] else ts.r_next[s]
        if _settles(ts.r_best[s], r, e, rel):
            if g >= 0:
                r = ts.r_next[s]
                if r == _FAR:
                    lower[i * n_groups + g] = _FAR
                else:
                    r = r - err
                    lower[i * n_groups + g] = sqrt(r if r > 0.0 else 0.0)
                r = ts.r_best[s] + err
                upper[i] = sqrt(r if r > 0.0 else 0.0)
            # (else the own center stays nearest: its upper bound is made)
            if best != old and ts.own_f64[s]:  # the own center is now an other
                g = group_of[old]
                r = sqrt(ts.r_olds[s] * (1.0 - rel))
                if r < lower[i * n_groups + g]:
                    lower[i * n_groups + g] = r
        else:  # near-tie among the fast distances: settle exactly
            x = X + i * n_features
            best = _exact_row(x, centers, n_clusters, n_features, dist)
            n_dist[0] += n_clusters
            upper[i] = _bounds_from(dist, best, rel, group_start, group_members, n_groups,
                                    lower + i * n_groups)
        new_labels[tiled[s]] = <int>best
        if upper[i] > largest[0]:
            largest[0] = upper[i]


cdef void _bounded_slot(const floating* X, const double* sample_weight,
                        const floating* centers, const floating* half_sq_norms,
                        const floating* members_t, const floating* half_sq_members,
                        const double* drift, const double* half_sep,
                        const int64_t* group_of, const int64_t* group_start,
                        const int64_t* group_members, Py_ssize_t n_groups,
                        const int64_t* tile_first, const int64_t* tile_of,
                        Py_ssize_t n_tiles, const double* top, const int64_t* top_center,
                        const double* runner_up, int* labels, double* upper, double* lower,
                        bint full, double* part_sums, double* part_weights,
                        double* part_stats, floating* dots, floating* gathered,
                        double* dist, _TileScratch* ts, Py_ssize_t start, Py_ssize_t stop,
                        Py_ssize_t n_clusters, Py_ssize_t n_features, double h_max,
                        double unit, double rel) noexcept nogil:
    """numba's ``bounded_step`` loop body for samples [start, stop): labels, bounds and
    this slot's partial sums and stats (labels changed, largest bound, distances).

    Per block: each row is settled by its bounds or by tightening its upper bound;
    the rows still open (all rows when ``full``) go, with one group, through one gemm
    with all centers (``_settle_from_gemm``), and with several through the gemms of the
    tiles with an open group (``_tiled_block``).  Then, in row order, labels are written
    and the rows added to the slot's sums, as ``lloyd_step`` does."""
    cdef Py_ssize_t rows = _gemm_rows(n_clusters) if n_groups == 1 else _GEMM_ROWS
    cdef Py_ssize_t b_start, m, ii, i, g, p, q, t, best, old, n_pending, n_tiled
    cdef Py_ssize_t n_touched, own_tile
    cdef double tiled_max = _TILED_MAX_FRACTION * n_clusters, n_open
    cdef int new_labels[_GEMM_ROWS]
    cdef int pending[_GEMM_ROWS]
    cdef int best_idx[_GEMM_ROWS]
    cdef floating best_vals[_GEMM_ROWS]
    cdef floating second_vals[_GEMM_ROWS]
    cdef const floating* x
    cdef const floating* block_rows
    cdef double* lower_row
    cdef double up, low, low_all, r_old, x_sq, sep, largest = 0.0
    cdef double n_changed = 0.0, n_dist = 0.0
    cdef bint own
    b_start = start
    while b_start < stop:
        m = (b_start + rows if b_start + rows < stop else stop) - b_start
        n_pending = 0
        n_tiled = 0
        for ii in range(m):
            i = b_start + ii
            old = labels[i]
            new_labels[ii] = <int>old
            x = X + i * n_features
            r_old = _FAR
            n_open = n_clusters
            n_touched = 0
            if not full:
                lower_row = lower + i * n_groups
                up = upper[i] + drift[old]
                low_all = _FAR
                for g in range(n_groups):
                    low = lower_row[g] - (runner_up[g] if top_center[g] == old else top[g])
                    lower_row[g] = low
                    if low < low_all:
                        low_all = low
                upper[i] = up
                sep = 2.0 * half_sep[old] - up
                if _separated(low_all if low_all > sep else sep, up, rel):
                    continue
                r_old = _sq_dist_f64(x, centers + old * n_features, n_features)
                n_dist += 1
                up = sqrt(r_old * (1.0 + rel))
                upper[i] = up
                if up > largest:
                    largest = up
                sep = 2.0 * half_sep[old] - up
                if _separated(low_all if low_all > sep else sep, up, rel):
                    continue
                n_open = 0
                if n_groups > 1:
                    for g in range(n_groups):
                        if not _separated(lower_row[g], up, rel):
                            t = tile_of[g]  # a tile's groups are consecutive
                            if n_touched == 0 or ts.touched[n_touched - 1] != t:
                                ts.touched[n_touched] = t
                                n_touched += 1
                                n_open += group_start[tile_first[t + 1]] - group_start[tile_first[t]]
            if n_groups == 1:
                pending[n_pending] = <int>ii
                n_pending += 1
                continue
            x_sq = _sq_norm_f64(x, n_features)
            own = n_open > tiled_max  # (always when full)
            if own:  # the last tile: all centers
                n_touched = 1
                ts.touched[0] = n_tiles
            own_tile = -1 if own else tile_of[group_of[old]]
            for q in range(n_touched):
                t = ts.touched[q]
                if t == own_tile:
                    own = True
                ts.tile_rows[t * _GEMM_ROWS + ts.tile_count[t]] = n_tiled
                ts.tile_count[t] += 1
            n_dist += n_open
            ts.tiled[n_tiled] = ii
            ts.x_sqs[n_tiled] = x_sq
            ts.errs[n_tiled] = _gemm_error(x_sq, n_features, h_max, unit)
            ts.r_olds[n_tiled] = r_old
            ts.own_f64[n_tiled] = not own  # then the own center is a candidate as is
            ts.r_best[n_tiled] = _FAR if own else r_old
            ts.k_best[n_tiled] = old
            ts.g_best[n_tiled] = -1
            ts.r_next[n_tiled] = _FAR
            ts.r_other[n_tiled] = _FAR
            n_tiled += 1
        if n_tiled > 0:
            _tiled_block(X, centers, members_t, half_sq_members, group_of, group_start,
                         group_members, n_groups, tile_first, n_tiles, labels, upper, lower,
                         b_start, m, n_tiled, ts, gathered, dist, new_labels, &largest,
                         &n_dist, n_clusters, n_features, rel)
        if n_pending > 0:  # one group: one gemm with all centers for the open rows
            if n_pending == m:  # all of the block: no need to gather
                block_rows = X + b_start * n_features
            else:
                for p in range(n_pending):
                    x = X + (b_start + pending[p]) * n_features
                    for g in range(n_features):
                        gathered[p * n_features + g] = x[g]
                block_rows = gathered
            _block_dots(block_rows, centers, dots, <int>n_pending, <int>n_clusters,
                        <int>n_features)
            _block_argmin(half_sq_norms, dots, n_pending, n_clusters, best_idx, best_vals,
                          second_vals)
            for p in range(n_pending):
                i = b_start + pending[p]
                new_labels[pending[p]] = _settle_from_gemm(
                    X + i * n_features, p, best_idx, best_vals, second_vals, centers,
                    n_clusters, n_features, h_max, unit, rel, group_start, group_members,
                    lower + i, upper + i, dist)
                if upper[i] > largest:
                    largest = upper[i]
            n_dist += n_pending * n_clusters
        for ii in range(m):
            i = b_start + ii
            best = new_labels[ii]
            if best != labels[i]:
                n_changed += 1
            labels[i] = <int>best
            _add_sample(part_sums, part_weights, X + i * n_features, sample_weight[i], best,
                        n_features)
        b_start += m
    part_stats[0] = n_changed
    part_stats[1] = largest
    part_stats[2] = n_dist


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


def bounded_step(const floating[:, ::1] X, const double[::1] sample_weight,
                 const floating[:, ::1] centers, const double[::1] drift,
                 const double[::1] half_sep, const int64_t[::1] group_of,
                 const int64_t[::1] group_start, const int64_t[::1] group_members,
                 int[::1] labels, double[::1] upper, double[:, ::1] lower, bint full,
                 double[:, ::1] sums, double[::1] weight_sums, double[::1] stats, n_threads):
    """``lloyd_step`` that also keeps distance bounds (Hamerly, Yinyang, Elkan).

    Follows the contract of ``fastem.kernels.reference.kmeans.bounded_step`` and the
    logic of numba's ``bounded_step`` step for step.  Per row, ``upper`` bounds the
    exact distance to the assigned center and ``lower[:, g]`` the exact distance to
    every other center of group g.  Centers moved by at most ``drift`` since the bounds
    were made, so upper grows by the assigned center's drift and each lower shrinks by
    its group's largest drift (the runner-up drift if the largest is the row's own
    center).  A row whose bounds separate (also allowing ``2 half_sep[a] - upper``) keeps
    its label without computing a distance; otherwise the upper bound is tightened by
    its float64 distance to its center.  The rows still open (all rows when ``full``, in
    which case the bounds and, but for ``stats``, the labels are not trusted) go through
    gemms: with one group, the block's gemm with all centers; with several, one gemm per
    tile of groups for the rows with an open group there (or with all centers, for rows
    with many).  A row's fast nearest is kept when its margin over every other candidate
    beats their error bounds, else the exact nearest is taken.  Labels equal
    ``lloyd_step``'s bit for bit, and so do ``sums`` and ``weight_sums`` (same slots,
    same order).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64, C-contiguous
    sample_weight : ndarray of shape (n_samples,), float64
    centers : ndarray of shape (n_clusters, n_features), X's dtype, C-contiguous
    drift : ndarray of shape (n_clusters,), float64
        Bound on each center's move since the bounds were made (ignored when ``full``).
    half_sep : ndarray of shape (n_clusters,), float64
        At most half the distance from each center to its nearest other center.
    group_of, group_start, group_members : int64 arrays of shapes (K,), (G + 1,), (K,)
        The center groups: ``group_members[group_start[g]:group_start[g + 1]]``.
    labels : ndarray of shape (n_samples,), int32
        Read (the previous labels, which must lie in [0, K) unless ``full``; not
        checked) and written.
    upper : ndarray of shape (n_samples,), float64, read and written.
    lower : ndarray of shape (n_samples, G), float64, C-contiguous, read and written.
    full : bool
        Rebuild the bounds instead of trusting them.
    sums, weight_sums : float64 arrays of shapes (K, D) and (K,), written.
    stats : ndarray of shape (3,), float64
        Written: labels changed, the largest distance bound made, point-center
        distances computed.
    n_threads : int
        Number of OpenMP threads (results do not depend on it).
    """
    cdef Py_ssize_t n_samples = X.shape[0], n_features = X.shape[1]
    cdef Py_ssize_t n_clusters = centers.shape[0]
    cdef Py_ssize_t n_groups = group_start.shape[0] - 1
    cdef Py_ssize_t g, p, k
    _check(centers.shape[1] == n_features, "centers and X have different n_features")
    _check(sample_weight.shape[0] == n_samples and labels.shape[0] == n_samples
           and upper.shape[0] == n_samples,
           "sample_weight / labels / upper do not have n_samples entries")
    _check(sums.shape[0] == n_clusters and sums.shape[1] == n_features
           and weight_sums.shape[0] == n_clusters,
           "sums / weight_sums do not have the shape of centers")
    _check(drift.shape[0] == n_clusters and half_sep.shape[0] == n_clusters
           and group_of.shape[0] == n_clusters and group_members.shape[0] == n_clusters,
           "drift / half_sep / group_of / group_members do not have n_clusters entries")
    _check(stats.shape[0] >= 3, "stats needs 3 entries")
    _check(n_groups >= 1 and lower.shape[0] == n_samples and lower.shape[1] == n_groups,
           "lower is not (n_samples, n_groups)")
    if n_samples > 0:
        _check(n_clusters >= 1, "need at least one center")
    _check(group_start[0] == 0 and group_start[n_groups] == n_clusters,
           "group_start does not run from 0 to n_clusters")
    for g in range(n_groups):
        _check(group_start[g] <= group_start[g + 1], "group_start is not sorted")
        for p in range(group_start[g], group_start[g + 1]):
            k = group_members[p]
            _check(0 <= k < n_clusters and group_of[k] == g,
                   "group_members / group_of do not describe the same groups")

    cdef Py_ssize_t n_blocks = _n_blocks(n_samples)
    cdef Py_ssize_t n_slots = _n_slots(n_blocks, 8 * n_clusters * (n_features + 1))
    cdef int n_team = _team_size(n_threads, n_slots)
    cdef Py_ssize_t slot, start, stop, tid, n_tiles = 0
    cdef Py_ssize_t slot_len = n_clusters * n_features
    cdef double h_max = 0.0, unit = 0.0, d
    cdef double rel = _rel_error(n_features)
    cdef floating* half_sq_norms = NULL
    cdef floating* dots = NULL
    cdef floating* gathered = NULL
    cdef double* dist = NULL
    cdef double* part_sums = NULL
    cdef double* part_weights = NULL
    cdef double* part_stats = NULL
    cdef double* top = NULL
    cdef double* runner_up = NULL
    cdef int64_t* top_center = NULL
    # several groups: the tiles, the centers and their half norms in member order, and
    # each thread's tile scratch
    cdef int64_t* tile_first = NULL
    cdef int64_t* tile_of = NULL
    cdef floating* members_t = NULL
    cdef floating* half_sq_members = NULL
    cdef _TileScratch* scratch = NULL
    cdef char* arena = NULL
    try:
        part_sums = <double*>_alloc(<size_t>n_slots * slot_len, sizeof(double), True)
        part_weights = <double*>_alloc(<size_t>n_slots * n_clusters, sizeof(double), True)
        part_stats = <double*>_alloc(<size_t>n_slots * 3, sizeof(double), True)
        if n_samples > 0:
            h_max = _error_scale(centers)
            unit = _unit_roundoff(&X[0, 0])
            half_sq_norms = <floating*>_half_sq_norms(centers)
            # per group: the largest drift, the center that has it, and the second
            # largest, for rows assigned to that center (numba's _group_drifts)
            top = <double*>_alloc(n_groups, sizeof(double), True)
            runner_up = <double*>_alloc(n_groups, sizeof(double), True)
            top_center = <int64_t*>_alloc(n_groups, sizeof(int64_t), False)
            for g in range(n_groups):
                top_center[g] = -1
                for p in range(group_start[g], group_start[g + 1]):
                    k = group_members[p]
                    d = drift[k]
                    if d > top[g]:
                        runner_up[g] = top[g]
                        top[g] = d
                        top_center[g] = k
                    elif d > runner_up[g]:
                        runner_up[g] = d
            # per-thread scratch indexed by threadid()
            dist = <double*>_alloc(<size_t>n_team * n_clusters, sizeof(double), False)
            gathered = <floating*>_alloc(<size_t>n_team * _GEMM_ROWS * n_features,
                                         sizeof(floating), False)
            if n_groups == 1:
                dots = <floating*>_alloc(<size_t>n_team * _gemm_rows(n_clusters) * n_clusters,
                                         sizeof(floating), False)
            else:
                tile_first = <int64_t*>_alloc(n_groups + 1, sizeof(int64_t), False)
                tile_of = <int64_t*>_alloc(n_groups, sizeof(int64_t), False)
                n_tiles = _tiles(group_start, tile_first, tile_of)
                members_t = _members_t(centers, group_members, group_start, tile_first,
                                       n_tiles)
                half_sq_members = <floating*>_alloc(n_clusters, sizeof(floating), False)
                for p in range(n_clusters):
                    half_sq_members[p] = half_sq_norms[group_members[p]]
                scratch = <_TileScratch*>_alloc(n_team, sizeof(_TileScratch), True)
                arena = _tile_scratch(scratch, n_team, n_tiles, n_clusters, sizeof(floating))
            for slot in prange(n_slots, nogil=True, schedule='static', num_threads=n_team):
                tid = threadid()
                start = _slot_start(slot, n_slots, n_blocks)
                stop = _slot_stop(slot, n_slots, n_blocks, n_samples)
                _bounded_slot(&X[0, 0], &sample_weight[0], &centers[0, 0], half_sq_norms,
                              members_t, half_sq_members, &drift[0], &half_sep[0],
                              &group_of[0], &group_start[0], &group_members[0], n_groups,
                              tile_first, tile_of, n_tiles, top, top_center, runner_up,
                              &labels[0], &upper[0], &lower[0, 0], full,
                              part_sums + slot * slot_len, part_weights + slot * n_clusters,
                              part_stats + slot * 3,
                              dots + tid * _gemm_rows(n_clusters) * n_clusters
                              if dots != NULL else NULL,
                              gathered + tid * _GEMM_ROWS * n_features,
                              dist + tid * n_clusters,
                              scratch + tid if scratch != NULL else NULL, start, stop,
                              n_clusters, n_features, h_max, unit, rel)
        # fixed slot order: bit-identical for any thread count
        with nogil:
            _sum_slots(part_weights, n_slots, n_clusters,
                       &weight_sums[0] if n_clusters > 0 else NULL)
            _sum_slots(part_sums, n_slots, slot_len, &sums[0, 0] if slot_len > 0 else NULL)
        stats[0] = 0.0
        stats[1] = 0.0
        stats[2] = 0.0
        for slot in range(n_slots):
            stats[0] += part_stats[slot * 3]
            if part_stats[slot * 3 + 1] > stats[1]:
                stats[1] = part_stats[slot * 3 + 1]
            stats[2] += part_stats[slot * 3 + 2]
    finally:
        free(part_sums)
        free(part_weights)
        free(part_stats)
        free(half_sq_norms)
        free(top)
        free(runner_up)
        free(top_center)
        free(dots)
        free(gathered)
        free(dist)
        free(tile_first)
        free(tile_of)
        free(members_t)
        free(half_sq_members)
        free(scratch)
        free(arena)


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
