"""K-means kernels on CSR rows, numba backend (see ``reference/kmeans.py``).

A row arrives as ``data[indptr[i]:indptr[i + 1]]`` at the columns ``indices[...]``
(sorted, no duplicates: the estimators pass canonical CSR); nothing is densified.

Labels are the dense kernels' exactly.  The fast path proposes the nearest center from
``r_k = ||x||^2 + 2 (||c_k||^2 / 2 - x.c_k)``, all in float64, where ``x.c_k`` runs over
the row's stored entries only (``O(nnz K)`` a row, against ``centers^T`` so that each
entry updates K contiguous dot products), and keeps it when the gap to the runner-up
beats the rounding-error bound (``_gemm_settles`` with float64's unit roundoff); a row
that fails gets the exact distance ``sum_j (x_j - c_j)^2`` over every feature in order
(``_exact_sq_dist_csr``, the same bits as the dense ``_exact_sq_dist``: an absent entry
is 0, and ``0 - c`` is ``-c`` exactly).  The Lloyd sums are added per cluster in row
order (see ``lloyd_step_csr``): the dense kernel's up to rounding.  Inertia and the
k-means++ distances use ``||x||^2 - 2 x.c + ||c||^2`` clamped at 0, as scikit-learn does
for sparse rows (an exact distance would cost ``O(D)`` a row).
"""

import numpy as np
from numba import prange

from ._jit import helper, kernel, strict_helper
from ._slots import BLOCK_SIZE, _n_slots, _slot_samples, _sum_slots_into
from ._distances import _error_scale, _gemm_error, _gemm_settles, _rel_error


@helper
def _csr_setup(centers):
    """centers^T in float64 (D x K), ||c_k||^2 / 2 in float64, and the error scale."""
    n_clusters, n_features = centers.shape
    ct = np.empty((n_features, n_clusters))
    half = np.zeros(n_clusters)
    for k in range(n_clusters):
        acc = 0.0
        for j in range(n_features):
            v = np.float64(centers[k, j])
            ct[j, k] = v
            acc += v * v
        half[k] = 0.5 * acc
    return ct, half, _error_scale(centers)


@helper
def _csr_row_sq_norm(data, lo, hi):
    acc = 0.0
    for p in range(lo, hi):
        v = np.float64(data[p])
        acc += v * v
    return acc


@helper
def _csr_dots(data, indices, lo, hi, ct, dots):
    """dots[k] = x.c_k over the row's entries, in entry order."""
    dots[:] = 0.0
    for p in range(lo, hi):
        v = np.float64(data[p])
        col = ct[indices[p]]
        for k in range(dots.shape[0]):
            dots[k] += v * col[k]


@strict_helper
def _exact_sq_dist_csr(data, indices, lo, hi, centers, k):
    """``sum_j (x_j - c_kj)^2`` over every feature in order, each operation rounded: the
    dense ``_exact_sq_dist`` of the same row, bit for bit."""
    acc = 0.0
    p = lo
    for j in range(centers.shape[1]):
        x = 0.0
        if p < hi and indices[p] == j:
            x = np.float64(data[p])
            p += 1
        diff = x - np.float64(centers[k, j])
        acc += diff * diff
    return acc


@helper
def _csr_nearest(data, indices, lo, hi, centers, ct, half, h_max, rel, dots, dist):
    """(the exact nearest center of the row, its squared distance)."""
    n_clusters, n_features = centers.shape
    _csr_dots(data, indices, lo, hi, ct, dots)
    best, second = 0, -1
    for k in range(1, n_clusters):
        v = half[k] - dots[k]
        if v < half[best] - dots[best]:
            best, second = k, best
        elif second < 0 or v < half[second] - dots[second]:
            second = k
    x_sq = _csr_row_sq_norm(data, lo, hi)
    v_best = half[best] - dots[best]
    if n_clusters == 1:
        return best, max(x_sq + 2.0 * v_best, 0.0)
    err = _gemm_error(x_sq, n_features, h_max, 2.0 ** -53)
    if _gemm_settles(v_best, half[second] - dots[second], x_sq, err, rel):
        return best, max(x_sq + 2.0 * v_best, 0.0)
    best = 0
    for k in range(n_clusters):
        dist[k] = _exact_sq_dist_csr(data, indices, lo, hi, centers, k)
        if dist[k] < dist[best]:
            best = k
    return best, dist[best]


@kernel
def assign_labels_csr(data, indices, indptr, centers, labels, min_sq_dist, n_threads):
    """Nearest center of every CSR row (``assign_labels`` of its dense form)."""
    n_samples = indptr.shape[0] - 1
    n_clusters, n_features = centers.shape
    ct, half, h_max = _csr_setup(centers)
    rel = _rel_error(n_features)
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    for b in prange(n_blocks):
        dots = np.empty(n_clusters)
        dist = np.empty(n_clusters)
        for i in range(b * BLOCK_SIZE, min((b + 1) * BLOCK_SIZE, n_samples)):
            best, d2 = _csr_nearest(data, indices, indptr[i], indptr[i + 1], centers, ct, half,
                                    h_max, rel, dots, dist)
            labels[i] = best
            min_sq_dist[i] = d2


@kernel
def lloyd_step_csr(data, indices, indptr, sample_weight, centers, labels, sums, weight_sums,
                   n_threads):
    """``lloyd_step`` of the dense form: the same labels; the sums added in row order.
    Returns the number of labels changed.

    Two passes: the assignment, parallel over blocks of rows; then the sums, parallel
    over the clusters, each cluster's rows added in row order into its own row of
    ``sums``.  No slots: the dense kernel's per-slot K x D partial sums would cost more
    than the sparse work itself at large D (6 slots of 10 MB at K = 64, D = 20,000)."""
    n_samples = indptr.shape[0] - 1
    n_clusters, n_features = centers.shape
    ct, half, h_max = _csr_setup(centers)
    rel = _rel_error(n_features)
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    changed = np.zeros(n_blocks, dtype=np.int64)
    for b in prange(n_blocks):
        dots = np.empty(n_clusters)
        dist = np.empty(n_clusters)
        n_changed = 0
        for i in range(b * BLOCK_SIZE, min((b + 1) * BLOCK_SIZE, n_samples)):
            best, _ = _csr_nearest(data, indices, indptr[i], indptr[i + 1], centers, ct, half,
                                   h_max, rel, dots, dist)
            n_changed += labels[i] != best
            labels[i] = best
        changed[b] = n_changed
    for k in prange(n_clusters):
        row = sums[k]
        row[:] = 0.0
        total = 0.0
        for i in range(n_samples):
            if labels[i] == k:
                w = sample_weight[i]
                total += w
                for p in range(indptr[i], indptr[i + 1]):
                    row[indices[p]] += w * data[p]
        weight_sums[k] = total
    return changed.sum()


@helper
def _csr_sq_dist(data, indices, lo, hi, x_sq, c, c_sq):
    """``||x||^2 - 2 x.c + ||c||^2`` in float64, clamped at 0."""
    dot = 0.0
    for p in range(lo, hi):
        dot += np.float64(data[p]) * np.float64(c[indices[p]])
    return max(x_sq - 2.0 * dot + c_sq, 0.0)


@helper
def _sq_norms_f64(centers):
    out = np.zeros(centers.shape[0])
    for k in range(centers.shape[0]):
        for j in range(centers.shape[1]):
            v = np.float64(centers[k, j])
            out[k] += v * v
    return out


@kernel
def inertia_csr(data, indices, indptr, sample_weight, centers, labels, n_threads):
    """sum_i w_i ||x_i - centers[labels_i]||^2 over CSR rows, in float64."""
    n_samples = indptr.shape[0] - 1
    c_sq = _sq_norms_f64(centers)
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    n_slots = _n_slots(n_blocks, 8)
    partial = np.zeros(n_slots, dtype=np.float64)
    for slot in prange(n_slots):
        start, stop = _slot_samples(slot, n_slots, n_blocks, n_samples)
        acc = 0.0
        for i in range(start, stop):
            lo, hi = indptr[i], indptr[i + 1]
            k = labels[i]
            acc += sample_weight[i] * _csr_sq_dist(data, indices, lo, hi,
                                                   _csr_row_sq_norm(data, lo, hi), centers[k],
                                                   c_sq[k])
        partial[slot] = acc
    total = 0.0
    for slot in range(n_slots):
        total += partial[slot]
    return total


@kernel
def kmeanspp_trial_potentials_csr(data, indices, indptr, sample_weight, candidates,
                                  closest_sq_dist, potentials, n_threads):
    """``kmeanspp_trial_potentials`` over CSR rows."""
    n_samples = indptr.shape[0] - 1
    n_trials = candidates.shape[0]
    c_sq = _sq_norms_f64(candidates)
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    n_slots = _n_slots(n_blocks, 8 * n_trials)
    partial = np.zeros((n_slots, n_trials), dtype=np.float64)
    for slot in prange(n_slots):
        start, stop = _slot_samples(slot, n_slots, n_blocks, n_samples)
        for i in range(start, stop):
            lo, hi = indptr[i], indptr[i + 1]
            x_sq = _csr_row_sq_norm(data, lo, hi)
            w = sample_weight[i]
            closest = closest_sq_dist[i]
            for t in range(n_trials):
                d2 = _csr_sq_dist(data, indices, lo, hi, x_sq, candidates[t], c_sq[t])
                partial[slot, t] += w * min(closest, d2)
    _sum_slots_into(partial, potentials)


@kernel
def kmeanspp_update_closest_csr(data, indices, indptr, center, closest_sq_dist, n_threads):
    """closest_sq_dist = min(closest_sq_dist, ||x - center||^2) over CSR rows, in place."""
    n_samples = indptr.shape[0] - 1
    c_sq = 0.0
    for j in range(center.shape[0]):
        v = np.float64(center[j])
        c_sq += v * v
    for i in prange(n_samples):
        lo, hi = indptr[i], indptr[i + 1]
        d2 = _csr_sq_dist(data, indices, lo, hi, _csr_row_sq_norm(data, lo, hi), center, c_sq)
        if d2 < closest_sq_dist[i]:
            closest_sq_dist[i] = d2
