# The bounded K-means step (Hamerly, Yinyang, Elkan; included by kmeans.pyx after
# _kmeans_distances.pxi): its helpers and the bounded_step kernel.

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
