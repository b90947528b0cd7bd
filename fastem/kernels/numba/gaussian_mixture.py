"""Gaussian mixture kernels, numba backend. Same names and signatures as
``reference/gaussian_mixture.py`` (see its docstring for the contract).

One generic jitted kernel per job (log densities, log normaliser, fused statistics)
serves all four covariance types, on the canonical 3-D shapes of ``_covariance.py``,
so that every branch type-checks with the same array types.  Determinism follows
``numba/kmeans.py``: fixed blocks, slots fixed by the problem size, slots reduced
in order.  Mahalanobis distances use one GEMM per block and component for full
covariance (``(x - mu_k) U_k``) and one per block for tied (``x U - mu_k U``).  Diag
and spherical use the expanded form of ``_covariance.py`` (one GEMM per block for the
log densities, one for the statistics) while its precision bound holds, and direct
float64 sums otherwise.
"""

import numpy as np
from numba import prange

from .._covariance import DIAG, FULL, SPHERICAL, TIED, export_kernels
from ._jit import helper, kernel
from ._logspace import _block_responsibilities, _log_norm_rows
from ._slots import BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES, _n_slots, _slot_samples  # noqa: F401

@helper
def _log_prob_block(kind, X, start, stop, means, pc, mu_u, log_consts, lp, ybuf, zbuf):
    """lp[i, k] = log_consts[k] - maha_k(x_{start+i}) / 2 for the block [start, stop)."""
    m = stop - start
    n_components, n_features = means.shape
    if kind == FULL:
        for k in range(n_components):
            u_k = np.ascontiguousarray(pc[k])  # D x D; a typed-contiguous operand for BLAS
            for i in range(m):
                for j in range(n_features):
                    ybuf[i, j] = X[start + i, j] - means[k, j]
            np.dot(ybuf[:m], u_k, zbuf[:m])
            for i in range(m):
                acc = 0.0
                for j in range(n_features):
                    acc += np.float64(zbuf[i, j]) * np.float64(zbuf[i, j])
                lp[i, k] = log_consts[k] - 0.5 * acc
    elif kind == TIED:
        # (x - mu_k) U = x U - mu_k U: one GEMM per block, mu_u = means @ U precomputed
        np.dot(X[start:stop], np.ascontiguousarray(pc[0]), zbuf[:m])
        for i in range(m):
            for k in range(n_components):
                acc = 0.0
                for j in range(n_features):
                    diff = np.float64(zbuf[i, j]) - np.float64(mu_u[k, j])
                    acc += diff * diff
                lp[i, k] = log_consts[k] - 0.5 * acc
    elif kind == DIAG:
        for i in range(m):
            for k in range(n_components):
                acc = 0.0
                for j in range(n_features):
                    diff = (np.float64(X[start + i, j]) - np.float64(means[k, j])) * pc[k, 0, j]
                    acc += diff * diff
                lp[i, k] = log_consts[k] - 0.5 * acc
    else:  # SPHERICAL
        for i in range(m):
            for k in range(n_components):
                acc = 0.0
                for j in range(n_features):
                    diff = np.float64(X[start + i, j]) - np.float64(means[k, j])
                    acc += diff * diff
                p = np.float64(pc[k, 0, 0])
                lp[i, k] = log_consts[k] - 0.5 * acc * p * p


@helper
def _expanded_log_prob_block(X, start, stop, c, B, offset, z, lp):
    """lp[i] = [y_i, y_i^2] @ B + offset for the block; leaves [y, y^2] in z (float64)."""
    m = stop - start
    n_features = X.shape[1]
    for i in range(m):
        for j in range(n_features):
            y = np.float64(X[start + i, j]) - c[j]
            z[i, j] = y
            z[i, n_features + j] = y * y
    np.dot(z[:m], B, lp[:m])
    for i in range(m):
        for k in range(offset.shape[0]):
            lp[i, k] += offset[k]


@helper
def _any_log_prob_block(kind, X, start, stop, means, pc, mu_u, log_consts, expanded, c, B,
                        offset, lp, ybuf, zbuf, z64):
    if expanded:
        _expanded_log_prob_block(X, start, stop, c, B, offset, z64, lp)
    else:
        _log_prob_block(kind, X, start, stop, means, pc, mu_u, log_consts, lp, ybuf, zbuf)


@helper
def _tied_mu_u(kind, means, pc):
    """means @ U for tied covariance (a 1-row dummy otherwise)."""
    if kind == TIED:
        return np.dot(means, np.ascontiguousarray(pc[0]))
    return np.zeros((1, means.shape[1]), dtype=means.dtype)


@kernel
def _estimate_log_prob(kind, X, means, pc, log_consts, expanded, c, B, offset, out, n_threads):
    n_samples, n_features = X.shape
    mu_u = _tied_mu_u(kind, means, pc)
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    for b in prange(n_blocks):
        start = b * BLOCK_SIZE
        stop = min(start + BLOCK_SIZE, n_samples)
        ybuf = np.empty((BLOCK_SIZE, n_features), dtype=X.dtype)
        zbuf = np.empty((BLOCK_SIZE, n_features), dtype=X.dtype)
        z64 = np.empty((BLOCK_SIZE, 2 * n_features))
        _any_log_prob_block(kind, X, start, stop, means, pc, mu_u, log_consts, expanded, c, B,
                            offset, out[start:stop], ybuf, zbuf, z64)


@kernel
def _estimate_log_norm(kind, X, means, pc, log_consts, expanded, c, B, offset, log_norm, labels,
                       n_threads):
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    mu_u = _tied_mu_u(kind, means, pc)
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    for b in prange(n_blocks):
        start = b * BLOCK_SIZE
        stop = min(start + BLOCK_SIZE, n_samples)
        lp = np.empty((BLOCK_SIZE, n_components))
        ybuf = np.empty((BLOCK_SIZE, n_features), dtype=X.dtype)
        zbuf = np.empty((BLOCK_SIZE, n_features), dtype=X.dtype)
        z64 = np.empty((BLOCK_SIZE, 2 * n_features))
        _any_log_prob_block(kind, X, start, stop, means, pc, mu_u, log_consts, expanded, c, B,
                            offset, lp, ybuf, zbuf, z64)
        _log_norm_rows(lp, stop - start, log_norm, labels, start)


@helper
def _direct_block_stats(kind, X, b_start, m, shift, wr, slot, part_x, part_xx, y64, yw64, ax,
                        axx):
    """Add the block's shifted statistics (weights wr = w * r, (m, K)) to the slot."""
    n_components, n_features = shift.shape
    for k in range(n_components):
        total = 0.0
        for i in range(m):
            total += wr[i, k]
        if total == 0.0:
            continue
        if kind == FULL or kind == TIED:
            for i in range(m):
                for j in range(n_features):
                    y = np.float64(X[b_start + i, j]) - np.float64(shift[k, j])
                    y64[i, j] = y
                    yw64[i, j] = wr[i, k] * y
                    part_x[slot, k, j] += yw64[i, j]
            kk = k if kind == FULL else 0
            part_xx[slot, kk] += np.dot(yw64[:m].T, y64[:m])
            continue
        # diag / spherical: one fused pass, sums kept in local rows (no aliasing)
        for j in range(n_features):
            ax[j] = 0.0
            axx[j] = 0.0
        for i in range(m):
            r = wr[i, k]
            for j in range(n_features):
                y = np.float64(X[b_start + i, j]) - np.float64(shift[k, j])
                ax[j] += r * y
                axx[j] += r * y * y
        for j in range(n_features):
            part_x[slot, k, j] += ax[j]
        if kind == DIAG:
            for j in range(n_features):
                part_xx[slot, k, 0, j] += axx[j]
        else:
            acc = 0.0
            for j in range(n_features):
                acc += axx[j]
            part_xx[slot, k, 0, 0] += acc


@helper
def _unexpand_stats(kind, shift, c, nk, sum_z, sum_x, sum_xx):
    """Statistics around c (sum_z = [sum r y, sum r y^2]) to statistics around the shift:
    with d = s_k - c, sum r (y - d) = S1 - nk d and sum r (y - d)^2 = S2 - 2 d S1 + nk d^2
    (clamped at 0: it is a sum of squares)."""
    n_components, n_features = shift.shape
    for k in range(n_components):
        acc = 0.0
        for j in range(n_features):
            d = np.float64(shift[k, j]) - c[j]
            s1 = sum_z[k, j]
            s2 = sum_z[k, n_features + j]
            sum_x[k, j] = s1 - nk[k] * d
            v = max(s2 - 2.0 * d * s1 + nk[k] * d * d, 0.0)
            if kind == DIAG:
                sum_xx[k, 0, j] = v
            acc += v
        if kind == SPHERICAL:
            sum_xx[k, 0, 0] = acc


@kernel
def _accumulate_stats(kind, X, sample_weight, means, pc, log_consts, shift, expanded, c, B, offset,
                      nk, sum_x, sum_xx, n_threads):
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    xx_k, xx_r, xx_c = sum_xx.shape
    mu_u = _tied_mu_u(kind, means, pc)
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    z_size = n_components * 2 * n_features if expanded else 1
    n_slots = _n_slots(n_blocks, 8 * (1 + n_components * (1 + n_features) + sum_xx.size + z_size))
    part_ll = np.zeros(n_slots)
    part_nk = np.zeros((n_slots, n_components))
    if expanded:  # statistics around c as one GEMM per block: W^T [y, y^2]
        part_z = np.zeros((n_slots, n_components, 2 * n_features))
        part_x = np.zeros((1, 1, 1))
        part_xx = np.zeros((1, 1, 1, 1))
    else:
        part_z = np.zeros((1, 1, 1))
        part_x = np.zeros((n_slots, n_components, n_features))
        part_xx = np.zeros((n_slots, xx_k, xx_r, xx_c))
    for slot in prange(n_slots):
        start, stop = _slot_samples(slot, n_slots, n_blocks, n_samples)
        lp = np.empty((BLOCK_SIZE, n_components))
        ybuf = np.empty((BLOCK_SIZE, n_features), dtype=X.dtype)
        zbuf = np.empty((BLOCK_SIZE, n_features), dtype=X.dtype)
        z64 = np.empty((BLOCK_SIZE, 2 * n_features))
        zacc = np.empty((n_components, 2 * n_features))
        y64 = np.empty((BLOCK_SIZE, n_features))
        yw64 = np.empty((BLOCK_SIZE, n_features))
        ax = np.empty(n_features)
        axx = np.empty(n_features)
        for b_start in range(start, stop, BLOCK_SIZE):
            b_stop = min(b_start + BLOCK_SIZE, stop)
            m = b_stop - b_start
            _any_log_prob_block(kind, X, b_start, b_stop, means, pc, mu_u, log_consts, expanded,
                                c, B, offset, lp, ybuf, zbuf, z64)
            # E-step: lp becomes w_i * r_ik (0 for rows with zero density)
            part_ll[slot] += _block_responsibilities(lp[:m], m, sample_weight, b_start,
                                                     part_nk[slot])
            if expanded:
                np.dot(lp[:m].T, z64[:m], zacc)
                part_z[slot] += zacc
            else:
                _direct_block_stats(kind, X, b_start, m, shift, lp, slot, part_x, part_xx, y64,
                                    yw64, ax, axx)
    nk[:] = 0.0
    sum_x[:] = 0.0
    sum_xx[:] = 0.0
    ll = 0.0
    for slot in range(n_slots):  # fixed order: bit-identical for any thread count
        ll += part_ll[slot]
        nk += part_nk[slot]
    if expanded:
        sum_z = np.zeros((n_components, 2 * n_features))
        for slot in range(n_slots):
            sum_z += part_z[slot]
        _unexpand_stats(kind, shift, c, nk, sum_z, sum_x, sum_xx)
    else:
        for slot in range(n_slots):
            sum_x += part_x[slot]
            sum_xx += part_xx[slot]
    return ll


export_kernels(globals(), _estimate_log_prob, _estimate_log_norm, _accumulate_stats,
               canonical_shapes=True)
