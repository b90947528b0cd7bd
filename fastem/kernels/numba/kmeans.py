"""K-means kernels, numba backend. Same names and signatures as ``reference/kmeans.py``.

Determinism: samples are cut into fixed blocks of ``BLOCK_SIZE``; reductions map
contiguous runs of blocks onto a number of slots that depends only on the problem
size; each slot is reduced serially by one thread and the slots are then added in
slot order.  Nothing depends on the thread count, so results are bit-identical for
any ``n_threads``.

Labels are the reference's exactly: the nearest center by the exact float64 distance
(``_exact_sq_dist``, compiled without fast-math), ties to the lowest index.  With few
features (``_direct``) that distance is simply computed for every center, vectorised
across the rows of a block (``_direct_block``).  Otherwise the fast path proposes a
label from ``||x - c||^2 = ||x||^2 + 2 (||c||^2 / 2 - x.c)`` with the ``x.c`` block
computed by one single-threaded GEMM (numba calls BLAS for ``np.dot``) and keeps it
only when the gap to the runner-up exceeds the GEMM's rounding error bound
(``_gemm_settles``); the rare row that fails is recomputed exactly.  The bounded
algorithms (``bounded_step``) certify their fast distances the same way, so every
algorithm gives the same labels.  Inertia and the k-means++ distances are computed
directly as ``sum_j (x_j - c_j)^2`` in float64.
"""

import numpy as np
from numba import prange

from ._jit import helper, kernel, strict_helper
from ._slots import BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES, _n_slots, _slot_samples  # noqa: F401


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


@kernel
def assign_labels(X, centers, labels, min_sq_dist, n_threads):
    """Nearest center of every sample (see the reference for the contract).

    With few features the exact distances are computed directly (``_direct_block``).
    Otherwise the block GEMM proposes each row's nearest center; the proposal stands
    when its margin over the runner-up exceeds the GEMM's rounding error bound, and
    otherwise the row is settled by the exact distance.  Either way labels equal the
    reference's bit for bit.
    """
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    direct = _direct(n_features, n_clusters)
    centers_t = np.ascontiguousarray(centers.T)
    centers_t64 = _transposed_f64(centers)
    half_sq_norms = _half_sq_norms(centers)
    columns = np.arange(n_clusters)  # the center of each column of a GEMM block
    h_max = _error_scale(centers)
    unit = _unit_roundoff(X)
    rel = _rel_error(n_features)
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    for b in prange(n_blocks):
        start = b * BLOCK_SIZE
        m = min(start + BLOCK_SIZE, n_samples) - start
        best_idx = np.empty(BLOCK_SIZE, dtype=np.int32)
        if direct:
            xt = np.empty((max(n_features, 2), BLOCK_SIZE))
            _direct_block(X, start, m, centers_t64, xt, np.empty(BLOCK_SIZE), best_idx,
                          min_sq_dist[start:start + m])
            labels[start:start + m] = best_idx[:m]
            continue
        buf = np.empty(_dots_size(n_clusters), dtype=X.dtype)
        vals = np.empty(n_clusters, dtype=X.dtype)
        dist = np.empty(n_clusters)
        best_vals = np.empty(BLOCK_SIZE, dtype=X.dtype)
        second_vals = np.empty(BLOCK_SIZE, dtype=X.dtype)
        _block_dots(X, start, m, centers, centers_t, buf)
        _block_argmin(half_sq_norms, buf, m, best_idx, best_vals, second_vals, vals, columns)
        for i in range(m):
            x_sq = _row_sq_norm(X, start + i)
            err = _gemm_error(x_sq, n_features, h_max, unit)
            if n_clusters == 1 or _gemm_settles(best_vals[i], second_vals[i], x_sq, err, rel):
                labels[start + i] = best_idx[i]
                min_sq_dist[start + i] = max(x_sq + 2.0 * np.float64(best_vals[i]), 0.0)
            else:
                best = _exact_row(X, start + i, centers, dist)
                labels[start + i] = best
                min_sq_dist[start + i] = dist[best]


@helper
def _reduce_slots(part_sums, part_weights, sums, weight_sums):
    """Add the slots in slot order: bit-identical for any thread count."""
    sums[:] = 0.0
    weight_sums[:] = 0.0
    for slot in range(part_sums.shape[0]):
        sums += part_sums[slot]
        weight_sums += part_weights[slot]


@kernel
def lloyd_step(X, sample_weight, centers, labels, sums, weight_sums, n_threads):
    """Assignment fused with the weighted per-cluster sums (see the reference); the
    assignment is found as in ``assign_labels``.  Returns the number of labels changed."""
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    direct = _direct(n_features, n_clusters)
    centers_t = np.ascontiguousarray(centers.T)
    centers_t64 = _transposed_f64(centers)
    half_sq_norms = _half_sq_norms(centers)
    columns = np.arange(n_clusters)  # the center of each column of a GEMM block
    h_max = _error_scale(centers)
    unit = _unit_roundoff(X)
    rel = _rel_error(n_features)
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    n_slots = _n_slots(n_blocks, 8 * n_clusters * (n_features + 1))
    part_sums = np.zeros((n_slots, n_clusters, n_features), dtype=np.float64)
    part_weights = np.zeros((n_slots, n_clusters), dtype=np.float64)
    part_changed = np.zeros(n_slots, dtype=np.int64)
    for slot in prange(n_slots):
        start, stop = _slot_samples(slot, n_slots, n_blocks, n_samples)
        slot_sums = part_sums[slot]
        slot_weights = part_weights[slot]
        rows = BLOCK_SIZE if direct else _gemm_rows(n_clusters)
        # every scratch array is allocated on both paths: a variable defined on one
        # branch only costs numba's loop 8% (1M x 16 x 16 float32, one thread)
        best_idx = np.empty(rows, dtype=np.int32)
        xt = np.empty((max(n_features, 2) if direct else 0, BLOCK_SIZE))
        row = np.empty(BLOCK_SIZE if direct else 0)
        best_dist = np.empty(BLOCK_SIZE if direct else 0)
        buf = np.empty(0 if direct else _dots_size(n_clusters), dtype=X.dtype)
        vals = np.empty(n_clusters, dtype=X.dtype)
        dist = np.empty(n_clusters)
        best_vals = np.empty(rows, dtype=X.dtype)
        second_vals = np.empty(rows, dtype=X.dtype)
        n_changed = 0
        for b_start in range(start, stop, rows):
            m = min(b_start + rows, stop) - b_start
            if direct:
                _direct_block(X, b_start, m, centers_t64, xt, row, best_idx, best_dist)
            else:
                _block_dots(X, b_start, m, centers, centers_t, buf)
                _block_argmin(half_sq_norms, buf, m, best_idx, best_vals, second_vals, vals,
                              columns)
            for i in range(m):
                best = best_idx[i]
                if not direct and n_clusters > 1:
                    x_sq = _row_sq_norm(X, b_start + i)
                    err = _gemm_error(x_sq, n_features, h_max, unit)
                    if not _gemm_settles(best_vals[i], second_vals[i], x_sq, err, rel):
                        best = _exact_row(X, b_start + i, centers, dist)
                n_changed += labels[b_start + i] != best
                labels[b_start + i] = best
                # the weighted sums, written out: through a helper this loop ran 2x slower
                w = sample_weight[b_start + i]
                slot_weights[best] += w
                acc = slot_sums[best]
                for j in range(n_features):
                    acc[j] += w * X[b_start + i, j]
        part_changed[slot] = n_changed
    _reduce_slots(part_sums, part_weights, sums, weight_sums)
    return part_changed.sum()


@kernel
def inertia(X, sample_weight, centers, labels, n_threads):
    """sum_i w_i ||x_i - centers[labels_i]||^2 in float64 (see the reference)."""
    n_samples = X.shape[0]
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    n_slots = _n_slots(n_blocks, 8)
    partial = np.zeros(n_slots, dtype=np.float64)
    for slot in prange(n_slots):
        start, stop = _slot_samples(slot, n_slots, n_blocks, n_samples)
        acc = 0.0
        for i in range(start, stop):
            acc += sample_weight[i] * _sq_dist_f64(X, i, centers[labels[i]])
        partial[slot] = acc
    total = 0.0
    for slot in range(n_slots):
        total += partial[slot]
    return total


@kernel
def kmeanspp_trial_potentials(X, sample_weight, candidates, closest_sq_dist, potentials, n_threads):
    """Potential of each k-means++ candidate (see the reference).

    Per block, the squared distances to all candidates come from one float64 GEMM,
    ``||x||^2 - 2 x.c + ||c||^2`` (clamped at 0), as scikit-learn computes them; the
    direct per-pair loop was 1.5x slower (200,000 x 64 float32, 7 candidates: 5.3 ms
    against 3.5 ms per call on 2 threads).
    """
    n_samples, n_features = X.shape
    n_trials = candidates.shape[0]
    cand = np.empty((n_features, n_trials))  # candidates^T in float64, and their norms
    cand_sq = np.zeros(n_trials)
    for t in range(n_trials):
        for j in range(n_features):
            v = np.float64(candidates[t, j])
            cand[j, t] = v
            cand_sq[t] += v * v
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    n_slots = _n_slots(n_blocks, 8 * n_trials)
    partial = np.zeros((n_slots, n_trials), dtype=np.float64)
    for slot in prange(n_slots):
        start, stop = _slot_samples(slot, n_slots, n_blocks, n_samples)
        z = np.empty((BLOCK_SIZE, n_features))
        dots = np.empty((BLOCK_SIZE, n_trials))
        x_sq = np.empty(BLOCK_SIZE)
        for b in range(start, stop, BLOCK_SIZE):
            m = min(BLOCK_SIZE, stop - b)
            for i in range(m):
                acc = 0.0
                for j in range(n_features):
                    v = np.float64(X[b + i, j])
                    z[i, j] = v
                    acc += v * v
                x_sq[i] = acc
            np.dot(z[:m], cand, dots[:m])
            for i in range(m):
                w = sample_weight[b + i]
                closest = closest_sq_dist[b + i]
                for t in range(n_trials):
                    d2 = max(x_sq[i] - 2.0 * dots[i, t] + cand_sq[t], 0.0)
                    partial[slot, t] += w * min(closest, d2)
    for t in range(n_trials):
        acc = 0.0
        for slot in range(n_slots):
            acc += partial[slot, t]
        potentials[t] = acc


@kernel
def kmeanspp_update_closest(X, center, closest_sq_dist, n_threads):
    """closest_sq_dist = min(closest_sq_dist, ||x - center||^2), in place."""
    for i in prange(X.shape[0]):
        d2 = _sq_dist_f64(X, i, center)
        if d2 < closest_sq_dist[i]:
            closest_sq_dist[i] = d2


@helper
def _group_drifts(drift, group_start, group_members):
    """Per group: the largest drift, the center that has it, and the second largest, so
    a row assigned to that center can use the second (its bound excludes its own)."""
    n_groups = group_start.shape[0] - 1
    top = np.zeros(n_groups)
    top_center = np.full(n_groups, -1, dtype=np.int64)
    runner_up = np.zeros(n_groups)
    for g in range(n_groups):
        for p in range(group_start[g], group_start[g + 1]):
            k = group_members[p]
            if drift[k] > top[g]:
                runner_up[g] = top[g]
                top[g] = drift[k]
                top_center[g] = k
            elif drift[k] > runner_up[g]:
                runner_up[g] = drift[k]
    return top, top_center, runner_up


@helper
def _bounds_from(dist, best, rel, group_start, group_members, lower, i):
    """Bounds of row i from squared distances ``dist`` to every center, each within
    relative error ``rel`` of the exact distance: lower[i, g] <= the exact distance to
    every center of group g other than ``best``.  Returns the upper bound to ``best``."""
    for g in range(group_start.shape[0] - 1):
        low = FAR
        for p in range(group_start[g], group_start[g + 1]):
            k = group_members[p]
            if k != best:
                low = min(low, dist[k])
        lower[i, g] = FAR if low == FAR else np.sqrt(max(low, 0.0) * (1.0 - rel))
    return np.sqrt(max(dist[best], 0.0) * (1.0 + rel))


#: Centers per GEMM tile of the bounded step with several groups: consecutive groups
#: are merged until a tile holds this many (Yinyang's groups of about 32 stay whole;
#: Elkan's single centers go eight at a time), as a narrower GEMM costs more per
#: distance (float32, 1024 x 64 rows, one thread: 1.6 ns a distance for 8-10 centers,
#: 1.1 for 32, 0.8 for 256).
MIN_TILE_CENTERS = 8
#: A row whose open groups' tiles hold more than this fraction of the centers (and
#: every row of a ``full`` step) goes through the GEMM with all centers instead, the
#: last "tile" (a wide GEMM costs half as much per distance, and there is no gather).
TILED_MAX_FRACTION = 0.5


@helper
def _tiles(group_start, min_size):
    """Tiles of consecutive groups, each of at least ``min_size`` centers but the last.
    Returns (first group of each tile and the end, (n_tiles + 1,); tile of each group)."""
    n_groups = group_start.shape[0] - 1
    first = np.empty(n_groups + 1, dtype=np.int64)
    tile_of = np.empty(n_groups, dtype=np.int64)
    n_tiles = 0
    first[0] = 0
    g = 0
    while g < n_groups:
        size = 0
        while g < n_groups and size < min_size:
            size += group_start[g + 1] - group_start[g]
            tile_of[g] = n_tiles
            g += 1
        n_tiles += 1
        first[n_tiles] = g
    return first[:n_tiles + 1], tile_of


@helper
def _members_t(centers, group_members, group_start, tile_first):
    """The centers in group-member order, each tile's block transposed: tile t's
    (D, n_t) block starts at D * (its first member).  Then, from D * K, all the centers
    as one (D, K) block: the last tile."""
    n_clusters, n_features = centers.shape
    out = np.empty(2 * n_features * n_clusters, dtype=centers.dtype)
    n_tiles = tile_first.shape[0] - 1
    for t in range(n_tiles + 1):
        base = 0 if t == n_tiles else group_start[tile_first[t]]
        n_t = n_clusters if t == n_tiles else group_start[tile_first[t + 1]] - base
        offset = n_features * (n_clusters if t == n_tiles else base)
        for q in range(n_t):
            k = group_members[base + q]
            for j in range(n_features):
                out[offset + j * n_t + q] = centers[k, j]
    return out


@kernel
def bounded_step(X, sample_weight, centers, drift, half_sep, group_of, group_start,
                 group_members, labels, upper, lower, full, sums, weight_sums, stats,
                 n_threads):
    """Lloyd's step with distance bounds (Hamerly, Yinyang, Elkan); see the reference.

    Per row: ``upper`` bounds the exact distance to the assigned center and
    ``lower[:, g]`` the exact distance to every other center of group g (one group:
    Hamerly; about K/32: Yinyang; one per center: Elkan).  Centers moved by at most
    ``drift`` since the bounds were made, so upper grows by the assigned center's drift
    and each lower shrinks by its group's largest drift (of the other centers).  A row
    whose bounds separate (also allowing ``2 half_sep[a] - upper``: no other center is
    nearer than that) keeps its label without computing a distance; otherwise its upper
    bound is tightened by its float64 distance to its center.  The rows still open
    (every row when ``full``) go, block by block, through GEMMs:

    - one group (Hamerly): the block's GEMM with all centers, and the top two values;
    - several: for each tile of groups (``_tiles``) the GEMM of the block's rows with
      an open group there, gathered, against the tile's centers.  A row's candidates
      are those tiles' centers and, if its own center is not among them, that center at
      its float64 distance.  The bounds of every group of those tiles are rebuilt.

    Labels are certified as in ``lloyd_step``: the fast nearest is kept when its margin
    over every other candidate beats their error bounds (``_settles``), else the row is
    settled by the exact distance.  So they equal ``lloyd_step``'s bit for bit, and so
    do the sums (same slots, same row order).

    ``stats`` (float64, 3) is written: labels changed, the largest upper bound made,
    point-center distances computed.
    """
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    n_groups = group_start.shape[0] - 1
    centers_t = np.ascontiguousarray(centers.T)
    half_sq_norms = _half_sq_norms(centers)
    h_max = _error_scale(centers)
    unit = _unit_roundoff(X)
    rel = _rel_error(n_features)
    top, top_center, runner_up = _group_drifts(drift, group_start, group_members)
    tile_first, tile_of = _tiles(group_start, MIN_TILE_CENTERS)
    n_tiles = tile_first.shape[0] - 1
    members_t = _members_t(centers, group_members, group_start, tile_first)
    half_sq_members = half_sq_norms[group_members]
    columns = np.arange(n_clusters)  # the center of each column of the one-group GEMM
    tiled_max = TILED_MAX_FRACTION * n_clusters
    rows = _gemm_rows(n_clusters)
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    n_slots = _n_slots(n_blocks, 8 * n_clusters * (n_features + 1))
    part_sums = np.zeros((n_slots, n_clusters, n_features), dtype=np.float64)
    part_weights = np.zeros((n_slots, n_clusters), dtype=np.float64)
    part_stats = np.zeros((n_slots, 3))
    for slot in prange(n_slots):
        start, stop = _slot_samples(slot, n_slots, n_blocks, n_samples)
        gathered = np.empty((rows, n_features), dtype=X.dtype)
        new_labels = np.empty(rows, dtype=np.int32)
        dist = np.empty(n_clusters)
        # one group: the rows of the block's GEMM
        buf = np.empty(_dots_size(n_clusters) if n_groups == 1 else 0, dtype=X.dtype)
        pending = np.empty(rows, dtype=np.int64)
        vals = np.empty(n_clusters, dtype=X.dtype)
        best_idx = np.empty(rows, dtype=np.int32)
        best_vals = np.empty(rows, dtype=X.dtype)
        second_vals = np.empty(rows, dtype=X.dtype)
        # several: each tile's rows, the tile's dots, per row its candidates so far
        n_tiled_max = 0 if n_groups == 1 else rows
        tile_rows = np.empty((n_tiles + 1, n_tiled_max), dtype=np.int64)
        tile_count = np.zeros(n_tiles + 1, dtype=np.int64)
        touched = np.empty(n_tiles, dtype=np.int64)
        tile_dots = np.empty(n_tiled_max * n_clusters, dtype=X.dtype)
        tile_dots_t = np.empty(n_tiled_max * n_clusters, dtype=X.dtype)
        v1 = np.empty(n_tiled_max, dtype=X.dtype)
        v2 = np.empty(n_tiled_max, dtype=X.dtype)
        k1 = np.empty(n_tiled_max, dtype=np.int32)
        tiled = np.empty(n_tiled_max, dtype=np.int64)
        x_sqs = np.empty(n_tiled_max)
        errs = np.empty(n_tiled_max)
        r_olds = np.empty(n_tiled_max)
        own_f64 = np.empty(n_tiled_max, dtype=np.bool_)  # own center not in the tiles
        r_best = np.empty(n_tiled_max)  # the nearest candidate: squared distance,
        k_best = np.empty(n_tiled_max, dtype=np.int64)  # center,
        g_best = np.empty(n_tiled_max, dtype=np.int64)  # group (-1: own, float64),
        r_next = np.empty(n_tiled_max)  # runner-up in that group
        r_other = np.empty(n_tiled_max)  # nearest candidate outside that group
        n_changed = 0
        largest = 0.0
        n_dist = 0
        slot_sums = part_sums[slot]
        slot_weights = part_weights[slot]
        for b_start in range(start, stop, rows):
            m = min(b_start + rows, stop) - b_start
            n_pending = 0
            n_tiled = 0
            for ii in range(m):
                i = b_start + ii
                old = labels[i]
                new_labels[ii] = old
                r_old = FAR
                n_open = n_clusters
                n_touched = 0
                if not full:
                    up = upper[i] + drift[old]
                    low_all = FAR
                    for g in range(n_groups):
                        low = lower[i, g] - (runner_up[g] if top_center[g] == old else top[g])
                        lower[i, g] = low
                        low_all = min(low_all, low)
                    upper[i] = up
                    if _separated(max(low_all, 2.0 * half_sep[old] - up), up, rel):
                        continue
                    r_old = _sq_dist_f64(X, i, centers[old])
                    n_dist += 1
                    up = np.sqrt(r_old * (1.0 + rel))
                    upper[i] = up
                    largest = max(largest, up)
                    if _separated(max(low_all, 2.0 * half_sep[old] - up), up, rel):
                        continue
                    n_open = 0
                    if n_groups > 1:
                        for g in range(n_groups):
                            if not _separated(lower[i, g], up, rel):
                                t = tile_of[g]  # a tile's groups are consecutive
                                if n_touched == 0 or touched[n_touched - 1] != t:
                                    touched[n_touched] = t
                                    n_touched += 1
                                    n_open += (group_start[tile_first[t + 1]]
                                               - group_start[tile_first[t]])
                if n_groups == 1:
                    pending[n_pending] = ii
                    n_pending += 1
                    continue
                x_sq = _row_sq_norm(X, i)
                own = n_open > tiled_max  # (always when full)
                if own:  # the last tile: all centers
                    n_touched = 1
                    touched[0] = n_tiles
                own_tile = -1 if own else tile_of[group_of[old]]
                for q in range(n_touched):
                    t = touched[q]
                    own = own or t == own_tile
                    tile_rows[t, tile_count[t]] = n_tiled
                    tile_count[t] += 1
                n_dist += n_open
                tiled[n_tiled] = ii
                x_sqs[n_tiled] = x_sq
                errs[n_tiled] = _gemm_error(x_sq, n_features, h_max, unit)
                r_olds[n_tiled] = r_old
                own_f64[n_tiled] = not own  # then the own center is a candidate as is
                r_best[n_tiled] = FAR if own else r_old
                k_best[n_tiled] = old
                g_best[n_tiled] = -1
                r_next[n_tiled] = FAR
                r_other[n_tiled] = FAR
                n_tiled += 1
            for t in range(n_tiles + 1):  # one GEMM per tile for its rows
                c = tile_count[t]
                if c == 0:
                    continue
                tile_count[t] = 0
                last = t == n_tiles
                base = 0 if last else group_start[tile_first[t]]
                n_t = n_clusters if last else group_start[tile_first[t + 1]] - base
                offset = n_features * (n_clusters if last else base)
                block = members_t[offset:offset + n_features * n_t].reshape((n_features, n_t))
                out = tile_dots[:c * n_t].reshape((c, n_t))
                if c == m:  # every row of the block, in order: no need to gather
                    np.dot(X[b_start:b_start + m], block, out)
                else:
                    for p in range(c):
                        gathered[p] = X[b_start + tiled[tile_rows[t, p]]]
                    np.dot(gathered[:c], block, out)
                _transpose_into(out, tile_dots_t)
                for g in range(0 if last else tile_first[t],
                               n_groups if last else tile_first[t + 1]):
                    if group_start[g + 1] == group_start[g]:
                        continue  # an empty group
                    _group_top2(tile_dots_t, c, half_sq_members[base:], group_members[base:],
                                group_start[g] - base, group_start[g + 1] - base, v1, k1, v2)
                    for p in range(c):
                        # r = ||x||^2 + 2 v lies within err of the exact squared distance
                        s = tile_rows[t, p]
                        x_sq = x_sqs[s]
                        r1 = x_sq + 2.0 * np.float64(v1[p])
                        # the group's bound, which the nearest's group gets again below
                        # without the nearest
                        lower[b_start + tiled[s], g] = np.sqrt(max(r1 - errs[s], 0.0))
                        if r1 < r_best[s]:
                            r_other[s] = min(r_other[s], r_best[s])
                            r_best[s] = r1
                            k_best[s] = k1[p]
                            g_best[s] = g
                            r_next[s] = FAR if v2[p] == np.inf else x_sq + 2.0 * np.float64(v2[p])
                        else:
                            r_other[s] = min(r_other[s], r1)
            for s in range(n_tiled):
                ii = tiled[s]
                i = b_start + ii
                old = labels[i]
                err = errs[s]
                # the own center's float64 distance is within rel of the true one
                e = max(err, rel * r_olds[s]) if own_f64[s] else err
                best = k_best[s]
                g = g_best[s]
                if _settles(r_best[s], min(r_other[s], r_next[s]), e, rel):
                    if g >= 0:
                        r = r_next[s]
                        lower[i, g] = FAR if r == FAR else np.sqrt(max(r - err, 0.0))
                        upper[i] = np.sqrt(max(r_best[s] + err, 0.0))
                    # (else the own center stays nearest: its upper bound is made)
                    if best != old and own_f64[s]:  # the own center is now an other
                        g_old = group_of[old]
                        lower[i, g_old] = min(lower[i, g_old],
                                              np.sqrt(r_olds[s] * (1.0 - rel)))
                else:  # near-tie among the fast distances: settle exactly
                    best = _exact_row(X, i, centers, dist)
                    n_dist += n_clusters
                    upper[i] = _bounds_from(dist, best, rel, group_start, group_members,
                                            lower, i)
                new_labels[ii] = best
                largest = max(largest, upper[i])
            if n_pending > 0:  # one group: one GEMM with all centers for the open rows
                if n_pending == m:  # the whole block: no need to gather
                    _block_dots(X, b_start, m, centers, centers_t, buf)
                else:
                    for p in range(n_pending):
                        gathered[p] = X[b_start + pending[p]]
                    _block_dots(gathered, 0, n_pending, centers, centers_t, buf)
                _block_argmin(half_sq_norms, buf, n_pending, best_idx, best_vals, second_vals,
                              vals, columns)
                for p in range(n_pending):
                    # the label (certified, else exact) and the bounds, written out here:
                    # a helper call per row with 19 arguments made these rows 2.5x slower
                    i = b_start + pending[p]
                    x_sq = _row_sq_norm(X, i)
                    err = _gemm_error(x_sq, n_features, h_max, unit)
                    if n_clusters == 1 or _gemm_settles(best_vals[p], second_vals[p], x_sq,
                                                        err, rel):
                        best = best_idx[p]
                        low = np.float64(second_vals[p])  # the runner-up: the other centers
                        lower[i, 0] = (FAR if low == np.inf else
                                       np.sqrt(max(x_sq + 2.0 * low - err, 0.0)))
                        upper[i] = np.sqrt(max(x_sq + 2.0 * np.float64(best_vals[p]) + err,
                                               0.0))
                    else:
                        best = _exact_row(X, i, centers, dist)
                        upper[i] = _bounds_from(dist, best, rel, group_start, group_members,
                                                lower, i)
                    new_labels[pending[p]] = best
                    largest = max(largest, upper[i])
                n_dist += n_pending * n_clusters
            for ii in range(m):
                i = b_start + ii
                best = new_labels[ii]
                n_changed += int(best != labels[i])
                labels[i] = best
                w = sample_weight[i]  # the same sums as lloyd_step, in the same order
                slot_weights[best] += w
                acc = slot_sums[best]
                for j in range(n_features):
                    acc[j] += w * X[i, j]
        part_stats[slot, 0] = n_changed
        part_stats[slot, 1] = largest
        part_stats[slot, 2] = n_dist
    _reduce_slots(part_sums, part_weights, sums, weight_sums)
    stats[0] = 0.0
    stats[1] = 0.0
    stats[2] = 0.0
    for slot in range(n_slots):
        stats[0] += part_stats[slot, 0]
        stats[1] = max(stats[1], part_stats[slot, 1])
        stats[2] += part_stats[slot, 2]
