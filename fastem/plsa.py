"""Probabilistic latent semantic analysis by EM: ``PLSA`` (Hofmann 1999).

X holds word counts n(d, w), documents in rows (dense or sparse, never densified).  The
model is ``P(w | d) = sum_z P(z | d) P(w | z)`` with K topics; one EM iteration is one
pass over the non-zeros (the ``plsa_em_pass`` kernel), under the current parameters:

    r_dwz       = P(z|d) P(w|z) / P(w|d)
    P(z|d)     <- sum_w n_dw r_dwz / n_d
    P(w|z)     <- sum_d n_dw r_dwz / sum_{d, w'} n_dw' r_dw'z

so it costs O(K x non-zeros) time and O(K x (documents + words)) memory, never a
documents x words x topics array.  The log-likelihood ``sum n_dw log P(w|d)`` under the
parameters before each update never decreases (``lower_bounds_``).  New documents are
folded in (``transform``): the same updates of their P(z|d), the topics fixed.  X may
also be ``fastem.Chunks`` of dense or sparse pieces or a Dask array (``fastem._topics``);
on Dask each chunk's pass is a task, its P(z|d) sent with it and returned.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import numpy as np

from ._config import BACKENDS
from ._threads import limit_blas_threads
from ._topics import Documents
from ._validation import Interval, Options, check_random_state
from .base import EMEstimator, Iteration

if TYPE_CHECKING:
    from typing import Any, Optional

    from typing_extensions import Self


class PLSA(Documents, EMEstimator):
    """Probabilistic latent semantic analysis, fitted by EM over the non-zero counts.

    Parameters
    ----------
    n_components : int, default=10
        Number of topics.
    max_iter : int, default=100
        Maximum number of EM iterations (also of a fold-in in ``transform``).
    tol : float, default=1e-4
        Stop when the log-likelihood gains less than ``tol`` times its magnitude.
    random_state : None, int or RandomState, default=None
        The random start: P(z|d) and P(w|z) drawn uniformly, then normalised.
    verbose : int, default=0
    backend : {"auto", "numba", "cython", "numpy"} or None, default=None
    n_threads : int or None, default=None
        Documents (then words) run in parallel; the result is the same for any count.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        P(w | z), each row summing to one (float64).
    doc_topic_ : ndarray of shape (n_samples, n_components)
        P(z | d) of the training documents.
    lower_bounds_ : list of float
        The log-likelihood of every iteration, under its parameters before the update.
    lower_bound_ : float
    n_iter_ : int
    converged_ : bool
    """

    _estimator_type = "transformer"
    _fitted_attributes = ("components_", "n_iter_", "lower_bound_", "converged_",
                          "n_features_in_", "backend_")
    verbose_interval = 1
    _parameter_constraints = {
        "n_components": [Interval(numbers.Integral, 1, None)],
        "max_iter": [Interval(numbers.Integral, 0, None)],
        "tol": [Interval(numbers.Real, 0.0, None)],
        "random_state": ["random_state"],
        "verbose": ["boolean", Interval(numbers.Integral, 0, None)],
        "backend": [None, Options(*BACKENDS)],
        "n_threads": [None, Interval(numbers.Integral, 1, None)],
    }

    def __init__(self, n_components: int = 10, *, max_iter: int = 100, tol: float = 1e-4,
                 random_state: Any = None, verbose: int = 0, backend: Optional[str] = None,
                 n_threads: Optional[int] = None) -> None:
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.backend = backend
        self.n_threads = n_threads

    def __sklearn_is_fitted__(self):
        return hasattr(self, "components_")

    def _corpus_dtype(self, dtype, reset):
        """X's counts in float64, the dtype of PLSA's probabilities."""
        return np.dtype(np.float64)

    # ------------------------------------------------------------------ one pass
    def _pass(self, corpus, doc_topic, fold_in):
        """(the log-likelihood of the corpus, its documents' new P(z|d), the topics' new
        P(w|z), or None for a fold-in) from one EM pass under ``doc_topic`` and
        ``components_``."""
        k, v = self.n_components, corpus.n_words
        word_topic = np.ascontiguousarray(self.components_.T)
        stats = None if fold_in else np.zeros((v, k))
        new = np.empty_like(doc_topic)
        log_lik = 0.0
        for (a, b), (ll, theta, part) in zip(corpus.spans(), corpus.map(
                self, "_chunk_pass", (word_topic, fold_in),
                lambda i, a, b: (doc_topic[a:b],))):
            new[a:b] = theta
            log_lik += ll
            if not fold_in:
                stats += part
        if fold_in:
            return log_lik, new, None
        totals = stats.sum(axis=0)
        topics = np.where(totals > 0, stats / np.where(totals > 0, totals, 1.0), word_topic)
        return log_lik, new, np.ascontiguousarray(topics.T)

    def _chunk_pass(self, chunk, word_topic, fold_in, doc_topic):
        """One chunk's EM pass: (its log-likelihood, its new P(z|d), its (V, K) M-step
        statistics or None for a fold-in)."""
        k, v = self.n_components, word_topic.shape[0]
        part = np.empty((0, k) if fold_in else (v, k))
        out, new = np.empty(chunk.n), np.empty_like(doc_topic)
        self._topic_kernels().plsa_em_pass(chunk.data, chunk.indices, chunk.indptr, doc_topic,
                                           word_topic, new, part, out, self._runtime[1])
        return float(out.sum()), new, None if fold_in else part

    # ------------------------------------------------------------------ the EM engine
    def _em_initialize(self, X, random_state):
        k, (n, v) = self.n_components, X.shape
        doc_topic = random_state.rand(n, k)
        self.doc_topic_ = doc_topic / doc_topic.sum(axis=1, keepdims=True)
        topics = random_state.rand(k, v)
        self.components_ = topics / topics.sum(axis=1, keepdims=True)
        self._last_log_lik = None

    def _em_iterate(self, X):
        log_lik, self.doc_topic_, self.components_ = self._pass(X, self.doc_topic_, False)
        last, self._last_log_lik = self._last_log_lik, log_lik
        converged = last is not None and abs(log_lik - last) < self.tol * abs(log_lik)
        return Iteration(log_lik, converged=bool(converged))

    def _summarize(self, X):
        """(the log-likelihood, no statistics): what the engine records for max_iter=0."""
        return self._pass(X, self.doc_topic_, True)[0], None

    def _get_parameters(self):
        return self.components_.copy(), self.doc_topic_.copy()

    def _set_parameters(self, params):
        self.components_, self.doc_topic_ = params

    # ------------------------------------------------------------------ public API
    def fit(self, X: Any, y: None = None, *, callback: Any = None) -> Self:
        """Fit the topics and the training documents' topic mixtures by EM; returns self."""
        self._validate_params()
        X = self._corpus(X, reset=True)
        if X.n_docs < 1:
            raise ValueError("PLSA needs at least one document.")
        self._runtime = self._resolve_runtime()
        with limit_blas_threads():
            best, _ = self._run_em(X, n_init=1, initialize=True,
                                   random_state=check_random_state(self.random_state),
                                   callback=callback)
        self.n_iter_, self.converged_ = best.n_iter, best.converged
        self.lower_bounds_ = [float(b) for b in best.bounds]
        self.lower_bound_ = self.lower_bounds_[-1] if self.lower_bounds_ else -np.inf
        self.backend_ = self._runtime[0]
        return self

    def fit_transform(self, X: Any, y: None = None) -> Any:
        """P(z | d) of the training documents (``fit(X).doc_topic_``)."""
        return self.fit(X).doc_topic_

    def _fold_in(self, X):
        """(P(z|d) of X's documents by EM with the topics fixed, from uniform mixtures,
        and their log-likelihood under the result)."""
        self._check_is_fitted()
        X = self._corpus(X, reset=False)
        self._runtime = self._resolve_runtime()
        doc_topic = np.full((X.n_docs, self.n_components), 1.0 / self.n_components)
        last = None
        with limit_blas_threads():
            for _ in range(self.max_iter):
                log_lik, doc_topic, _ = self._pass(X, doc_topic, True)
                if last is not None and abs(log_lik - last) < self.tol * abs(log_lik):
                    break
                last = log_lik
            log_lik = self._pass(X, doc_topic, True)[0]
        return doc_topic, log_lik

    def transform(self, X: Any) -> Any:
        """P(z | d) of new documents, folded in (EM over their mixtures, topics fixed)."""
        self._check_is_fitted()
        return self._fold_in(X)[0]

    def score(self, X: Any, y: None = None) -> float:
        """``sum n_dw log P(w | d)`` of X, its documents folded in."""
        self._check_is_fitted()
        return self._fold_in(X)[1]

    def get_feature_names_out(self, input_features: Any = None) -> Any:
        """["plsa0", ...]: one name per topic."""
        self._check_is_fitted()
        return np.array([f"plsa{i}" for i in range(self.n_components)], dtype=object)
