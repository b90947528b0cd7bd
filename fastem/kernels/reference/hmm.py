"""Hidden Markov model kernels, numpy reference implementation (the specification).

One sequence of T steps and K states: ``log_startprob`` (K,), ``log_transmat`` (K, K)
with rows the "from" state, and ``log_emission`` (T, K), the log-probability of each
step's observation under each state (from the Gaussian or discrete emission kernels).
Everything is float64.  A row of ``log_emission`` that is all zeros is an unobserved
step (a missing observation: every state explains it with probability one).

* ``forward_backward_log``: the forward-backward recursions in log space,
  ``log alpha_t(j) = log b_t(j) + logsumexp_i(log alpha_{t-1}(i) + log A_ij)`` and the
  matching backward pass; returns the sequence's log-likelihood, the state posteriors
  ``gamma_t(j) = P(z_t = j | x)`` and the expected transition counts
  ``xi_sum_ij = sum_t P(z_t = i, z_{t+1} = j | x)`` (summed over t: no T x K x K array).
* ``forward_backward_scaled``: the same quantities by Rabiner's scaling, with each step's
  emissions shifted by their maximum before ``exp`` (so ``exp`` is taken T x K times,
  never K^2 per step, and a large negative log-density does not underflow), the log of
  the scale factors and the shifts adding up to the log-likelihood.  Where a scale factor
  still underflows to zero (a step no state can explain from the previous ones), it
  returns the log-space result instead of failing.
* An impossible sequence (log-likelihood ``-inf``) has no posteriors: they come back NaN,
  for the model code to refuse with a clear error.
* ``viterbi``: the most probable state path and its joint log-probability (ties to the
  lowest state index).

The fast backends compute these to rounding (and the same Viterbi path); the tests
check all three against enumeration of every path on small models.
"""

import numpy as np


#: A scale factor below this is subnormal: it has lost digits, so the scaled form hands
#: the sequence to log space.
_SMALLEST_NORMAL = np.finfo(np.float64).tiny


def _logsumexp(a, axis):
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - top), axis=axis, keepdims=True)) + top
    return np.squeeze(out, axis=axis)


def _check(log_startprob, log_transmat, log_emission):
    k = log_startprob.shape[0]
    if log_transmat.shape != (k, k) or log_emission.ndim != 2 or log_emission.shape[1] != k:
        raise ValueError(f"shapes do not match K = {k}: log_transmat {log_transmat.shape}, "
                         f"log_emission {log_emission.shape}")
    return log_emission.shape[0], k


def forward_backward_log(log_startprob, log_transmat, log_emission):
    """(log-likelihood, posteriors (T, K), expected transition counts (K, K)), in log
    space (see the module docstring)."""
    n_steps, k = _check(log_startprob, log_transmat, log_emission)
    if n_steps == 0:
        return 0.0, np.zeros((0, k)), np.zeros((k, k))
    log_alpha = np.empty((n_steps, k))
    log_alpha[0] = log_startprob + log_emission[0]
    for t in range(1, n_steps):
        log_alpha[t] = log_emission[t] + _logsumexp(log_alpha[t - 1][:, None] + log_transmat,
                                                    axis=0)
    log_beta = np.zeros((n_steps, k))
    for t in range(n_steps - 2, -1, -1):
        log_beta[t] = _logsumexp(log_transmat + (log_emission[t + 1] + log_beta[t + 1])[None, :],
                                 axis=1)
    log_prob = float(_logsumexp(log_alpha[-1], axis=0))
    if log_prob == -np.inf:  # an impossible sequence: no posterior to give
        return log_prob, np.full((n_steps, k), np.nan), np.full((k, k), np.nan)
    gamma = np.exp(log_alpha + log_beta - log_prob)
    xi_sum = np.zeros((k, k))
    for t in range(n_steps - 1):
        xi_sum += np.exp(log_alpha[t][:, None] + log_transmat
                         + (log_emission[t + 1] + log_beta[t + 1])[None, :] - log_prob)
    return log_prob, gamma, xi_sum


def forward_backward_scaled(log_startprob, log_transmat, log_emission):
    """The same as ``forward_backward_log`` by scaled recursions on probabilities (see
    the module docstring); falls back to log space where a scale factor underflows."""
    n_steps, k = _check(log_startprob, log_transmat, log_emission)
    if n_steps == 0:
        return 0.0, np.zeros((0, k)), np.zeros((k, k))
    shift = np.max(log_emission, axis=1)
    if not np.all(np.isfinite(shift)):  # a step that no state can emit: log P = -inf
        return forward_backward_log(log_startprob, log_transmat, log_emission)
    b = np.exp(log_emission - shift[:, None])  # each row's largest entry is 1
    startprob, transmat = np.exp(log_startprob), np.exp(log_transmat)
    alpha = np.empty((n_steps, k))
    scale = np.empty(n_steps)
    alpha[0] = startprob * b[0]
    for t in range(n_steps):
        if t:
            alpha[t] = (alpha[t - 1] @ transmat) * b[t]
        scale[t] = alpha[t].sum()
        if not scale[t] >= _SMALLEST_NORMAL:  # underflow: the scaled form cannot represent it
            return forward_backward_log(log_startprob, log_transmat, log_emission)
        alpha[t] /= scale[t]
    beta = np.empty((n_steps, k))
    beta[-1] = 1.0
    for t in range(n_steps - 2, -1, -1):
        beta[t] = (transmat @ (b[t + 1] * beta[t + 1])) / scale[t + 1]
    gamma = alpha * beta
    xi_sum = np.zeros((k, k))
    for t in range(n_steps - 1):
        xi_sum += (alpha[t][:, None] * transmat * (b[t + 1] * beta[t + 1])[None, :]
                   / scale[t + 1])
    log_prob = float(np.sum(np.log(scale)) + np.sum(shift))
    return log_prob, gamma, xi_sum


def viterbi(log_startprob, log_transmat, log_emission):
    """(joint log-probability of the best path, the path (T,) int32): the most probable
    state sequence, ties to the lowest state index at every step."""
    n_steps, k = _check(log_startprob, log_transmat, log_emission)
    if n_steps == 0:
        return 0.0, np.zeros(0, dtype=np.int32)
    delta = log_startprob + log_emission[0]
    back = np.zeros((n_steps, k), dtype=np.int32)
    for t in range(1, n_steps):
        scores = delta[:, None] + log_transmat  # (from, to)
        back[t] = np.argmax(scores, axis=0)  # argmax: the first maximum, lowest index
        delta = scores[back[t], np.arange(k)] + log_emission[t]
    path = np.empty(n_steps, dtype=np.int32)
    path[-1] = int(np.argmax(delta))
    for t in range(n_steps - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return float(delta[path[-1]]), path


# ---------------------------------------------------------------- many sequences
# The kernels every backend defines (fastem/_families.py): a batch of sequences stacked
# in ``log_emission`` (N, K), sequence s being rows offsets[s]:offsets[s + 1].  Each
# sequence is independent, so the fast backends run them in parallel and the results
# do not depend on the thread count; ``xi_sums`` keeps one (K, K) block per sequence,
# which the caller adds in sequence order.

def forward_backward(log_startprob, log_transmat, log_emission, offsets, scaled, log_prob,
                     posteriors, xi_sums, n_threads, *, scratch=None):
    """Forward-backward over every sequence (scaled, else in log space; see the module
    docstring): ``log_prob`` (S,), ``posteriors`` (N, K) and ``xi_sums`` (S, K, K) are
    written.  ``n_threads`` and ``scratch`` (the fast backends' reusable work arrays) are
    accepted for signature parity and ignored."""
    one = forward_backward_scaled if scaled else forward_backward_log
    for s in range(offsets.shape[0] - 1):
        a, b = offsets[s], offsets[s + 1]
        log_prob[s], posteriors[a:b], xi_sums[s] = one(log_startprob, log_transmat,
                                                       log_emission[a:b])


def forward(log_startprob, log_transmat, log_emission, offsets, scaled, log_prob, filtered,
            n_threads, *, scratch=None):
    """The forward pass alone: ``log_prob`` (S,) as ``forward_backward``'s, and
    ``filtered`` (S, K), each sequence's state distribution at its last step given the
    sequence, ``P(z_T = j | x_1..x_T)`` (the last row of its posteriors; NaN for an empty
    sequence).  ``n_threads`` and ``scratch`` are accepted for signature parity and
    ignored."""
    one = forward_backward_scaled if scaled else forward_backward_log
    for s in range(offsets.shape[0] - 1):
        a, b = offsets[s], offsets[s + 1]
        log_prob[s], gamma, _ = one(log_startprob, log_transmat, log_emission[a:b])
        filtered[s] = gamma[-1] if b > a else np.nan


def decode_viterbi(log_startprob, log_transmat, log_emission, offsets, log_prob, path,
                   n_threads):
    """Viterbi over every sequence: ``log_prob`` (S,) the best paths' joint
    log-probabilities, ``path`` (N,) int32 the states."""
    for s in range(offsets.shape[0] - 1):
        a, b = offsets[s], offsets[s + 1]
        log_prob[s], path[a:b] = viterbi(log_startprob, log_transmat, log_emission[a:b])


def weighted_moments(X, center, weights, nk, sum_y, sum_yy, n_threads):
    """The weighted moments of the rows of X about ``center`` (D,), one set per column of
    ``weights`` (N, K), e.g. the state posteriors of a Gaussian HMM's M-step:
    ``nk`` (K,) = sum_i w_ik, ``sum_y`` (K, D) = sum_i w_ik y_i with y = x - center
    (float64), and ``sum_yy`` either (K, 1, D), the squares sum_i w_ik y_i^2, or
    (K, D, D), the outer products sum_i w_ik y_i y_i^T (for D = 1 the two agree).
    ``n_threads`` is accepted for signature parity and ignored."""
    y = np.asarray(X, dtype=np.float64) - center
    nk[:] = weights.sum(axis=0)
    sum_y[:] = weights.T @ y
    if sum_yy.shape[1] == 1:
        sum_yy[:, 0, :] = weights.T @ (y * y)
    else:
        sum_yy[:] = np.einsum("ik,ij,il->kjl", weights, y, y)


def symbol_counts(symbols, weights, counts, n_threads):
    """The weighted count of every (state, symbol) pair, e.g. a categorical HMM's
    expected emissions: ``counts`` (K, M) = sum_t weights[t, k] [symbols[t] = m], for
    ``symbols`` (N,) int64 in [0, M) and ``weights`` (N, K).  ``n_threads`` is accepted
    for signature parity and ignored."""
    counts[:] = 0.0
    np.add.at(counts.T, symbols, weights)
