"""Log-space helpers shared by the numba mixture kernels: logsumexp of a row and the
responsibilities of a block (one exp per entry)."""

import numpy as np

from ._jit import helper

#: Terms exp(d) with d below this (< 1e-304) are written as exact zeros: next to the row
#: maximum's exp(0) = 1 they cannot change a sum, and they would otherwise reach the
#: statistics as subnormal numbers, whose arithmetic is ~100x slower.  Skipping the
#: call also saves most exp calls when components are well separated.
EXP_UNDERFLOW = -700.0


@helper
def _exp_or_zero(d):
    return np.exp(d) if d > EXP_UNDERFLOW else 0.0


@helper
def _logsumexp_row(lp, i, n_components):
    """log sum_k exp(lp[i, k]), subtracting the maximum; -inf for an all -inf row."""
    top = -np.inf
    for k in range(n_components):
        if lp[i, k] > top:
            top = lp[i, k]
    if top == -np.inf:
        return -np.inf
    acc = 0.0
    for k in range(n_components):
        acc += _exp_or_zero(lp[i, k] - top)
    return top + np.log(acc)


@helper
def _argmax_row(lp, i, n_components):
    """The most probable component of row i (lowest index on ties)."""
    best = 0
    for k in range(1, n_components):
        if lp[i, k] > lp[i, best]:
            best = k
    return best


@helper
def _log_norm_rows(lp, m, log_norm, labels, start):
    """log_norm / labels of rows [0, m) of lp, written at [start, start + m)."""
    n_components = lp.shape[1]
    for i in range(m):
        log_norm[start + i] = _logsumexp_row(lp, i, n_components)
        labels[start + i] = _argmax_row(lp, i, n_components)


@helper
def _weighted_resp_row(lp, i, n_components, w):
    """Turn row i of log joint densities into w * responsibilities; return the row's
    logsumexp.  One exp per entry: r_ik = e_ik / sum_k e_ik with e_ik = exp(lp_ik - max).
    An all -inf row (zero density) gets zero responsibilities and returns -inf."""
    top = -np.inf
    for k in range(n_components):
        if lp[i, k] > top:
            top = lp[i, k]
    if top == -np.inf:
        for k in range(n_components):
            lp[i, k] = 0.0
        return -np.inf
    acc = 0.0
    for k in range(n_components):
        e = _exp_or_zero(lp[i, k] - top)
        lp[i, k] = e
        acc += e
    scale = w / acc
    for k in range(n_components):
        lp[i, k] *= scale
    return top + np.log(acc)


@helper
def _block_responsibilities(lp, m, sample_weight, b_start, nk_row):
    """E-step of a block: rows [0, m) of lp become w_i * r_ik, their column sums are
    added to nk_row, and the block's sum_i w_i log p(x_i) is returned (-inf if a row of
    positive weight has zero density; such a row gets no responsibility)."""
    n_components = lp.shape[1]
    ll = 0.0
    for i in range(m):
        w = sample_weight[b_start + i]
        lse = _weighted_resp_row(lp, i, n_components, w)
        if lse == -np.inf:
            if w > 0:
                ll = -np.inf
            continue
        ll += w * lse
    for k in range(n_components):
        total = 0.0
        for i in range(m):
            total += lp[i, k]
        nk_row[k] += total
    return ll
