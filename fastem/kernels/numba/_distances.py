"""Distances to the centers for the numba K-means kernels (assignment, seeding and the
bounded step): the exact float64 distance (``_exact_sq_dist``, without fast-math), the
GEMM fast path, ``||x||^2 + 2 (||c||^2 / 2 - x.c)``, with the rounding-error bound that
certifies its answer (``_gemm_settles``), the direct distances for few features, and
the argmin helpers.  See ``kmeans.py`` for how the kernels use them."""

import numpy as np

from ._jit import helper, strict_helper
from ._slots import BLOCK_SIZE


@helper
def _half_sq_norms(centers):
    n_clusters, n_features = centers.shape
    out = np.empty(n_clusters, dtype=centers.dtype)
    for k in range(n_clusters):
        acc = 0.0
        for j in range(n_features):
            acc += np.float64(centers[k, j]) * np.float64(centers[k, j])
        out[k] = 0.5 * acc
    return out


#: From this many clusters on, the argmin runs as vectorisable integer min-reductions.
KEYED_ARGMIN_MIN_CLUSTERS = 32
#: Up to this many features the exact distances are computed directly (``_direct_block``)
#: instead of GEMM + certification: for fewer than KEYED_ARGMIN_MIN_CLUSTERS clusters,
#: and for more.  Measured with one Lloyd step, 400,000 rows, 2 threads: at K = 8 direct
#: is 1.05-1.3x faster for D <= 2 and even at D = 3; at K = 32-256, 1.5-4x faster for
#: D <= 8 and even at D = 12, slower at D = 16.
DIRECT_MAX_FEATURES_FEW = 2
DIRECT_MAX_FEATURES_MANY = 8
#: Rows per GEMM call inside a slot for many clusters (a multiple of BLOCK_SIZE; the
#: slots, and so every result, do not depend on it): small GEMMs pay BLAS's per-call
#: overhead (N=200,000 D=64 K=256 float32: 94 -> 82 ms per Lloyd step).
GEMM_ROWS = 4 * BLOCK_SIZE
#: A lower bound that bounds nothing (finite, so bound arithmetic never meets inf - inf).
FAR = 1e300


@helper
def _dots_size(n_clusters):
    """Length of the ``_block_dots`` scratch for a block of BLOCK_SIZE rows."""
    if n_clusters < KEYED_ARGMIN_MIN_CLUSTERS:
        return 2 * BLOCK_SIZE * n_clusters
    return GEMM_ROWS * n_clusters


@helper
def _gemm_rows(n_clusters):
    """Rows per GEMM: GEMM_ROWS for many clusters; for few, one block, whose transposed
    values stay in L1 for the argmin."""
    return BLOCK_SIZE if n_clusters < KEYED_ARGMIN_MIN_CLUSTERS else GEMM_ROWS


@helper
def _direct(n_features, n_clusters):
    """True where ``_direct_block`` beats GEMM + certification (see DIRECT_MAX_FEATURES_*)."""
    if n_clusters < KEYED_ARGMIN_MIN_CLUSTERS:
        return n_features <= DIRECT_MAX_FEATURES_FEW
    return n_features <= DIRECT_MAX_FEATURES_MANY


@helper
def _transposed_f64(centers):
    """centers^T as a (D, K) float64 array."""
    n_clusters, n_features = centers.shape
    out = np.empty((n_features, n_clusters))
    for k in range(n_clusters):
        for j in range(n_features):
            out[j, k] = centers[k, j]
    return out


@strict_helper
def _direct_block(X, start, m, centers_t64, xt, row, best_idx, best_dist):
    """Exact nearest center of the m rows of X from ``start``, computed directly: the
    defining distance ``sum_j (x_j - c_j)^2`` (float64, feature order, each operation
    rounded: no fast-math, so no fused multiply-add) for every center, ties to the
    lowest index.  Into ``best_idx`` and ``best_dist``.

    The block is first transposed into ``xt`` (at least 2 x BLOCK_SIZE, float64), so
    that every loop runs across rows, contiguous and branch-free, and vectorises
    without reassociating anything.  One or two features: ``_nearest_of_pairs``.
    More: one center at a time, its distances summed feature by feature in ``row``
    (BLOCK_SIZE), then folded into the running minimum.
    """
    n_features, n_clusters = centers_t64.shape
    for j in range(n_features):  # feature-major: 1M x 2 float64, 1.8 -> 1.0 ms a pass
        xj = xt[j]
        for i in range(m):
            xj[i] = X[start + i, j]
    if n_features <= 2:
        if n_features == 1:
            xt[1, :m] = 0.0
        _nearest_of_pairs(xt[0], xt[1], centers_t64, m, best_idx, best_dist)
        return
    for k in range(n_clusters):
        x0 = xt[0]
        c = centers_t64[0, k]
        for i in range(m):
            diff = x0[i] - c
            row[i] = diff * diff
        for j in range(1, n_features):
            xj = xt[j]
            c = centers_t64[j, k]
            for i in range(m):
                diff = xj[i] - c
                row[i] = row[i] + diff * diff
        if k == 0:
            for i in range(m):
                best_idx[i] = 0
                best_dist[i] = row[i]
        else:
            kk = np.int32(k)
            for i in range(m):
                val = row[i]
                low = best_dist[i]
                best_idx[i] = kk if val < low else best_idx[i]
                best_dist[i] = min(low, val)


@strict_helper
def _pair_sq_dist(u, v, a, b):
    """(u - a)^2 + (v - b)^2, each operation rounded, in this order: the defining
    distance of two features (inlined by LLVM)."""
    p = u - a
    q = v - b
    return p * p + q * q


@strict_helper
def _nearest_of_pairs(x0, x1, centers_t64, m, best_idx, best_dist):
    """``_direct_block``'s search for data of one or two features (a second feature of
    zeros for one: (0 - 0)^2 = 0 adds nothing, exactly): four centers per pass over the
    rows, each distance written out, so the running minimum stays in registers across
    them (1M x 2 float64, K = 8, 2 threads: 1.9 -> 1.4 ms against one pass a center).
    The minimum takes the centers in index order: ties go to the lowest."""
    n_clusters = centers_t64.shape[1]
    two = centers_t64.shape[0] == 2
    for i in range(m):
        best_idx[i] = 0
        best_dist[i] = np.inf
    k = 0
    while k < n_clusters:
        # a block of four centers; past the end it repeats the last center, which
        # cannot win a strict comparison against itself
        ka, kb, kc, kd = k, min(k + 1, n_clusters - 1), min(k + 2, n_clusters - 1), \
            min(k + 3, n_clusters - 1)
        a0, b0, c0, d0 = (centers_t64[0, ka], centers_t64[0, kb], centers_t64[0, kc],
                          centers_t64[0, kd])
        a1 = centers_t64[1, ka] if two else 0.0
        b1 = centers_t64[1, kb] if two else 0.0
        c1 = centers_t64[1, kc] if two else 0.0
        d1 = centers_t64[1, kd] if two else 0.0
        ia, ib, ic, id_ = np.int32(ka), np.int32(kb), np.int32(kc), np.int32(kd)
        for i in range(m):
            u = x0[i]
            v = x1[i]
            va = _pair_sq_dist(u, v, a0, a1)
            vb = _pair_sq_dist(u, v, b0, b1)
            vc = _pair_sq_dist(u, v, c0, c1)
            vd = _pair_sq_dist(u, v, d0, d1)
            low = best_dist[i]
            idx = best_idx[i]
            idx = ia if va < low else idx
            low = min(low, va)
            idx = ib if vb < low else idx
            low = min(low, vb)
            idx = ic if vc < low else idx
            low = min(low, vc)
            idx = id_ if vd < low else idx
            low = min(low, vd)
            best_idx[i] = idx
            best_dist[i] = low
        k += 4


@helper
def _block_dots(X, start, m, centers, centers_t, buf):
    """x.c for the m rows of X from ``start``, by one single-threaded GEMM into the flat
    scratch ``buf``: laid out (n_clusters, m) for few clusters, so the argmin runs down
    contiguous columns, else (m, n_clusters).  Read entries with ``_dot_at``."""
    n_clusters = centers.shape[0]
    if n_clusters < KEYED_ARGMIN_MIN_CLUSTERS:
        # X.C^T with C^T a plain (D, K) operand is the fast GEMM here (BLAS packs a
        # transposed X slowly); its (m, K) result is then transposed into place.
        rows = buf[n_clusters * m: 2 * n_clusters * m].reshape((m, n_clusters))
        np.dot(X[start:start + m], centers_t, rows)
        _transpose_into(rows, buf)
    else:
        out = buf[: m * n_clusters].reshape((m, n_clusters))
        np.dot(X[start:start + m], centers_t, out)


@helper
def _transpose_into(rows, out):
    """out[k * m + i] = rows[i, k] for the (m, n) array ``rows``: dots laid out (column,
    row).  In tiles of 32 rows: 1M x 16 x 16 float32, 4.3 -> 3.6 ms a pass on one thread
    against one sweep down each column."""
    m, n = rows.shape
    full = m - m % 32
    for i0 in range(0, full, 32):
        for k in range(n):
            for i in range(i0, i0 + 32):  # a constant trip count: unrolled
                out[k * m + i] = rows[i, k]
    for k in range(n):
        for i in range(full, m):
            out[k * m + i] = rows[i, k]


@helper
def _dot_at(buf, m, n_clusters, i, k):
    """x_i.c_k as laid out by ``_block_dots``."""
    if n_clusters < KEYED_ARGMIN_MIN_CLUSTERS:
        return buf[k * m + i]
    return buf[i * n_clusters + k]


@helper
def _block_argmin(half_sq_norms, buf, m, best_idx, best_val, second_val, vals, columns):
    """For the m rows of a ``_block_dots`` block: the cluster minimising ||c||^2/2 - x.c
    (lowest index on ties) into ``best_idx[i]``, that value into ``best_val[i]`` and the
    smallest value of the other clusters into ``second_val[i]`` (inf if K = 1).

    Few clusters: ``_group_top2`` over all the columns (``columns`` = 0, ..., K - 1),
    clusters in the outer loop and rows in the inner one, so it vectorises across rows.
    Many: a float min-reduction only vectorises with the ``nnan`` flag we never use, so
    each row's values are mapped to integers of the same order (``_keyed_top2``).
    ``vals`` is a scratch row.
    """
    n_clusters = half_sq_norms.shape[0]
    if n_clusters < KEYED_ARGMIN_MIN_CLUSTERS:
        _group_top2(buf, m, half_sq_norms, columns, 0, n_clusters, best_val, best_idx,
                    second_val)
        return
    if vals.itemsize == 4:
        _keyed_top2(half_sq_norms, buf, m, best_idx, best_val, second_val, vals,
                    vals.view(np.int32), np.int32(31), np.int32(0x7FFFFFFF))
    else:
        _keyed_top2(half_sq_norms, buf, m, best_idx, best_val, second_val, vals,
                    vals.view(np.int64), np.int64(63), np.int64(0x7FFFFFFFFFFFFFFF))


@helper
def _group_top2(out_t, c, half_sq, centers_of, q0, q1, v1, k1, v2):
    """For c rows: the smallest and second smallest v = h_q - x.c_q over the columns
    [q0, q1) of dots laid out (column, row), ``h_q = half_sq[q]``, and the first's center
    ``centers_of[q]`` (ties to the first column).  Columns in the outer loop and rows in
    the inner one, branch-free (min, max and a select), so it vectorises across rows."""
    h = half_sq[q0]
    k = np.int32(centers_of[q0])  # same width as the floats' lanes helps vectorisation
    col = out_t[q0 * c:(q0 + 1) * c]
    for p in range(c):
        v1[p] = h - col[p]
        k1[p] = k
        v2[p] = np.inf
    for q in range(q0 + 1, q1):
        h = half_sq[q]
        k = np.int32(centers_of[q])
        col = out_t[q * c:(q + 1) * c]
        for p in range(c):
            v = h - col[p]
            low = v1[p]
            v2[p] = min(v2[p], max(low, v))
            k1[p] = k if v < low else k1[p]
            v1[p] = min(low, v)


@helper
def _keyed_top2(half_sq_norms, buf, m, best_idx, best_val, second_val, vals, bits,
                sign_shift, mask):
    """``_block_argmin`` for many clusters (n >= 2), given ``bits``, the scratch row
    ``vals`` seen as signed ints of its width.

    key = bits for a non-negative float, bits ^ mask (all but the sign flipped) for a
    negative one: keys order like the floats, and the map is its own inverse.  -0.0
    (bits == -mask - 1) gets key 0, the key of +0.0, since the two compare equal.  Per
    row three passes, each a plain vectorisable loop: the values, their keys and the
    smallest; then the smallest key's first index, how many share it and the smallest
    other key (the runner-up is the smallest again when shared).  One call per block:
    called per row, the helper cost 4 passes and a call each (200,000 x 64 x 256
    float32, 2 threads: the argmin took 20 ms a step, now 13).
    """
    n = half_sq_norms.shape[0]
    negative_zero = -mask - 1
    for i in range(m):
        for k in range(n):
            vals[k] = half_sq_norms[k] - buf[i * n + k]
        smallest = mask
        for k in range(n):
            b = bits[k]
            key = 0 if b == negative_zero else b ^ ((b >> sign_shift) & mask)
            bits[k] = key
            smallest = min(smallest, key)
        first = n
        n_small = 0
        above = mask  # larger than any float's key
        for k in range(n):
            key = bits[k]
            hit = key == smallest
            first = min(first, k if hit else n)
            n_small += hit
            above = min(above, mask if hit else key)
        runner_up = smallest if n_small > 1 else above
        best_idx[i] = first
        bits[0] = smallest ^ ((smallest >> sign_shift) & mask)  # keys back to the bits
        bits[1] = runner_up ^ ((runner_up >> sign_shift) & mask)
        best_val[i] = vals[0]
        second_val[i] = vals[1]


@helper
def _sq_dist_f64(X, i, point):
    """sum_j (X[i, j] - point[j])^2 accumulated in float64 (any order: fast)."""
    acc = 0.0
    for j in range(X.shape[1]):
        diff = np.float64(X[i, j]) - np.float64(point[j])
        acc += diff * diff
    return acc


@strict_helper
def _exact_sq_dist(X, i, centers, k):
    """The assignment's defining distance: ``sum_j (x_j - c_j)^2`` in float64, summed
    in feature order, each operation rounded (no fast-math, no fused multiply-add).
    The reference computes exactly these bits."""
    acc = 0.0
    for j in range(X.shape[1]):
        diff = np.float64(X[i, j]) - np.float64(centers[k, j])
        acc += diff * diff
    return acc


@helper
def _exact_row(X, i, centers, dist):
    """Exact distances of row i to every center into ``dist``; returns the nearest
    (lowest index on ties)."""
    best = 0
    for k in range(centers.shape[0]):
        dist[k] = _exact_sq_dist(X, i, centers, k)
        if dist[k] < dist[best]:
            best = k
    return best


@helper
def _rel_error(n_features):
    """Relative error bound of a float64 sum of n_features squared differences, in any
    order (and of its square root), with room to spare: (D + 8) * 2^-53."""
    return (n_features + 8) * 2.0 ** -53


@helper
def _separated(low, up, rel):
    """True if a center at exact distance >= ``low`` is certainly farther than one at
    exact distance <= ``up``, also as measured by the exact (rounded) distance."""
    return low - up > 2.0 * rel * (low + up)


@helper
def _gemm_error(x_sq, n_features, h_max, unit):
    """Bound on the error of ``r_k = ||x||^2 + 2 (h_k - x.c_k)`` when ``h_k = ||c_k||^2/2``
    and the dot product are rounded in X's dtype (unit roundoff ``unit``) by any GEMM:
    |fl(x.c) - x.c| <= D u sum_j |x_j c_j| <= D u ||x|| ||c|| <= D u (||x||^2/2 + h_max)
    (no square root), plus the rounding of h_k and of the subtraction, plus float64
    rounding of ||x||^2 and of the sum."""
    e_val = (n_features + 6) * unit * (2.0 * h_max + 0.5 * x_sq)
    return 2.0 * e_val + (n_features + 4) * 2.0 ** -53 * x_sq


@helper
def _settles(r_best, r_second, err, rel):
    """True if squared distances ``r_best`` < ``r_second``, each within ``err`` of the
    true value, certainly order the two centers as the exact distance does: the gap
    beats both errors plus the exact distance's own rounding (relative ``rel``)."""
    return r_second - r_best > 2.0 * err + 2.0 * rel * (abs(r_best) + abs(r_second) + 2.0 * err)


@helper
def _gemm_settles(best_val, second_val, x_sq, err, rel):
    """True if the GEMM's choice is certainly the exact nearest center: its values
    give r_k = ||x||^2 + 2 v_k within ``err`` (``_gemm_error``) of the true distances."""
    return _settles(x_sq + 2.0 * np.float64(best_val), x_sq + 2.0 * np.float64(second_val),
                    err, rel)


@helper
def _row_sq_norm(X, i):
    acc = 0.0
    for j in range(X.shape[1]):
        acc += np.float64(X[i, j]) * np.float64(X[i, j])
    return acc


@helper
def _error_scale(centers):
    """The largest ||c||^2/2 in float64, slightly inflated."""
    h_max = 0.0
    for k in range(centers.shape[0]):
        h_max = max(h_max, 0.5 * _row_sq_norm(centers, k))
    return h_max * (1.0 + 1e-12)


@helper
def _unit_roundoff(X):
    return 2.0 ** -24 if X.itemsize == 4 else 2.0 ** -53


@helper
def _center_setup(centers):
    """What the assignment kernels compute once of the centers: their transpose (for the
    block GEMM) and its float64 copy (for the direct distances), ||c||^2 / 2, the
    column -> center map of a GEMM block, and the error scale of the GEMM's bound."""
    return (np.ascontiguousarray(centers.T), _transposed_f64(centers), _half_sq_norms(centers),
            np.arange(centers.shape[0]), _error_scale(centers))
