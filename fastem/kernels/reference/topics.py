"""Topic-model kernels, the specification (plain numpy loops): latent Dirichlet
allocation's per-document variational E-step and the word term of its bound.

Documents are the rows of a CSR matrix (``data``, ``indices``, ``indptr``), word counts
in ``data``.  With K topics and V words, ``exp_topic_word`` (K, V) is
``exp(E[log beta_kw])`` under the topics' variational Dirichlets, and a document's
variational Dirichlet ``gamma_d`` (K,) is updated (Blei, Ng and Jordan 2003; Hoffman,
Blei and Bach 2010, as scikit-learn runs it) by

    e_dk     = exp(E[log theta_dk]) = exp(psi(gamma_dk) - psi(sum_k gamma_dk))
    phi_norm = sum_k e_dk exp_topic_word_kw + eps          for each word w of d
    gamma_dk = alpha + e_dk sum_w n_dw exp_topic_word_kw / phi_norm_w

until the mean absolute change of gamma_d is below ``mean_change_tol`` or after
``max_iter`` updates (``eps`` is float64's machine epsilon).  The M-step's statistics
are ``sstats_kw = sum_d e_dk n_dw / phi_norm_dw`` under the final gamma_d (times
``exp_topic_word_kw``, which the caller applies).
"""

import numpy as np
from scipy.special import logsumexp, psi

_EPS = np.finfo(np.float64).eps


def lda_e_step(data, indices, indptr, exp_topic_word, doc_topic, doc_topic_prior, max_iter,
               mean_change_tol, sstats, n_threads):
    """The variational E-step of every document (see the module docstring).

    ``doc_topic`` (N, K) holds each document's starting gamma on entry and its final
    gamma on return.  ``sstats`` (K, V) receives the M-step statistics, or is (0, V) when
    they are not wanted (a transform).  ``n_threads`` is accepted for signature parity
    and ignored.
    """
    want = sstats.shape[0] > 0
    if want:
        sstats[:] = 0.0
    ewt = np.asarray(exp_topic_word, dtype=np.float64)
    for d in range(doc_topic.shape[0]):
        ids = indices[indptr[d]:indptr[d + 1]]
        cnts = np.asarray(data[indptr[d]:indptr[d + 1]], dtype=np.float64)
        gamma = np.asarray(doc_topic[d], dtype=np.float64)
        e = np.exp(psi(gamma) - psi(gamma.sum()))
        w = ewt[:, ids]
        for _ in range(max_iter):
            new = doc_topic_prior + e * ((cnts / (e @ w + _EPS)) @ w.T)
            change = np.abs(new - gamma).mean()
            gamma = new
            e = np.exp(psi(gamma) - psi(gamma.sum()))
            if change < mean_change_tol:
                break
        doc_topic[d] = gamma
        if want:
            sstats[:, ids] += np.outer(e, cnts / (e @ w + _EPS))


def lda_word_bound(data, indices, indptr, elog_doc_topic, elog_topic_word, out, n_threads):
    """Each document's ``sum_w n_dw log sum_k exp(E[log theta_dk] + E[log beta_kw])``,
    the word term of the evidence lower bound, into ``out`` (N,).  ``n_threads`` is
    accepted for signature parity and ignored."""
    for d in range(out.shape[0]):
        ids = indices[indptr[d]:indptr[d + 1]]
        cnts = np.asarray(data[indptr[d]:indptr[d + 1]], dtype=np.float64)
        terms = elog_doc_topic[d][:, None] + elog_topic_word[:, ids]
        out[d] = float(cnts @ logsumexp(terms, axis=0)) if ids.size else 0.0


def plsa_em_pass(data, indices, indptr, doc_topic, word_topic, new_doc_topic, word_stats,
                 log_lik, n_threads):
    """One EM pass of PLSA (Hofmann 1999) over the non-zeros, under the current
    ``doc_topic`` P(z|d) (N, K) and ``word_topic`` P(w|z) transposed (V, K):
    with ``P(w|d) = sum_z P(z|d) P(w|z)`` and the responsibilities
    ``r_dwz = P(z|d) P(w|z) / P(w|d)``,

        new_doc_topic_dz = sum_w n_dw r_dwz / n_d     (an empty document keeps P(z|d))
        word_stats_wz    = sum_d n_dw r_dwz           ((0, K): not wanted, a fold-in)
        log_lik_d        = sum_w n_dw log P(w|d)

    ``n_threads`` is accepted for signature parity and ignored."""
    want = word_stats.shape[0] > 0
    if want:
        word_stats[:] = 0.0
    beta = np.asarray(word_topic, dtype=np.float64)
    for d in range(doc_topic.shape[0]):
        ids = indices[indptr[d]:indptr[d + 1]]
        cnts = np.asarray(data[indptr[d]:indptr[d + 1]], dtype=np.float64)
        theta = np.asarray(doc_topic[d], dtype=np.float64)
        p = beta[ids] @ theta  # P(w|d) of the document's words
        with np.errstate(divide="ignore"):
            log_lik[d] = float(cnts @ np.log(p)) if ids.size else 0.0
        c = np.divide(cnts, p, out=np.zeros_like(cnts), where=p > 0)
        total = cnts.sum()
        new_doc_topic[d] = theta * (c @ beta[ids]) / total if total > 0 else theta
        if want:
            word_stats[ids] += np.outer(c, theta) * beta[ids]
