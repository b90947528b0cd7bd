"""Topic-model kernels in numba (see the reference for the mathematics).

Every document's update is independent (one task each), and the M-step statistics
are summed word by word over the batch taken column-wise, each word's documents in
order (one task a word): no result depends on the thread count, and no (V, K) partial
sums are kept per thread.  The topic-word table is used transposed, (V, K), so that a
word's K values are contiguous.  numba has no digamma: ``_digamma`` is ours (tested against
``scipy.special.psi``).
"""

import numpy as np
from numba import prange

from ._jit import helper, kernel
from ._slots import BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES  # noqa: F401 (the contract's constants)

_EPS = np.finfo(np.float64).eps


@helper
def _psi_shifted(x):
    """(psi(x) - log(y), y) for x >= 0, with y = x + 10 below 10 (else x): the recurrence
    psi(x) = psi(x + 10) - sum_{i<10} 1/(x + i), its terms summed as one fraction in a
    fixed number of steps (no branch: a loop over topics of it runs in vectors), then
    the asymptotic series ln y - 1/(2y) - sum_n B_2n / (2n y^2n) to y^-12 (its next term
    is below 1e-14 for y >= 10).  x = 0 gives -inf (the fraction's denominator is 0)."""
    num, den, y = 0.0, 1.0, x
    for _ in range(10):
        num = num * y + den
        den = den * y
        y += 1.0
    if x >= 10.0:
        num, den, y = 0.0, 1.0, x
    r = 1.0 / y
    r2 = r * r
    series = r2 * (1.0 / 12 - r2 * (1.0 / 120 - r2 * (1.0 / 252 - r2 * (
        1.0 / 240 - r2 * (1.0 / 132 - r2 * (691.0 / 32760))))))
    return -0.5 * r - series - num / den, y


@helper
def _digamma(x):
    """psi(x) for x >= 0 (``_psi_shifted``); psi(0) = -inf."""
    rest, y = _psi_shifted(x)
    return rest + np.log(y)


@helper
def _expect(gamma, e, y):
    """e_k = exp(psi(gamma_k) - psi(sum_k gamma_k)) = (y_k / y) exp(rest_k - rest) in the
    terms of ``_psi_shifted``: no logarithm, and one exp a topic in a loop of its own
    (the rest runs in vectors).  ``y``: K of scratch."""
    k = gamma.shape[0]
    total = 0.0
    for j in range(k):
        total += gamma[j]
    rest_total, y_total = _psi_shifted(total)
    for j in range(k):
        rest, y[j] = _psi_shifted(gamma[j])
        e[j] = rest - rest_total
    for j in range(k):
        e[j] = (y[j] / y_total) * np.exp(e[j])


@helper
def _document_update(e, rows, cols, cnt, norm, acc):
    """acc_k = sum_w rows_wk n_w / (e . rows_w + eps) over the document's words, in two
    sweeps of its own copy of the table (``rows`` (n, K) and ``cols`` its transpose):
    the normalizers word-parallel over the columns (each one's sum still in topic
    order), then the accumulation topic-parallel over the rows; both inner loops run
    over contiguous memory in vectors, and the copy stays in cache across updates."""
    m, k = rows.shape
    for p in range(m):
        norm[p] = 0.0
    for j in range(k):
        ej = e[j]
        for p in range(m):
            norm[p] += ej * cols[j, p]
    for j in range(k):
        acc[j] = 0.0
    for p in range(m):
        c = cnt[p] / (norm[p] + _EPS)
        for j in range(k):
            acc[j] += c * rows[p, j]


@kernel
def _update_documents(data, indices, indptr, ewt, doc_topic, doc_topic_prior, max_iter,
                      mean_change_tol, e_out, n_threads):
    """Phase 1: each document's gamma (in place) and its final e (``e_out``), one
    document a task."""
    n, k = doc_topic.shape
    for d in prange(n):
        a, b = indptr[d], indptr[d + 1]
        m = b - a
        gamma, e, acc, y = np.empty(k), np.empty(k), np.empty(k), np.empty(k)
        rows, cols, cnt, norm = np.empty((m, k)), np.empty((k, m)), np.empty(m), np.empty(m)
        for p in range(m):
            cnt[p] = np.float64(data[a + p])
            for j in range(k):
                rows[p, j] = ewt[indices[a + p], j]
                cols[j, p] = rows[p, j]
        for j in range(k):
            gamma[j] = doc_topic[d, j]
        _expect(gamma, e, y)
        for _ in range(max_iter):
            _document_update(e, rows, cols, cnt, norm, acc)
            change = 0.0
            for j in range(k):
                g = e[j] * acc[j] + doc_topic_prior
                change += abs(g - gamma[j])
                gamma[j] = g
            _expect(gamma, e, y)
            if change / k < mean_change_tol:
                break
        for j in range(k):
            doc_topic[d, j] = gamma[j]
            e_out[d, j] = e[j]


@kernel
def _word_sums_csc(col_data, col_docs, col_ptr, x, t, eps, out, n_threads):
    """The M-step sums of both topic models, word by word over the batch taken
    column-wise (CSC, each word's documents in order), one word a task:
    ``out[w] = sum_d x_d n_dw / (x_d . t_w + eps)`` (a zero denominator counts nothing).
    LDA: x = e, t = exp(E[log beta]); PLSA: x = P(z|d), t = P(w|z), eps = 0."""
    v, k = out.shape
    for w in prange(v):
        for j in range(k):
            out[w, j] = 0.0
        for p in range(col_ptr[w], col_ptr[w + 1]):
            d = col_docs[p]
            s = 0.0
            for j in range(k):
                s += x[d, j] * t[w, j]
            s += eps
            if s > 0:
                c = np.float64(col_data[p]) / s
                for j in range(k):
                    out[w, j] += x[d, j] * c


def lda_e_step(data, indices, indptr, exp_topic_word, doc_topic, doc_topic_prior, max_iter,
               mean_change_tol, sstats, n_threads):
    """The variational E-step of every document (see the reference), in two phases
    whose work split depends on the data only: the documents in parallel, then the
    M-step statistics word by word in parallel, each word's documents in order (the
    batch taken column-wise, CSC), so no (V, K) partial sums are kept per thread."""
    n, k = doc_topic.shape
    ewt = np.ascontiguousarray(exp_topic_word.T, dtype=np.float64)
    e = np.empty((n, k))
    _update_documents(data, indices, indptr, ewt, doc_topic, float(doc_topic_prior),
                      int(max_iter), float(mean_change_tol), e, n_threads)
    if sstats.shape[0] > 0:
        out = np.empty(ewt.shape)
        _word_sums(data, indices, indptr, e, ewt, _EPS, out, n_threads)
        sstats[:] = out.T


def _word_sums(data, indices, indptr, x, t, eps, out, n_threads):
    """``_word_sums_csc`` of the batch's CSR rows, taken column-wise (each word's
    documents in increasing order)."""
    import scipy.sparse as sp

    cols = sp.csr_matrix((data, indices, indptr), shape=(x.shape[0], t.shape[0])).tocsc()
    _word_sums_csc(cols.data, cols.indices.astype(np.int64), cols.indptr.astype(np.int64), x,
                   t, eps, out, n_threads)


@kernel
def _word_bound(data, indices, indptr, elog_doc_topic, elog_word_topic, out, n_threads):
    n, k = elog_doc_topic.shape
    for d in prange(n):
        total = 0.0
        for p in range(indptr[d], indptr[d + 1]):
            w = indices[p]
            m = -np.inf
            for j in range(k):
                m = max(m, elog_doc_topic[d, j] + elog_word_topic[w, j])
            s = 0.0
            if np.isfinite(m):
                for j in range(k):
                    s += np.exp(elog_doc_topic[d, j] + elog_word_topic[w, j] - m)
            total += np.float64(data[p]) * (m + np.log(s))
        out[d] = total


def lda_word_bound(data, indices, indptr, elog_doc_topic, elog_topic_word, out, n_threads):
    """Each document's word term of the bound (see the reference), one document a task,
    a max-shifted logsumexp per word over the transposed (V, K) table."""
    _word_bound(data, indices, indptr, np.ascontiguousarray(elog_doc_topic, dtype=np.float64),
                np.ascontiguousarray(elog_topic_word.T, dtype=np.float64), out, n_threads)


@kernel
def _plsa_documents(data, indices, indptr, theta, beta, new_theta, log_lik, n_threads):
    """PLSA's phase 1: each document's P(w|d), log-likelihood and new P(z|d)."""
    n, k = theta.shape
    for d in prange(n):
        acc = np.zeros(k)
        total, ll = 0.0, 0.0
        for p in range(indptr[d], indptr[d + 1]):
            w = indices[p]
            pw = 0.0
            for j in range(k):
                pw += theta[d, j] * beta[w, j]
            cnt = np.float64(data[p])
            total += cnt
            ll += cnt * np.log(pw)
            if pw > 0:
                c = cnt / pw
                for j in range(k):
                    acc[j] += c * beta[w, j]
        log_lik[d] = ll
        for j in range(k):
            new_theta[d, j] = theta[d, j] * acc[j] / total if total > 0 else theta[d, j]


def plsa_em_pass(data, indices, indptr, doc_topic, word_topic, new_doc_topic, word_stats,
                 log_lik, n_threads):
    """One EM pass of PLSA (see the reference): the documents in parallel, then each
    word's statistics over its documents in order (the batch taken column-wise)."""
    theta = np.ascontiguousarray(doc_topic, dtype=np.float64)
    beta = np.ascontiguousarray(word_topic, dtype=np.float64)
    _plsa_documents(data, indices, indptr, theta, beta, new_doc_topic, log_lik, n_threads)
    if word_stats.shape[0] > 0:  # sum_d n_dw r_dwz = P(w|z) sum_d P(z|d) n_dw / P(w|d)
        _word_sums(data, indices, indptr, theta, beta, 0.0, word_stats, n_threads)
        word_stats *= beta
