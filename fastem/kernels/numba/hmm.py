"""Hidden Markov model kernels, numba backend.  Same names and signatures as
``reference/hmm.py`` (its docstring gives the recursions).

* Log space (``_forward_backward_log``): one sequence a thread, each step shifted by its
  maximum so that it costs K exps and K logs (not K^2), the backward pass fused with the
  posteriors and the transition counts.
* Scaled (``forward_backward``): phases whose split of the work depends on the data
  only, so results do not depend on the thread count: each row's emissions shifted by
  their maximum and exponentiated; the forward and the backward pass of each sequence
  as two independent tasks (the backward pass has its own normalizers), so that one
  long sequence keeps two threads busy; posteriors and transition counts from both,
  over fixed blocks of ``TIME_BLOCK`` steps; and log space for any sequence the scaled
  form cannot represent (a scale factor below the smallest normal number, a step no
  state can emit).  No T x K x K array is formed: the transition counts are
  ``A * sum_t outer(alpha_t, b_{t+1} beta_{t+1}) / norm_t``.
* ``weighted_moments``: the Gaussian HMM's M-step sums over fixed blocks and slots of
  rows (``_slots.py``).
"""

import numpy as np
from numba import prange

from .._scratch import scratch_of
from ._jit import helper, kernel
from ._slots import BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES, _n_slots, _slot_samples  # noqa: F401


@helper
def _logsumexp_col(values):
    top = values.max()
    if not np.isfinite(top):
        return top
    acc = 0.0
    for v in values:
        acc += np.exp(v - top)
    return np.log(acc) + top


#: The scaled form hands a sequence to log space where a scale factor falls below
#: this (subnormal numbers have lost digits; the reference's threshold).
_SMALLEST_NORMAL = 2.2250738585072014e-308
#: A shifted sum below this is recomputed by the exact logsumexp: the max-shifted log
#: form multiplies probabilities, which lose digits once they are subnormal (< 2.2e-308).
_TINY_SUM = 1e-280
#: log of the largest factor the log form's xi may apply to a step's products: above it
#: (a state pair far likelier than the transition between them) that step's K^2 terms are
#: taken one exp each, as written in the reference.
_LOG_XI_FACTOR_MAX = 230.0


@helper
def _exact_logsumexp_col(la_prev, log_transmat, j, work):
    """log sum_i exp(la_prev[i] + log_transmat[i, j]), the direct way."""
    for i in range(la_prev.shape[0]):
        work[i] = la_prev[i] + log_transmat[i, j]
    return _logsumexp_col(work)


@helper
def _exact_logsumexp_row(log_transmat, i, v, work):
    """log sum_j exp(log_transmat[i, j] + v[j]), the direct way."""
    for j in range(v.shape[0]):
        work[j] = log_transmat[i, j] + v[j]
    return _logsumexp_col(work)


@helper
def _forward_log(transmat, log_startprob, log_transmat, le, la):
    """The max-shifted log-space forward pass of one sequence (see
    ``_forward_backward_log``): ``la`` (T, K) written; returns log P."""
    n_steps, k = le.shape
    work, acc = np.empty(k), np.empty(k)
    for j in range(k):
        la[0, j] = log_startprob[j] + le[0, j]
    for t in range(1, n_steps):
        c = la[t - 1].max()
        if not np.isfinite(c):  # every state impossible: so is everything after
            la[t:, :] = -np.inf
            break
        acc[:] = 0.0
        for i in range(k):
            e_i = np.exp(la[t - 1, i] - c)
            for j in range(k):
                acc[j] += e_i * transmat[i, j]
        for j in range(k):
            if acc[j] > _TINY_SUM:
                la[t, j] = le[t, j] + c + np.log(acc[j])
            else:
                la[t, j] = le[t, j] + _exact_logsumexp_col(la[t - 1], log_transmat, j, work)
    return _logsumexp_col(la[n_steps - 1])


@helper
def _forward_backward_log(transmat, transmat_t, log_startprob, log_transmat, le, post, xi):
    """One sequence in log space: its log-likelihood; ``post`` (T, K) and ``xi`` (K, K)
    written.

    Each step is shifted by its maximum so that it costs K exps and K logs, not K^2:
    ``log alpha_t(j) = le_t(j) + c + log sum_i exp(log alpha_{t-1}(i) - c) A_ij`` with
    ``c = max_i log alpha_{t-1}(i)`` (an entry whose shifted sum is subnormal is redone
    by the exact logsumexp), the backward pass alike with ``A^T``, and
    ``xi_ij = A_ij sum_t exp(la_t(i) - c_t) exp(v_t(j) - n_t) exp(c_t + n_t - log P)``,
    ``v_t = le_{t+1} + lb_{t+1}``, ``n_t = max v_t``.
    """
    n_steps, k = le.shape
    la = np.empty((n_steps, k))
    work, e, acc, v = np.empty(k), np.empty(k), np.empty(k), np.empty(k)
    log_prob = _forward_log(transmat, log_startprob, log_transmat, le, la)
    xi[:, :] = 0.0
    if log_prob == -np.inf:
        post[:, :] = np.nan
        xi[:, :] = np.nan
        return log_prob
    # backward, fused with the posteriors and xi; lb holds log beta_t, one row at a time
    lb = np.zeros(k)
    direct = np.zeros((k, k))
    for t in range(n_steps - 1, 0, -1):
        for j in range(k):
            post[t, j] = np.exp(la[t, j] + lb[j] - log_prob)
            v[j] = le[t, j] + lb[j]
        n = v.max()
        c = la[t - 1].max()
        if n == -np.inf or c == -np.inf:  # no mass flows through this step
            lb[:] = -np.inf
            continue
        for j in range(k):
            e[j] = np.exp(v[j] - n)
        f = c + n - log_prob
        if f < _LOG_XI_FACTOR_MAX:
            f = np.exp(f)
            for i in range(k):
                a_i = np.exp(la[t - 1, i] - c) * f
                for j in range(k):
                    xi[i, j] += a_i * e[j]
        else:
            for i in range(k):
                for j in range(k):
                    direct[i, j] += np.exp(la[t - 1, i] + log_transmat[i, j] + v[j] - log_prob)
        acc[:] = 0.0
        for j in range(k):
            e_j = e[j]
            for i in range(k):
                acc[i] += transmat_t[j, i] * e_j
        for i in range(k):
            if acc[i] > _TINY_SUM:
                lb[i] = n + np.log(acc[i])
            else:
                lb[i] = _exact_logsumexp_row(log_transmat, i, v, work)
    for j in range(k):
        post[0, j] = np.exp(la[0, j] + lb[j] - log_prob)
    for i in range(k):
        for j in range(k):
            xi[i, j] = xi[i, j] * transmat[i, j] + direct[i, j]
    return log_prob


#: Steps per block of the posterior / transition-count pass: blocks of one sequence run in
#: parallel, each with its own (K, K) partial sum, added in block order (a fixed split, so
#: the sums do not depend on the thread count).
TIME_BLOCK = 2048
#: The normalizer of a step's posteriors below which the scaled form hands the sequence
#: to the log-space recursions (the division would lose digits to subnormals).
_TINY_NORM = 1e-290


@helper
def _forward_scaled(startprob, transmat, b, shift, a0, a1, alpha):
    """Scaled forward pass of rows a0:a1: ``alpha_t = (alpha_{t-1} A) * b_t / s_t`` (each
    row summing to one) written to ``alpha``; returns ``sum_t log s_t + shift_t``, the
    log-likelihood, or NaN where the scaled form cannot represent the sequence.  The
    s_t are multiplied into ``prod`` (kept above 1e-150, so that the next factor, at
    least the smallest normal number, cannot underflow it), whose log is taken only when
    it gets that small: one log every many steps instead of one a step."""
    k = startprob.shape[0]
    acc = np.empty(k)
    log_like, prod = 0.0, 1.0
    for t in range(a0, a1):
        if not np.isfinite(shift[t]):
            return np.nan
        if t == a0:
            for j in range(k):
                acc[j] = startprob[j] * b[t, j]
        else:
            acc[:] = 0.0
            for i in range(k):
                a_i = alpha[t - 1, i]
                for j in range(k):
                    acc[j] += a_i * transmat[i, j]
            for j in range(k):
                acc[j] *= b[t, j]
        total = 0.0
        for j in range(k):
            total += acc[j]
        if not total >= _SMALLEST_NORMAL:
            return np.nan
        if prod < 1e-150 or total < 1e-150:
            log_like += np.log(prod)
            prod = 1.0
        prod *= total
        log_like += shift[t]
        inv = 1.0 / total
        for j in range(k):
            alpha[t, j] = acc[j] * inv
    return log_like + np.log(prod)


@helper
def _backward_scaled(transmat_t, b, a0, a1, beta, norm):
    """Scaled backward pass of rows a0:a1 with its own normalizers, independent of the
    forward pass (so the two run at once): ``beta_{T-1} = 1``,
    ``beta_t = A (b_{t+1} * beta_{t+1}) / d_t`` with ``d_t`` the sum (``norm[t]``).
    Returns False where a normalizer underflows."""
    k = transmat_t.shape[0]
    for j in range(k):
        beta[a1 - 1, j] = 1.0
    for t in range(a1 - 2, a0 - 1, -1):
        for i in range(k):
            beta[t, i] = 0.0
        for j in range(k):
            u_j = b[t + 1, j] * beta[t + 1, j]
            for i in range(k):
                beta[t, i] += transmat_t[j, i] * u_j
        total = 0.0
        for i in range(k):
            total += beta[t, i]
        if not total >= _SMALLEST_NORMAL:
            return False
        norm[t] = total
        inv = 1.0 / total
        for i in range(k):
            beta[t, i] *= inv
    return True


@helper
def _combine_scaled(b, beta, norm, c0, c1, a1, post, part):
    """Posteriors and transition counts of steps c0:c1 (of a sequence ending at row a1)
    from the scaled passes: ``Z_t = alpha_t . beta_t``, ``gamma_t = alpha_t beta_t / Z_t``
    and, since ``A (b_{t+1} beta_{t+1}) = d_t beta_t``,
    ``xi_t = alpha_t (x) (b_{t+1} beta_{t+1}) / (d_t Z_t)``, times A by the caller;
    ``part`` (K, K) receives the sum.  ``post`` holds alpha on entry, gamma on return.
    Returns False where a normalizer underflows."""
    k = b.shape[1]
    part[:, :] = 0.0
    u = np.empty(k)
    for t in range(c0, c1):
        z = 0.0
        for j in range(k):
            z += post[t, j] * beta[t, j]
        if not z > _TINY_NORM:
            return False
        inv = 1.0 / z
        if t + 1 < a1:
            w = inv / norm[t]
            for j in range(k):
                u[j] = b[t + 1, j] * beta[t + 1, j]
            for i in range(k):
                a_i = post[t, i] * w
                for j in range(k):
                    part[i, j] += a_i * u[j]
        for j in range(k):
            post[t, j] *= beta[t, j] * inv
    return True


@kernel
def _forward_backward_log_batch(log_startprob, log_transmat, log_emission, offsets, log_prob,
                                posteriors, xi_sums, n_threads):
    """Log space: each sequence in one thread (``_forward_backward_log``)."""
    transmat = np.exp(log_transmat)
    transmat_t = np.ascontiguousarray(transmat.T)
    for s in prange(offsets.shape[0] - 1):
        a, b = offsets[s], offsets[s + 1]
        if b == a:
            log_prob[s] = 0.0
            xi_sums[s, :, :] = 0.0
        else:
            log_prob[s] = _forward_backward_log(transmat, transmat_t, log_startprob,
                                                log_transmat, log_emission[a:b],
                                                posteriors[a:b], xi_sums[s])


@kernel
def _shift_rows(log_emission, shifted, shift, n_threads):
    """``shift_t = max_j le_t(j)``, ``shifted_t = le_t - shift_t`` (-inf for a row no state
    can emit), over fixed blocks of rows."""
    n, k = log_emission.shape
    for blk in prange((n + TIME_BLOCK - 1) // TIME_BLOCK):
        for t in range(blk * TIME_BLOCK, min(n, (blk + 1) * TIME_BLOCK)):
            m = log_emission[t, 0]
            for j in range(1, k):
                m = max(m, log_emission[t, j])
            shift[t] = m
            for j in range(k):
                shifted[t, j] = log_emission[t, j] - m if np.isfinite(m) else -np.inf


@kernel
def _forward_backward_scaled_batch(log_startprob, log_transmat, log_emission, em, shift,
                                   beta, norm, offsets, log_prob, posteriors, xi_sums,
                                   n_threads):
    """The scaled passes of a batch whose ``em = exp(le - shift)`` is given, with work
    arrays ``beta`` (N, K) and ``norm`` (N,) (see ``forward_backward``)."""
    n, k = log_emission.shape
    n_seq = offsets.shape[0] - 1
    startprob, transmat = np.exp(log_startprob), np.exp(log_transmat)
    transmat_t = np.ascontiguousarray(transmat.T)
    lengths = offsets[1:] - offsets[:-1]
    order = np.argsort(-lengths, kind="mergesort")
    backward_ok = np.ones(n_seq, dtype=np.bool_)
    for task in prange(2 * n_seq):
        s = order[task // 2]
        a, b = offsets[s], offsets[s + 1]
        if b == a:
            continue
        if task % 2 == 0:
            log_prob[s] = _forward_scaled(startprob, transmat, em, shift, a, b, posteriors)
        else:
            backward_ok[s] = _backward_scaled(transmat_t, em, a, b, beta, norm)
    first_block = np.zeros(n_seq + 1, dtype=np.int64)
    for s in range(n_seq):
        first_block[s + 1] = first_block[s] + (lengths[s] + TIME_BLOCK - 1) // TIME_BLOCK
    parts = np.empty((first_block[n_seq], k, k))
    block_ok = np.ones(first_block[n_seq], dtype=np.bool_)
    for blk in prange(first_block[n_seq]):
        s = np.searchsorted(first_block, blk, side="right") - 1
        if not (backward_ok[s] and np.isfinite(log_prob[s])):
            continue
        c0 = offsets[s] + (blk - first_block[s]) * TIME_BLOCK
        block_ok[blk] = _combine_scaled(em, beta, norm, c0, min(c0 + TIME_BLOCK, offsets[s + 1]),
                                        offsets[s + 1], posteriors, parts[blk])
    for s in prange(n_seq):
        a, b = offsets[s], offsets[s + 1]
        if b == a:
            log_prob[s] = 0.0
            xi_sums[s, :, :] = 0.0
            continue
        ok = backward_ok[s] and np.isfinite(log_prob[s])
        for blk in range(first_block[s], first_block[s + 1]):
            ok = ok and block_ok[blk]
        if ok:
            xi_sums[s, :, :] = 0.0
            for blk in range(first_block[s], first_block[s + 1]):
                xi_sums[s] += parts[blk]
            xi_sums[s] *= transmat
        else:  # the scaled form cannot represent this sequence: log space instead
            log_prob[s] = _forward_backward_log(transmat, transmat_t, log_startprob,
                                                log_transmat, log_emission[a:b],
                                                posteriors[a:b], xi_sums[s])


@kernel
def _forward_batch(log_startprob, log_transmat, log_emission, em, shift, alphas, offsets,
                   scaled, log_prob, filtered, n_threads):
    """The forward passes alone, one sequence a thread, into the work array ``alphas``
    (N, K) (see ``forward``)."""
    n, k = log_emission.shape
    startprob, transmat = np.exp(log_startprob), np.exp(log_transmat)
    for s in prange(offsets.shape[0] - 1):
        a, b = offsets[s], offsets[s + 1]
        if b == a:
            log_prob[s] = 0.0
            filtered[s, :] = np.nan
            continue
        alpha = alphas[a:b]
        lp = np.nan
        if scaled:
            lp = _forward_scaled(startprob, transmat, em[a:b], shift[a:b], 0, b - a, alpha)
        if np.isfinite(lp):
            filtered[s, :] = alpha[b - a - 1]
        else:  # log space (asked for, or the scaled form cannot represent the sequence)
            lp = _forward_log(transmat, log_startprob, log_transmat, log_emission[a:b], alpha)
            for j in range(k):
                filtered[s, j] = np.exp(alpha[b - a - 1, j] - lp)
        log_prob[s] = lp


def _shifted_emissions(log_emission, scratch, n_threads):
    """(exp(le - shift), shift) of every row, in ``scratch``'s arrays "em" and "shift"."""
    em = scratch.empty("em", log_emission.shape)
    shift = scratch.empty("shift", (log_emission.shape[0],))
    _shift_rows(log_emission, em, shift, n_threads)
    np.exp(em, out=em)
    return em, shift


def forward(log_startprob, log_transmat, log_emission, offsets, scaled, log_prob, filtered,
            n_threads, *, scratch=None):
    """The forward pass of every sequence of the batch (see the reference): scaled as
    in ``forward_backward`` (the shifted emissions exponentiated by numpy), or in log
    space; one sequence a thread.  ``scratch``: a ``fastem.kernels._scratch.Scratch``
    lending the work arrays (None: allocated for this call)."""
    scratch = scratch_of(scratch)
    em, shift = log_emission, np.empty(0)  # unused by the log form
    if scaled:
        em, shift = _shifted_emissions(log_emission, scratch, n_threads)
    _forward_batch(log_startprob, log_transmat, log_emission, em, shift,
                   scratch.empty("alpha", log_emission.shape), offsets, scaled, log_prob,
                   filtered, n_threads)


def forward_backward(log_startprob, log_transmat, log_emission, offsets, scaled, log_prob,
                     posteriors, xi_sums, n_threads, *, scratch=None):
    """Forward-backward over every sequence of the batch (see the reference).

    Log space: each sequence in one thread.  Scaled: phases whose work split depends
    only on the data, never on the thread count: the shifted emissions of every row, and
    their ``exp`` by numpy (vectorised: about 1 ns an entry, against 9 for a scalar
    ``exp``); the forward and the backward pass of every sequence as separate tasks
    (longest sequences first, so one long sequence keeps two threads busy); posteriors
    and transition counts over blocks of ``TIME_BLOCK`` steps; the log-space recursions
    for any sequence the scaled form could not represent.  ``scratch`` as ``forward``.
    """
    if not scaled:
        _forward_backward_log_batch(log_startprob, log_transmat, log_emission, offsets,
                                    log_prob, posteriors, xi_sums, n_threads)
        return
    scratch = scratch_of(scratch)
    em, shift = _shifted_emissions(log_emission, scratch, n_threads)
    _forward_backward_scaled_batch(log_startprob, log_transmat, log_emission, em, shift,
                                   scratch.empty("beta", log_emission.shape),
                                   scratch.empty("norm", (log_emission.shape[0],)), offsets,
                                   log_prob, posteriors, xi_sums, n_threads)


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


@kernel
def weighted_moments(X, center, weights, nk, sum_y, sum_yy, n_threads):
    """The weighted moments of the rows about ``center`` (see the reference), over fixed
    blocks and slots of rows, the slots added in order (bit-identical for any thread
    count); outer products by one gemm per block and state."""
    n, d = X.shape
    k = weights.shape[1]
    rows = sum_yy.shape[1]  # 1: squares only; d: outer products
    n_blocks = (n + BLOCK_SIZE - 1) // BLOCK_SIZE
    n_slots = _n_slots(n_blocks, 8 * k * (1 + d + rows * d))
    part_nk = np.zeros((n_slots, k))
    part_y = np.zeros((n_slots, k, d))
    part_yy = np.zeros((n_slots, k, rows, d))
    for slot in prange(n_slots):
        start, stop = _slot_samples(slot, n_slots, n_blocks, n)
        y = np.empty((BLOCK_SIZE, d))
        yw = np.empty((BLOCK_SIZE, d))
        ay = np.empty(d)
        bn, by, byy = np.empty(k), np.empty((k, d)), np.empty((k, d))
        for b_start in range(start, stop, BLOCK_SIZE):
            m = min(b_start + BLOCK_SIZE, stop) - b_start
            for i in range(m):
                for j in range(d):
                    y[i, j] = np.float64(X[b_start + i, j]) - center[j]
            if rows == 1:  # squares: row by row, each row's K weights read together
                bn[:] = 0.0
                by[:, :] = 0.0
                byy[:, :] = 0.0
                for i in range(m):
                    for c in range(k):
                        w = weights[b_start + i, c]
                        bn[c] += w
                        for j in range(d):
                            v = w * y[i, j]
                            by[c, j] += v
                            byy[c, j] += v * y[i, j]
                for c in range(k):
                    part_nk[slot, c] += bn[c]
                    for j in range(d):
                        part_y[slot, c, j] += by[c, j]
                        part_yy[slot, c, 0, j] += byy[c, j]
                continue
            for c in range(k):  # outer products: one gemm per state
                total = 0.0
                for i in range(m):
                    total += weights[b_start + i, c]
                if total == 0.0:
                    continue
                part_nk[slot, c] += total
                ay[:] = 0.0
                for i in range(m):
                    w = weights[b_start + i, c]
                    for j in range(d):
                        yw[i, j] = w * y[i, j]
                        ay[j] += yw[i, j]
                part_yy[slot, c] += np.dot(yw[:m].T, y[:m])
                for j in range(d):
                    part_y[slot, c, j] += ay[j]
    nk[:] = 0.0
    sum_y[:, :] = 0.0
    sum_yy[:, :, :] = 0.0
    for slot in range(n_slots):  # slot order: bit-identical for any thread count
        nk += part_nk[slot]
        sum_y += part_y[slot]
        sum_yy += part_yy[slot]


@kernel
def symbol_counts(symbols, weights, counts, n_threads):
    """The weighted (state, symbol) counts (see the reference), over fixed blocks and
    slots of rows, each slot's table symbol-major (a row's K weights are added to one
    contiguous row), the slots added in order."""
    n, k = weights.shape
    m = counts.shape[1]
    n_blocks = (n + BLOCK_SIZE - 1) // BLOCK_SIZE
    n_slots = _n_slots(n_blocks, 8 * k * m)
    part = np.zeros((n_slots, m, k))
    for slot in prange(n_slots):
        start, stop = _slot_samples(slot, n_slots, n_blocks, n)
        for t in range(start, stop):
            s = symbols[t]
            for c in range(k):
                part[slot, s, c] += weights[t, c]
    counts[:, :] = 0.0
    for slot in range(n_slots):  # slot order: bit-identical for any thread count
        for s in range(m):
            for c in range(k):
                counts[c, s] += part[slot, s, c]
