"""The bounded K-means step (Hamerly, Yinyang, Elkan), numba backend (see
``reference/kmeans.py``): distance bounds per row skip most distance computations and
the step gives Lloyd's labels and sums bit for bit."""

import numpy as np
from numba import prange

from ._jit import helper, kernel
from ._slots import _center_sum_slots, _reduce_slots, _slot_samples
from ._distances import (
    _half_sq_norms,
    FAR,
    _dots_size,
    _gemm_rows,
    _block_dots,
    _transpose_into,
    _block_argmin,
    _group_top2,
    _sq_dist_f64,
    _exact_row,
    _rel_error,
    _separated,
    _gemm_error,
    _settles,
    _gemm_settles,
    _row_sq_norm,
    _error_scale,
    _unit_roundoff,
)


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
    n_blocks, n_slots, part_sums, part_weights, _ = _center_sum_slots(n_samples, n_clusters,
                                                                      n_features)
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
