"""K-means kernels, numba backend. Same names and signatures as ``reference/kmeans.py``.

Determinism: samples are cut into fixed blocks of ``BLOCK_SIZE``; reductions map
contiguous runs of blocks onto a number of slots that depends only on the problem
size; each slot is reduced serially by one thread and the slots are then added in
slot order.  Nothing depends on the thread count, so results are bit-identical for
any ``n_threads``.

Distances for the assignment use ``||x - c||^2 = ||x||^2 + 2 (||c||^2 / 2 - x.c)``
with the ``x.c`` block computed by one single-threaded GEMM per block (numba calls
BLAS for ``np.dot``); the argmin only needs ``||c||^2 / 2 - x.c``.  Inertia and the
k-means++ distances are computed directly as ``sum_j (x_j - c_j)^2`` in float64.
"""

import numpy as np
from numba import prange

from ._jit import BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES, helper, kernel


@helper
def _n_slots(n_blocks, bytes_per_slot):
    """Number of reduction slots: a function of the problem size only."""
    by_budget = max(1, SLOT_BUDGET_BYTES // max(1, bytes_per_slot))
    return max(1, min(n_blocks, MAX_SLOTS, by_budget))


@helper
def _slot_samples(slot, n_slots, n_blocks, n_samples):
    """Sample range [start, stop) of a slot: a contiguous run of whole blocks."""
    b0 = slot * n_blocks // n_slots
    b1 = (slot + 1) * n_blocks // n_slots
    return b0 * BLOCK_SIZE, min(b1 * BLOCK_SIZE, n_samples)


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


@helper
def _block_argmin(half_sq_norms, dots, m, best_idx, best_val, vals):
    """For rows i < m of ``dots``: the cluster minimising ||c||^2/2 - x.c (lowest index
    on ties) into ``best_idx[i]`` and that value into ``best_val[i]``.

    For few clusters a scalar scan is fastest.  For many, a branchy scan is slow and a
    float min-reduction only vectorises with the ``nnan`` flag we never use; so the
    values are mapped to integers with the same order (IEEE bits, negatives flipped,
    -0 equal to +0), where min-reductions vectorise: one pass finds the smallest key,
    a second the lowest index holding it.  The path is chosen once per block (inside
    the row loop it would keep LLVM from optimising either).  ``vals`` is a scratch row.
    """
    n_clusters = half_sq_norms.shape[0]
    if n_clusters < KEYED_ARGMIN_MIN_CLUSTERS:
        for i in range(m):
            best = 0
            low = half_sq_norms[0] - dots[i, 0]
            for k in range(1, n_clusters):
                val = half_sq_norms[k] - dots[i, k]
                if val < low:
                    low = val
                    best = k
            best_idx[i] = best
            best_val[i] = low
        return
    for i in range(m):
        for k in range(n_clusters):
            vals[k] = half_sq_norms[k] - dots[i, k]
        if vals.itemsize == 4:
            best = _keyed_argmin(vals.view(np.int32), np.int32(31), np.int32(0x7FFFFFFF))
        else:
            best = _keyed_argmin(vals.view(np.int64), np.int64(63),
                                 np.int64(0x7FFFFFFFFFFFFFFF))
        best_idx[i] = best
        best_val[i] = vals[best]


@helper
def _keyed_argmin(bits, sign_shift, mask):
    """Lowest index of the smallest float, given the floats' IEEE bits as signed ints.

    key = bits for a non-negative float, bits ^ mask (all but the sign flipped) for a
    negative one: keys order like the floats.  -0.0 (bits == -mask - 1) gets key 0, the
    key of +0.0, since the two compare equal.
    """
    n = bits.shape[0]
    negative_zero = -mask - 1
    smallest = mask
    for k in range(n):
        b = bits[k]
        key = 0 if b == negative_zero else b ^ ((b >> sign_shift) & mask)
        smallest = min(smallest, key)
    first = n
    for k in range(n):
        b = bits[k]
        key = 0 if b == negative_zero else b ^ ((b >> sign_shift) & mask)
        first = min(first, k if key == smallest else n)
    return first


@helper
def _sq_dist_f64(X, i, point):
    """sum_j (X[i, j] - point[j])^2 accumulated in float64."""
    acc = 0.0
    for j in range(X.shape[1]):
        diff = np.float64(X[i, j]) - np.float64(point[j])
        acc += diff * diff
    return acc


@kernel
def assign_labels(X, centers, labels, min_sq_dist, n_threads):
    """Nearest center of every sample (see the reference for the contract)."""
    n_samples = X.shape[0]
    n_clusters = centers.shape[0]
    centers_t = np.ascontiguousarray(centers.T)
    half_sq_norms = _half_sq_norms(centers)
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    for b in prange(n_blocks):
        start = b * BLOCK_SIZE
        stop = min(start + BLOCK_SIZE, n_samples)
        dots = np.empty((stop - start, n_clusters), dtype=X.dtype)
        vals = np.empty(n_clusters, dtype=X.dtype)
        best_idx = np.empty(BLOCK_SIZE, dtype=np.int64)
        best_vals = np.empty(BLOCK_SIZE, dtype=X.dtype)
        np.dot(X[start:stop], centers_t, dots)
        _block_argmin(half_sq_norms, dots, stop - start, best_idx, best_vals, vals)
        for i in range(stop - start):
            best_val = best_vals[i]
            labels[start + i] = best_idx[i]
            x_sq = 0.0
            for j in range(X.shape[1]):
                x_sq += np.float64(X[start + i, j]) * np.float64(X[start + i, j])
            min_sq_dist[start + i] = max(x_sq + 2.0 * np.float64(best_val), 0.0)


@kernel
def lloyd_step(X, sample_weight, centers, labels, sums, weight_sums, n_threads):
    """Assignment fused with the weighted per-cluster sums (see the reference)."""
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    centers_t = np.ascontiguousarray(centers.T)
    half_sq_norms = _half_sq_norms(centers)
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    n_slots = _n_slots(n_blocks, 8 * n_clusters * (n_features + 1))
    part_sums = np.zeros((n_slots, n_clusters, n_features), dtype=np.float64)
    part_weights = np.zeros((n_slots, n_clusters), dtype=np.float64)
    for slot in prange(n_slots):
        start, stop = _slot_samples(slot, n_slots, n_blocks, n_samples)
        dots = np.empty((BLOCK_SIZE, n_clusters), dtype=X.dtype)
        vals = np.empty(n_clusters, dtype=X.dtype)
        best_idx = np.empty(BLOCK_SIZE, dtype=np.int64)
        best_vals = np.empty(BLOCK_SIZE, dtype=X.dtype)
        for b_start in range(start, stop, BLOCK_SIZE):
            b_stop = min(b_start + BLOCK_SIZE, stop)
            np.dot(X[b_start:b_stop], centers_t, dots[: b_stop - b_start])
            _block_argmin(half_sq_norms, dots, b_stop - b_start, best_idx, best_vals, vals)
            for i in range(b_stop - b_start):
                best = best_idx[i]
                labels[b_start + i] = best
                w = sample_weight[b_start + i]
                part_weights[slot, best] += w
                for j in range(n_features):
                    part_sums[slot, best, j] += w * X[b_start + i, j]
    sums[:] = 0.0
    weight_sums[:] = 0.0
    for slot in range(n_slots):  # fixed order: bit-identical for any thread count
        sums += part_sums[slot]
        weight_sums += part_weights[slot]


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
