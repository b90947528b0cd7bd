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

By concern: this module holds the assignment kernels (``assign_labels``, ``lloyd_step``,
``inertia``) and is the family's kernel module; the distances they share are in
``_distances.py``, the k-means++ kernels in ``_seeding.py``, the bounded step in
``_bounded.py``, the kernels on CSR rows in ``_sparse.py`` and the blocks and slots in
``_slots.py``.
"""

import numpy as np
from numba import prange

from ._jit import kernel
from ._slots import (BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES, _center_sum_slots, _n_slots,
                     _reduce_slots, _slot_samples)
from ._distances import (
    _center_setup,
    _dots_size,
    _gemm_rows,
    _direct,
    _direct_block,
    _block_dots,
    _block_argmin,
    _sq_dist_f64,
    _exact_row,
    _rel_error,
    _gemm_error,
    _gemm_settles,
    _row_sq_norm,
    _unit_roundoff,
)
from ._seeding import kmeanspp_trial_potentials, kmeanspp_update_closest
from ._bounded import bounded_step
from ._sparse import (assign_labels_csr, inertia_csr, kmeanspp_trial_potentials_csr,
                      kmeanspp_update_closest_csr, lloyd_step_csr)

__all__ = ["assign_labels", "lloyd_step", "inertia", "kmeanspp_trial_potentials",
           "kmeanspp_update_closest", "bounded_step", "assign_labels_csr", "lloyd_step_csr",
           "inertia_csr", "kmeanspp_trial_potentials_csr", "kmeanspp_update_closest_csr",
           "BLOCK_SIZE", "MAX_SLOTS", "SLOT_BUDGET_BYTES"]


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
    centers_t, centers_t64, half_sq_norms, columns, h_max = _center_setup(centers)
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


@kernel
def lloyd_step(X, sample_weight, centers, labels, sums, weight_sums, n_threads):
    """Assignment fused with the weighted per-cluster sums (see the reference); the
    assignment is found as in ``assign_labels``.  Returns the number of labels changed."""
    n_samples, n_features = X.shape
    n_clusters = centers.shape[0]
    direct = _direct(n_features, n_clusters)
    centers_t, centers_t64, half_sq_norms, columns, h_max = _center_setup(centers)
    unit = _unit_roundoff(X)
    rel = _rel_error(n_features)
    n_blocks, n_slots, part_sums, part_weights, part_changed = _center_sum_slots(
        n_samples, n_clusters, n_features)
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
