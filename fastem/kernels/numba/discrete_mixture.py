"""Mixtures of discrete distributions, numba backend. Same names and signatures as
``reference/discrete_mixture.py`` (see its docstring for the contract).

Dense data: per block of samples, the encoding z = [x0, o] (float64; o only when
entries may be missing) times the coefficient matrix [coef; obs_coef] is one GEMM, and
so are the statistics of the block, z^T (w r).  CSR data: each stored entry adds
``v * coef[j, :]`` to its row's log densities, and ``v * w r`` to row j of the slot's
statistics (rows of the (D, K) layout are contiguous in both).  Determinism follows
``numba/kmeans.py``: fixed blocks, slots fixed by the problem size, slots reduced in
order.
"""

import numpy as np
from numba import prange

from ._jit import helper, kernel
from ._logspace import _block_responsibilities, _log_norm_rows
from ._slots import BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES, _n_slots, _slot_samples  # noqa: F401


@helper
def _coefficients(coef, obs_coef, missing):
    """[coef; obs_coef] (2D x K) when entries may be missing, else coef (D x K)."""
    if missing:
        return np.concatenate((coef, obs_coef))
    return np.ascontiguousarray(coef)


@helper
def _dense_log_prob_block(X, start, stop, W, offset, missing, z, lp):
    """lp[:m] = z @ W + offset for the block, z = [x0, o] (or x) left in z[:m]."""
    m = stop - start
    n_features = X.shape[1]
    for i in range(m):
        for j in range(n_features):
            x = np.float64(X[start + i, j])
            if missing:
                observed = x == x  # False only for NaN (no nnan fast-math flag)
                z[i, j] = x if observed else 0.0
                z[i, n_features + j] = 1.0 if observed else 0.0
            else:
                z[i, j] = x
    np.dot(z[:m], W, lp[:m])
    for i in range(m):
        for k in range(offset.shape[0]):
            lp[i, k] += offset[k]


@helper
def _csr_log_prob_block(data, indices, indptr, start, stop, coef, offset, lp):
    n_components = coef.shape[1]
    for i in range(stop - start):
        for k in range(n_components):
            lp[i, k] = offset[k]
        for p in range(indptr[start + i], indptr[start + i + 1]):
            v = np.float64(data[p])
            j = indices[p]
            for k in range(n_components):
                lp[i, k] += v * coef[j, k]


@helper
def _csr_slots(n_slots, nnz, partial_size):
    """Fewer slots for sparse statistics when each would hold fewer stored entries than
    its (D x K) partial sums: zeroing and adding the partials would then cost more than
    the work they parallelise.  A function of the problem size only."""
    return max(1, min(n_slots, nnz // max(1, partial_size)))


@kernel
def estimate_log_prob_dense(X, coef, obs_coef, offset, missing, out, n_threads):
    n_samples = X.shape[0]
    W = _coefficients(coef, obs_coef, missing)
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    for b in prange(n_blocks):
        start = b * BLOCK_SIZE
        stop = min(start + BLOCK_SIZE, n_samples)
        z = np.empty((BLOCK_SIZE, W.shape[0]))
        _dense_log_prob_block(X, start, stop, W, offset, missing, z, out[start:stop])


@kernel
def estimate_log_norm_dense(X, coef, obs_coef, offset, missing, log_norm, labels, n_threads):
    n_samples = X.shape[0]
    n_components = offset.shape[0]
    W = _coefficients(coef, obs_coef, missing)
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    for b in prange(n_blocks):
        start = b * BLOCK_SIZE
        stop = min(start + BLOCK_SIZE, n_samples)
        z = np.empty((BLOCK_SIZE, W.shape[0]))
        lp = np.empty((BLOCK_SIZE, n_components))
        _dense_log_prob_block(X, start, stop, W, offset, missing, z, lp)
        _log_norm_rows(lp, stop - start, log_norm, labels, start)


@kernel
def accumulate_stats_dense(X, sample_weight, coef, obs_coef, offset, missing, nk, sum_x,
                            sum_obs, n_threads):
    n_samples, n_features = X.shape
    n_components = offset.shape[0]
    W = _coefficients(coef, obs_coef, missing)
    width = W.shape[0]
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    n_slots = _n_slots(n_blocks, 8 * (1 + n_components * (1 + width)))
    part_ll = np.zeros(n_slots)
    part_nk = np.zeros((n_slots, n_components))
    part_z = np.zeros((n_slots, width, n_components))
    for slot in prange(n_slots):
        start, stop = _slot_samples(slot, n_slots, n_blocks, n_samples)
        z = np.empty((BLOCK_SIZE, width))
        lp = np.empty((BLOCK_SIZE, n_components))
        acc = np.empty((width, n_components))
        for b_start in range(start, stop, BLOCK_SIZE):
            b_stop = min(b_start + BLOCK_SIZE, stop)
            m = b_stop - b_start
            _dense_log_prob_block(X, b_start, b_stop, W, offset, missing, z, lp)
            part_ll[slot] += _block_responsibilities(lp[:m], m, sample_weight, b_start,
                                                     part_nk[slot])
            np.dot(z[:m].T, lp[:m], acc)  # sum_i z_i (w r)_i over the block
            part_z[slot] += acc
    nk[:] = 0.0
    total = np.zeros((width, n_components))
    ll = 0.0
    for slot in range(n_slots):  # fixed order: bit-identical for any thread count
        ll += part_ll[slot]
        nk += part_nk[slot]
        total += part_z[slot]
    sum_x[:] = total[:n_features]
    for j in range(n_features):
        for k in range(n_components):
            sum_obs[j, k] = total[n_features + j, k] if missing else nk[k]
    return ll


@kernel
def estimate_log_prob_csr(data, indices, indptr, coef, offset, out, n_threads):
    n_samples = indptr.shape[0] - 1
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    for b in prange(n_blocks):
        start = b * BLOCK_SIZE
        stop = min(start + BLOCK_SIZE, n_samples)
        _csr_log_prob_block(data, indices, indptr, start, stop, coef, offset, out[start:stop])


@kernel
def estimate_log_norm_csr(data, indices, indptr, coef, offset, log_norm, labels, n_threads):
    n_samples = indptr.shape[0] - 1
    n_components = offset.shape[0]
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    for b in prange(n_blocks):
        start = b * BLOCK_SIZE
        stop = min(start + BLOCK_SIZE, n_samples)
        lp = np.empty((BLOCK_SIZE, n_components))
        _csr_log_prob_block(data, indices, indptr, start, stop, coef, offset, lp)
        _log_norm_rows(lp, stop - start, log_norm, labels, start)


@kernel
def accumulate_stats_csr(data, indices, indptr, sample_weight, coef, offset, nk, sum_x,
                          n_threads):
    n_samples = indptr.shape[0] - 1
    n_features, n_components = coef.shape
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    n_slots = _csr_slots(_n_slots(n_blocks, 8 * (1 + n_components * (1 + n_features))),
                         indices.shape[0], n_features * n_components)
    part_ll = np.zeros(n_slots)
    part_nk = np.zeros((n_slots, n_components))
    part_x = np.zeros((n_slots, n_features, n_components))
    for slot in prange(n_slots):
        start, stop = _slot_samples(slot, n_slots, n_blocks, n_samples)
        lp = np.empty((BLOCK_SIZE, n_components))
        for b_start in range(start, stop, BLOCK_SIZE):
            b_stop = min(b_start + BLOCK_SIZE, stop)
            m = b_stop - b_start
            _csr_log_prob_block(data, indices, indptr, b_start, b_stop, coef, offset, lp)
            part_ll[slot] += _block_responsibilities(lp[:m], m, sample_weight, b_start,
                                                     part_nk[slot])
            for i in range(m):
                for p in range(indptr[b_start + i], indptr[b_start + i + 1]):
                    v = np.float64(data[p])
                    j = indices[p]
                    for k in range(n_components):
                        part_x[slot, j, k] += v * lp[i, k]
    nk[:] = 0.0
    sum_x[:] = 0.0
    ll = 0.0
    for slot in range(n_slots):  # fixed order: bit-identical for any thread count
        ll += part_ll[slot]
        nk += part_nk[slot]
        sum_x += part_x[slot]
    return ll

