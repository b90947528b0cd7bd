"""Hidden Markov model kernels, numba backend.  Same names and signatures as
``reference/hmm.py`` (its docstring gives the recursions).

The sequences of a batch are independent: ``prange`` runs them in parallel, each one's
recursions serially in one thread, so results do not depend on the thread count.  The
scaled form shifts each step's emissions by their maximum before ``exp`` and falls back
to the log-space recursions for a sequence whose scale factor underflows (or that has a
step no state can emit).
"""

import numpy as np
from numba import prange

from ._jit import helper, kernel
from ._slots import BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES  # noqa: F401 (the contract's)


@helper
def _logsumexp_col(values):
    top = values.max()
    if not np.isfinite(top):
        return top
    acc = 0.0
    for v in values:
        acc += np.exp(v - top)
    return np.log(acc) + top


@helper
def _forward_backward_log(log_startprob, log_transmat, le, post, xi):
    """One sequence in log space: its log-likelihood; ``post`` (T, K) and ``xi`` (K, K)
    written."""
    n_steps, k = le.shape
    la = np.empty((n_steps, k))
    lb = np.zeros((n_steps, k))
    work = np.empty(k)
    for j in range(k):
        la[0, j] = log_startprob[j] + le[0, j]
    for t in range(1, n_steps):
        for j in range(k):
            for i in range(k):
                work[i] = la[t - 1, i] + log_transmat[i, j]
            la[t, j] = le[t, j] + _logsumexp_col(work)
    for t in range(n_steps - 2, -1, -1):
        for i in range(k):
            for j in range(k):
                work[j] = log_transmat[i, j] + le[t + 1, j] + lb[t + 1, j]
            lb[t, i] = _logsumexp_col(work)
    log_prob = _logsumexp_col(la[n_steps - 1])
    xi[:, :] = 0.0
    if log_prob == -np.inf:
        post[:, :] = np.nan
        xi[:, :] = np.nan
        return log_prob
    for t in range(n_steps):
        for j in range(k):
            post[t, j] = np.exp(la[t, j] + lb[t, j] - log_prob)
    for t in range(n_steps - 1):
        for i in range(k):
            for j in range(k):
                xi[i, j] += np.exp(la[t, i] + log_transmat[i, j] + le[t + 1, j]
                                   + lb[t + 1, j] - log_prob)
    return log_prob


@helper
def _forward_backward_scaled(startprob, transmat, log_startprob, log_transmat, le, post, xi):
    """One sequence by scaled recursions, or in log space where they cannot represent it."""
    n_steps, k = le.shape
    b = np.empty((n_steps, k))
    shift_sum = 0.0
    for t in range(n_steps):
        m = le[t].max()
        if not np.isfinite(m):
            return _forward_backward_log(log_startprob, log_transmat, le, post, xi)
        shift_sum += m
        for j in range(k):
            b[t, j] = np.exp(le[t, j] - m)
    alpha = np.empty((n_steps, k))
    scale = np.empty(n_steps)
    log_scale = 0.0
    for t in range(n_steps):
        total = 0.0
        for j in range(k):
            if t == 0:
                v = startprob[j]
            else:
                v = 0.0
                for i in range(k):
                    v += alpha[t - 1, i] * transmat[i, j]
            alpha[t, j] = v * b[t, j]
            total += alpha[t, j]
        if not total > 0.0:
            return _forward_backward_log(log_startprob, log_transmat, le, post, xi)
        scale[t] = total
        log_scale += np.log(total)
        for j in range(k):
            alpha[t, j] /= total
    beta = np.empty((n_steps, k))
    beta[n_steps - 1, :] = 1.0
    nxt = np.empty(k)
    for t in range(n_steps - 2, -1, -1):
        for j in range(k):
            nxt[j] = b[t + 1, j] * beta[t + 1, j]
        for i in range(k):
            v = 0.0
            for j in range(k):
                v += transmat[i, j] * nxt[j]
            beta[t, i] = v / scale[t + 1]
    for t in range(n_steps):
        for j in range(k):
            post[t, j] = alpha[t, j] * beta[t, j]
    xi[:, :] = 0.0
    for t in range(n_steps - 1):
        for j in range(k):
            nxt[j] = b[t + 1, j] * beta[t + 1, j] / scale[t + 1]
        for i in range(k):
            for j in range(k):
                xi[i, j] += alpha[t, i] * transmat[i, j] * nxt[j]
    return log_scale + shift_sum


@kernel
def forward_backward(log_startprob, log_transmat, log_emission, offsets, scaled, log_prob,
                     posteriors, xi_sums, n_threads):
    """Forward-backward over every sequence of the batch (see the reference)."""
    startprob, transmat = np.exp(log_startprob), np.exp(log_transmat)
    for s in prange(offsets.shape[0] - 1):
        a, b = offsets[s], offsets[s + 1]
        if b == a:
            log_prob[s] = 0.0
            xi_sums[s, :, :] = 0.0
            continue
        le, post = log_emission[a:b], posteriors[a:b]
        if scaled:
            log_prob[s] = _forward_backward_scaled(startprob, transmat, log_startprob,
                                                   log_transmat, le, post, xi_sums[s])
        else:
            log_prob[s] = _forward_backward_log(log_startprob, log_transmat, le, post,
                                                xi_sums[s])


@kernel
def decode_viterbi(log_startprob, log_transmat, log_emission, offsets, log_prob, path,
                   n_threads):
    """Viterbi over every sequence of the batch (ties to the lowest state index)."""
    k = log_startprob.shape[0]
    for s in prange(offsets.shape[0] - 1):
        a, b = offsets[s], offsets[s + 1]
        if b == a:
            log_prob[s] = 0.0
            continue
        n_steps = b - a
        back = np.zeros((n_steps, k), dtype=np.int32)
        delta = np.empty(k)
        new = np.empty(k)
        for j in range(k):
            delta[j] = log_startprob[j] + log_emission[a, j]
        for t in range(1, n_steps):
            for j in range(k):
                best = 0
                best_val = delta[0] + log_transmat[0, j]
                for i in range(1, k):
                    v = delta[i] + log_transmat[i, j]
                    if v > best_val:
                        best, best_val = i, v
                back[t, j] = best
                new[j] = best_val + log_emission[a + t, j]
            delta[:] = new
        last = 0
        for j in range(1, k):
            if delta[j] > delta[last]:
                last = j
        log_prob[s] = delta[last]
        path[b - 1] = last
        for t in range(n_steps - 1, 0, -1):
            path[a + t - 1] = back[t, path[a + t]]
