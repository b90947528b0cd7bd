# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Topic-model kernels in Cython: numba/topics.py's loops and phases (see the reference
for the mathematics): the documents in parallel, then the M-step statistics word by
word, each word's documents in order."""

import numpy as np

from cython.parallel cimport prange
from libc.math cimport INFINITY, exp, fabs, isfinite, log
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

from cython cimport floating

from fastem.kernels.cython._common cimport _BLOCK, _MAX_SLOTS, _SLOT_BUDGET_BYTES, _team_size

BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES = _BLOCK, _MAX_SLOTS, _SLOT_BUDGET_BYTES

cdef double _EPS = np.finfo(np.float64).eps

cdef extern from *:
    """
    /* One document's E-step (numba/topics.py's loop body; the reference gives the
       algebra), in C so that it is compiled for AVX2 and the baseline, one picked at
       load time: in the baseline's 2-lane vectors the K-long updates ran at half
       numba's speed.  ewt is (V, K) row-major; gamma holds the start on entry. */
    #include <math.h>
    #include <stdint.h>

    /* numba/topics.py's _psi_shifted: psi(x) - log(y) with y = x + 10 below 10 (else
       x), the recurrence in a fixed number of steps so that a loop of it vectorizes */
    static inline double fastem_psi_shifted(double x, double* y_out) {
        double num = 0.0, den = 1.0, y = x;
        for (int i = 0; i < 10; i++) {
            num = num * y + den;
            den = den * y;
            y += 1.0;
        }
        if (x >= 10.0) {
            num = 0.0;
            den = 1.0;
            y = x;
        }
        const double r = 1.0 / y, r2 = r * r;
        const double series = r2 * (1.0 / 12 - r2 * (1.0 / 120 - r2 * (1.0 / 252 - r2 * (
            1.0 / 240 - r2 * (1.0 / 132 - r2 * (691.0 / 32760))))));
        *y_out = y;
        return -0.5 * r - series - num / den;
    }

    /* e_j = exp(psi(gamma_j) - psi(sum gamma)) = (y_j / y) exp(rest_j - rest); y: k of
       scratch (numba's _expect) */
    static inline void fastem_expect(const double* __restrict gamma, Py_ssize_t k,
                                     double* __restrict e, double* __restrict y) {
        double total = 0.0, y_total;
        for (Py_ssize_t j = 0; j < k; j++) total += gamma[j];
        const double rest_total = fastem_psi_shifted(total, &y_total);
        for (Py_ssize_t j = 0; j < k; j++) e[j] = fastem_psi_shifted(gamma[j], &y[j]) - rest_total;
        for (Py_ssize_t j = 0; j < k; j++) e[j] = (y[j] / y_total) * exp(e[j]);
    }

    /* One document's E-step on its own copy of its rows of the table, rows (nnz, k)
       and their transpose cols (k, nnz), which stay in cache across the updates: the
       normalizers sum_j e_j ewt_wj swept word-parallel over cols (each sum still in
       topic order), the accumulation sum_w c_w ewt_wj topic-parallel over rows; both
       inner loops run over contiguous memory in vectors. */
    static FASTEM_CLONES void fastem_lda_document(
            const double* __restrict cnt, const int64_t* __restrict ids, Py_ssize_t nnz,
            const double* __restrict ewt, Py_ssize_t k, double prior, Py_ssize_t max_iter,
            double tol, double eps, double* __restrict gamma, double* __restrict e,
            double* __restrict acc, double* __restrict rows, double* __restrict cols,
            double* __restrict norm) {
        for (Py_ssize_t p = 0; p < nnz; p++) {
            const double* w = ewt + ids[p] * k;
            for (Py_ssize_t j = 0; j < k; j++) {
                rows[p * k + j] = w[j];
                cols[j * nnz + p] = w[j];
            }
        }
        fastem_expect(gamma, k, e, norm + nnz);
        for (Py_ssize_t it = 0; it < max_iter; it++) {
            for (Py_ssize_t p = 0; p < nnz; p++) norm[p] = 0.0;
            for (Py_ssize_t j = 0; j < k; j++) {
                const double ej = e[j];
                const double* c = cols + j * nnz;
                for (Py_ssize_t p = 0; p < nnz; p++) norm[p] += ej * c[p];
            }
            for (Py_ssize_t j = 0; j < k; j++) acc[j] = 0.0;
            for (Py_ssize_t p = 0; p < nnz; p++) {
                const double c = cnt[p] / (norm[p] + eps);
                const double* r = rows + p * k;
                for (Py_ssize_t j = 0; j < k; j++) acc[j] += c * r[j];
            }
            double change = 0.0;
            for (Py_ssize_t j = 0; j < k; j++) {
                const double g = e[j] * acc[j] + prior;
                change += fabs(g - gamma[j]);
                gamma[j] = g;
            }
            fastem_expect(gamma, k, e, norm + nnz);
            if (change / k < tol) break;
        }
    }

    /* sum_j a_j b_j in four interleaved partial sums, added in a fixed order */
    static inline double fastem_dot4(const double* __restrict a, const double* __restrict b,
                                     Py_ssize_t k) {
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
        Py_ssize_t j = 0;
        for (; j + 4 <= k; j += 4) {
            s0 += a[j] * b[j];
            s1 += a[j + 1] * b[j + 1];
            s2 += a[j + 2] * b[j + 2];
            s3 += a[j + 3] * b[j + 3];
        }
        for (; j < k; j++) s0 += a[j] * b[j];
        return (s0 + s1) + (s2 + s3);
    }

    /* One word's M-step sums over its m documents, in order (numba's _word_sums_csc):
       out_j = sum_p x_dj cnt_p / (x_d . t_w + eps), d = docs[p]; x is (n, k) row-major */
    static FASTEM_CLONES void fastem_word_sum(
            const double* __restrict cnt, const int64_t* __restrict docs, Py_ssize_t m,
            const double* __restrict x, const double* __restrict tw, Py_ssize_t k,
            double eps, double* __restrict out) {
        for (Py_ssize_t j = 0; j < k; j++) out[j] = 0.0;
        for (Py_ssize_t p = 0; p < m; p++) {
            const double* xd = x + docs[p] * k;
            const double s = fastem_dot4(xd, tw, k) + eps;
            if (s > 0) {
                const double c = cnt[p] / s;
                for (Py_ssize_t j = 0; j < k; j++) out[j] += xd[j] * c;
            }
        }
    }
    """
    void _lda_document "fastem_lda_document" (
        const double* cnt, const int64_t* ids, Py_ssize_t nnz, const double* ewt, Py_ssize_t k,
        double prior, Py_ssize_t max_iter, double tol, double eps, double* gamma, double* e,
        double* acc, double* rows, double* cols, double* norm) noexcept nogil
    void _word_sum "fastem_word_sum" (
        const double* cnt, const int64_t* docs, Py_ssize_t m, const double* x,
        const double* tw, Py_ssize_t k, double eps, double* out) noexcept nogil


def _update_typed(const floating[::1] data, const int64_t[::1] indices,
                  const int64_t[::1] indptr, const double[:, ::1] ewt,
                  floating[:, ::1] doc_topic, double prior, Py_ssize_t max_iter, double tol,
                  double[:, ::1] e_out, n_threads):
    """Phase 1 (numba's ``_update_documents``): each document's gamma and final e, its
    gamma updated in ``e_out``'s row, then moved."""
    cdef Py_ssize_t n = doc_topic.shape[0], k = doc_topic.shape[1], d, j, p, a, nnz
    cdef double* work
    cdef int n_team = _team_size(n_threads, n)
    cdef Py_ssize_t n_failed = 0  # a reduction: prange makes assigned variables private
    for d in prange(n, nogil=True, schedule='dynamic', num_threads=n_team):
        # work: e (k), acc (k), the counts, rows and cols (nnz x k each), the normalizers,
        # k of scratch
        nnz = indptr[d + 1] - indptr[d]
        work = <double*>malloc((3 * k + nnz * (2 * k + 2) + 8) * sizeof(double))
        if work == NULL:
            n_failed += 1
            continue
        a = indptr[d]
        for p in range(nnz):  # the counts in float64
            work[2 * k + p] = <double>data[a + p]
        for j in range(k):
            e_out[d, j] = doc_topic[d, j]
        _lda_document(work + 2 * k, &indices[a] if nnz > 0 else NULL, nnz, &ewt[0, 0], k,
                      prior, max_iter, tol, _EPS, &e_out[d, 0], work, work + k,
                      work + 2 * k + nnz, work + 2 * k + nnz * (k + 1),
                      work + 2 * k + nnz * (2 * k + 1))
        for j in range(k):
            doc_topic[d, j] = <floating>e_out[d, j]
            e_out[d, j] = work[j]
        free(work)
    if n_failed:
        raise MemoryError()


def _word_sums_typed(const double[::1] col_data, const int64_t[::1] col_docs,
                     const int64_t[::1] col_ptr, const double[:, ::1] x,
                     const double[:, ::1] t, double eps, double[:, ::1] out, n_threads):
    """numba's ``_word_sums_csc``: both models' M-step sums, word by word over the batch
    taken column-wise, each word's documents in order (``fastem_word_sum``)."""
    cdef Py_ssize_t v = out.shape[0], k = out.shape[1], w, lo
    cdef int n_team = _team_size(n_threads, v)
    if x.shape[0] == 0 or k == 0:
        out[:, :] = 0.0
        return
    for w in prange(v, nogil=True, schedule='static', num_threads=n_team):
        lo = col_ptr[w]
        _word_sum(&col_data[lo] if col_ptr[w + 1] > lo else NULL,
                  &col_docs[lo] if col_ptr[w + 1] > lo else NULL, col_ptr[w + 1] - lo,
                  &x[0, 0], &t[w, 0], k, eps, &out[w, 0])


def _word_sums(data, indices, indptr, x, t, eps, out, n_threads):
    """``_word_sums_typed`` of the batch's CSR rows, taken column-wise."""
    import scipy.sparse as sp

    cols = sp.csr_matrix((data, indices, indptr), shape=(x.shape[0], t.shape[0])).tocsc()
    _word_sums_typed(np.asarray(cols.data, dtype=np.float64),
                     np.asarray(cols.indices, dtype=np.int64),
                     np.asarray(cols.indptr, dtype=np.int64), x, t, eps, out, n_threads)


def lda_e_step(data, indices, indptr, exp_topic_word, doc_topic, doc_topic_prior, max_iter,
               mean_change_tol, sstats, n_threads):
    """The variational E-step of every document (see the reference and numba's
    ``lda_e_step``: the documents in parallel, then the statistics word by word)."""
    n, k = doc_topic.shape
    v = exp_topic_word.shape[1]
    ewt = np.ascontiguousarray(np.asarray(exp_topic_word, dtype=np.float64).T)
    e = np.empty((n, k))
    if n > 0:
        _update_typed(data, np.asarray(indices, dtype=np.int64),
                      np.asarray(indptr, dtype=np.int64), ewt, doc_topic,
                      float(doc_topic_prior), int(max_iter), float(mean_change_tol), e,
                      n_threads)
    if sstats.shape[0] > 0:
        out = np.empty((v, k))
        _word_sums(data, indices, indptr, e, ewt, _EPS, out, n_threads)
        sstats[:] = out.T


def _word_bound_typed(const floating[::1] data, const int64_t[::1] indices,
                      const int64_t[::1] indptr, const double[:, ::1] elog_doc_topic,
                      const double[:, ::1] elog_word_topic, double[::1] out, n_threads):
    cdef Py_ssize_t n = out.shape[0], k = elog_doc_topic.shape[1], d, p, j, w
    cdef double total, m, s, x
    cdef int n_team = _team_size(n_threads, n)
    for d in prange(n, nogil=True, schedule='static', num_threads=n_team):
        total = 0.0
        for p in range(indptr[d], indptr[d + 1]):
            w = indices[p]
            m = -INFINITY
            for j in range(k):
                x = elog_doc_topic[d, j] + elog_word_topic[w, j]
                if x > m:
                    m = x
            s = 0.0
            if isfinite(m):
                for j in range(k):
                    s = s + exp(elog_doc_topic[d, j] + elog_word_topic[w, j] - m)
            total = total + <double>data[p] * (m + log(s))
        out[d] = total


def lda_word_bound(data, indices, indptr, elog_doc_topic, elog_topic_word, out, n_threads):
    """Each document's word term of the bound (see the reference and numba's
    ``lda_word_bound``)."""
    _word_bound_typed(data, np.asarray(indices, dtype=np.int64),
                      np.asarray(indptr, dtype=np.int64),
                      np.ascontiguousarray(elog_doc_topic, dtype=np.float64),
                      np.ascontiguousarray(np.asarray(elog_topic_word, dtype=np.float64).T),
                      out, n_threads)


def _plsa_documents_typed(const floating[::1] data, const int64_t[::1] indices,
                          const int64_t[::1] indptr, const double[:, ::1] theta,
                          const double[:, ::1] beta, floating[:, ::1] new_theta,
                          double[::1] log_lik, n_threads):
    """PLSA's phase 1 (numba's ``_plsa_documents``)."""
    cdef Py_ssize_t n = theta.shape[0], k = theta.shape[1], d, p, j, w
    cdef double pw, cnt, c, total, ll
    cdef double* acc
    cdef int n_team = _team_size(n_threads, n)
    cdef Py_ssize_t n_failed = 0
    for d in prange(n, nogil=True, schedule='dynamic', num_threads=n_team):
        acc = <double*>malloc((k + 1) * sizeof(double))
        if acc == NULL:
            n_failed += 1
            continue
        for j in range(k):
            acc[j] = 0.0
        total = 0.0
        ll = 0.0
        for p in range(indptr[d], indptr[d + 1]):
            w = indices[p]
            pw = 0.0
            for j in range(k):
                pw = pw + theta[d, j] * beta[w, j]
            cnt = <double>data[p]
            total = total + cnt
            ll = ll + cnt * log(pw)
            if pw > 0:
                c = cnt / pw
                for j in range(k):
                    acc[j] = acc[j] + c * beta[w, j]
        log_lik[d] = ll
        for j in range(k):
            new_theta[d, j] = <floating>(theta[d, j] * acc[j] / total if total > 0
                                         else theta[d, j])
        free(acc)
    if n_failed:
        raise MemoryError()


def plsa_em_pass(data, indices, indptr, doc_topic, word_topic, new_doc_topic, word_stats,
                 log_lik, n_threads):
    """One EM pass of PLSA (see the reference and numba's ``plsa_em_pass``)."""
    theta = np.ascontiguousarray(doc_topic, dtype=np.float64)
    beta = np.ascontiguousarray(word_topic, dtype=np.float64)
    n, v = theta.shape[0], beta.shape[0]
    idx, ptr = np.asarray(indices, dtype=np.int64), np.asarray(indptr, dtype=np.int64)
    if n > 0:
        _plsa_documents_typed(data, idx, ptr, theta, beta, new_doc_topic, log_lik, n_threads)
    if word_stats.shape[0] > 0:  # sum_d n_dw r_dwz = P(w|z) sum_d P(z|d) n_dw / P(w|d)
        _word_sums(data, indices, indptr, theta, beta, 0.0, word_stats, n_threads)
        np.multiply(word_stats, beta, out=np.asarray(word_stats))
