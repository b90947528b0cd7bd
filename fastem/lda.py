"""Latent Dirichlet allocation by variational EM: ``LatentDirichletAllocation``, a
drop-in for scikit-learn's.

X holds word counts, documents in rows (dense, or any scipy.sparse matrix, taken as
CSR and never densified).  K topics have variational Dirichlets ``components_`` (K, V)
over the V words; each document d a variational Dirichlet ``gamma_d`` over the topics.
One EM iteration (Blei, Ng and Jordan 2003; Hoffman, Blei and Bach 2010, as
scikit-learn runs them) is

- E-step: every document's gamma from a fresh start (drawn from Gamma(100, 1/100) with
  the model's ``random_state_``, as scikit-learn draws them) by the fixed-point updates
  of the ``topics`` kernels (``lda_e_step``: see kernels/reference/topics.py), and the
  M-step statistics ``sstats_kw = exp(E[log beta_kw]) sum_d e_dk n_dw / phi_norm_dw``;
- M-step, "batch": ``components_ = topic_word_prior + sstats``; "online" (mini-batches
  of ``batch_size`` documents, in order): ``components_ <- (1 - rho) components_ + rho
  (topic_word_prior + (total documents / batch documents) sstats)``, ``rho_t =
  (learning_offset + t) ** -learning_decay``.

The documents are visited in fixed chunks, each E-step kernel call running its
documents in parallel over fixed slots (the result does not depend on the thread
count), and nothing of size documents x topics is held while fitting: the random starts
are drawn a chunk at a time (the same stream as one draw for all documents) and the
bound (``score``, ``perplexity``) is summed a chunk at a time.  X may also be
``fastem.Chunks`` of dense or sparse pieces or a Dask array (``fastem._topics``): the
same chunks, the same model, bit for bit.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import numpy as np

from ._config import BACKENDS
from ._threads import limit_blas_threads
from ._validation import Interval, Options, check_random_state
from ._topics import Documents
from .base import EMEstimator, Iteration

if TYPE_CHECKING:
    from typing import Any, Optional

    from typing_extensions import Self

def _dirichlet_expectation(alpha):
    """E[log x] for x ~ Dirichlet(alpha) of each row: psi(alpha) - psi(sum alpha), in
    float64."""
    from scipy.special import psi

    alpha = np.asarray(alpha, dtype=np.float64)
    return psi(alpha) - psi(alpha.sum(axis=1))[:, None]


def _dirichlet_log_ratio(prior, alpha, elog, size):
    """E[log p(x | prior) - log q(x | alpha)] summed over the rows of ``alpha`` (each a
    Dirichlet over ``size`` values, ``elog`` its E[log x]): scikit-learn's
    ``_loglikelihood``."""
    from scipy.special import gammaln

    alpha = np.asarray(alpha, dtype=np.float64)
    return float(np.sum((prior - alpha) * elog) + np.sum(gammaln(alpha) - gammaln(prior))
                 + np.sum(gammaln(prior * size) - gammaln(alpha.sum(axis=1))))


class LatentDirichletAllocation(Documents, EMEstimator):
    """Latent Dirichlet allocation with scikit-learn's variational Bayes (batch or
    online), its parameters, defaults, draws and attributes.

    Parameters
    ----------
    n_components : int, default=10
        Number of topics.
    doc_topic_prior : float or None, default=None
        Dirichlet prior of each document's topics (alpha); None: 1 / n_components.
    topic_word_prior : float or None, default=None
        Dirichlet prior of each topic's words (eta); None: 1 / n_components.
    learning_method : {"batch", "online"}, default="batch"
        "batch": every iteration one E-step over all documents, then the M-step;
        "online": an E+M step per mini-batch of ``batch_size`` documents.
    learning_decay, learning_offset : float, default=0.7, 10.0
        The online step size ``(learning_offset + t) ** -learning_decay``.
    max_iter : int, default=10
        Passes over the data.
    batch_size : int, default=128
        Documents per online step.
    evaluate_every : int, default=-1
        Compute the perplexity every this many iterations (0 or less: never) and stop
        when it changes by less than ``perp_tol``.
    total_samples : float, default=1e6
        The number of documents ``partial_fit`` scales its steps to.
    perp_tol : float, default=0.1
    mean_change_tol : float, default=1e-3
        A document's E-step stops when its gamma changes by less than this on average.
    max_doc_update_iter : int, default=100
        At most this many updates of a document's gamma per E-step.
    n_jobs : int or None, default=None
        Accepted for compatibility; the kernels' threads are ``n_threads``.
    verbose : int, default=0
    random_state : None, int or RandomState, default=None
    backend : {"auto", "numba", "cython", "numpy"} or None, default=None
    n_threads : int or None, default=None
        Documents run in parallel on this many threads; the result is the same for any.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The topics' variational Dirichlet parameters (lambda), in X's float dtype.
    exp_dirichlet_component_ : ndarray of shape (n_components, n_features)
        exp(E[log beta]).
    n_batch_iter_, n_iter_ : int
    bound_ : float
        The final perplexity on the training data.
    doc_topic_prior_, topic_word_prior_ : float
    random_state_ : RandomState
    n_features_in_, feature_names_in_
    """

    _estimator_type = "transformer"
    #: (the engine's own per-iteration line never shows: this model prints scikit-learn's)
    verbose_interval = 1 << 62
    _fitted_attributes = ("components_", "exp_dirichlet_component_", "n_batch_iter_",
                          "n_iter_", "doc_topic_prior_", "topic_word_prior_",
                          "n_features_in_", "backend_", "bound_")
    _parameter_constraints = {
        "n_components": [Interval(numbers.Integral, 1, None)],
        "doc_topic_prior": [None, Interval(numbers.Real, 0.0, 1.0)],
        "topic_word_prior": [None, Interval(numbers.Real, 0.0, 1.0)],
        "learning_method": [Options("batch", "online")],
        "learning_decay": [Interval(numbers.Real, 0.0, 1.0)],
        "learning_offset": [Interval(numbers.Real, 1.0, None)],
        "max_iter": [Interval(numbers.Integral, 0, None)],
        "batch_size": [Interval(numbers.Integral, 1, None)],
        "evaluate_every": [Interval(numbers.Integral, None, None)],
        "total_samples": [Interval(numbers.Real, 0.0, None, closed="neither")],
        "perp_tol": [Interval(numbers.Real, 0.0, None)],
        "mean_change_tol": [Interval(numbers.Real, 0.0, None)],
        "max_doc_update_iter": [Interval(numbers.Integral, 0, None)],
        "n_jobs": [None, Interval(numbers.Integral, None, None)],
        "verbose": ["boolean", Interval(numbers.Integral, 0, None)],
        "random_state": ["random_state"],
        "backend": [None, Options(*BACKENDS)],
        "n_threads": [None, Interval(numbers.Integral, 1, None)],
    }

    def __init__(self, n_components: int = 10, *, doc_topic_prior: Optional[float] = None,
                 topic_word_prior: Optional[float] = None, learning_method: str = "batch",
                 learning_decay: float = 0.7, learning_offset: float = 10.0,
                 max_iter: int = 10, batch_size: int = 128, evaluate_every: int = -1,
                 total_samples: float = 1e6, perp_tol: float = 1e-1,
                 mean_change_tol: float = 1e-3, max_doc_update_iter: int = 100,
                 n_jobs: Optional[int] = None, verbose: int = 0, random_state: Any = None,
                 backend: Optional[str] = None, n_threads: Optional[int] = None) -> None:
        self.n_components = n_components
        self.doc_topic_prior = doc_topic_prior
        self.topic_word_prior = topic_word_prior
        self.learning_method = learning_method
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.evaluate_every = evaluate_every
        self.total_samples = total_samples
        self.perp_tol = perp_tol
        self.mean_change_tol = mean_change_tol
        self.max_doc_update_iter = max_doc_update_iter
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.random_state = random_state
        self.backend = backend
        self.n_threads = n_threads

    def __sklearn_is_fitted__(self):
        return hasattr(self, "components_")

    def _required_attributes(self):
        # (partial_fit, as scikit-learn's, sets no bound_)
        return tuple(a for a in super()._required_attributes() if a != "bound_")

    # ------------------------------------------------------------------ E-step
    def _e_step(self, corpus, cal_sstats, random_init, keep, elog_topic=None):
        """(each document's gamma (n, K) if ``keep``, else None; the M-step statistics
        (K, V) float64 if ``cal_sstats``, else None; with ``elog_topic`` (E[log beta] of
        ``components_``), the chunks' bound terms and words: (word term, document term,
        number of words))."""
        k, v = self.n_components, corpus.n_words
        sstats = np.zeros((k, v)) if cal_sstats else None
        kept, word, doc, words = [], 0.0, 0.0, 0.0
        ewt = np.ascontiguousarray(self.exp_dirichlet_component_, dtype=np.float64)
        rs, dtype = getattr(self, "random_state_", None), self.components_.dtype

        def start(i, a, b):
            """The chunk's random start, drawn here in chunk order (one stream, as one
            draw for all documents): sent as the generator's state to a worker."""
            if not random_init:
                return (None,)
            if corpus.distributed:
                state = rs.get_state()
                rs.gamma(100.0, 0.01, (b - a, k))
                return (state,)
            return (rs.gamma(100.0, 0.01, (b - a, k)).astype(dtype, copy=False),)

        for gamma, part, terms in corpus.map(self, "_chunk_e_step",
                                             (ewt, cal_sstats, keep, elog_topic), start):
            if cal_sstats:
                sstats += part
            if elog_topic is not None:
                word, doc, words = word + terms[0], doc + terms[1], words + terms[2]
            if keep:
                kept.append(gamma)
        if cal_sstats:
            sstats *= self.exp_dirichlet_component_
        doc_topic = (np.concatenate(kept) if kept else np.empty((0, k), dtype)) if keep else None
        return doc_topic, sstats, (word, doc, words)

    def _chunk_e_step(self, chunk, ewt, cal_sstats, keep, elog_topic, start):
        """One chunk's E-step from ``start`` (None: ones; an array; or a random
        generator's state to draw it from): (gamma if ``keep``, the chunk's statistics if
        ``cal_sstats``, its (word term, document term, words) with ``elog_topic``)."""
        n, k = chunk.n, self.n_components
        dtype = self.components_.dtype
        if start is None:
            gamma = np.ones((n, k), dtype=dtype)
        elif isinstance(start, np.ndarray):
            gamma = start
        else:
            rs = np.random.RandomState()
            rs.set_state(start)
            gamma = rs.gamma(100.0, 0.01, (n, k)).astype(dtype, copy=False)
        kern, threads = self._topic_kernels(), self._runtime[1]
        part = np.empty((k, ewt.shape[1]) if cal_sstats else (0, ewt.shape[1]))
        kern.lda_e_step(chunk.data, chunk.indices, chunk.indptr, ewt, gamma,
                        float(self.doc_topic_prior_), int(self.max_doc_update_iter),
                        float(self.mean_change_tol), part, threads)
        terms = None
        if elog_topic is not None:
            elog_doc = _dirichlet_expectation(gamma)
            out = np.empty(n)
            kern.lda_word_bound(chunk.data, chunk.indices, chunk.indptr, elog_doc, elog_topic,
                                out, threads)
            terms = (float(out.sum()),
                     _dirichlet_log_ratio(self.doc_topic_prior_, gamma, elog_doc, k),
                     float(chunk.data.sum(dtype=np.float64)))
        return gamma if keep else None, part if cal_sstats else None, terms

    def _bound(self, corpus, sub_sampling=False):
        """(the evidence lower bound of the corpus (scikit-learn's ``_approx_bound``), its
        number of words), by chunks."""
        elog_topic = _dirichlet_expectation(self.components_)
        _, _, (word, doc, words) = self._e_step(corpus, cal_sstats=False, random_init=False,
                                                keep=False, elog_topic=elog_topic)
        score = word + doc
        if sub_sampling:
            score *= float(self.total_samples) / corpus.n_docs
        return score + _dirichlet_log_ratio(self.topic_word_prior_, self.components_,
                                            elog_topic, self.components_.shape[1]), words

    def _perplexity(self, corpus, sub_sampling=False):
        bound, words = self._bound(corpus, sub_sampling)
        if sub_sampling:
            words *= float(self.total_samples) / corpus.n_docs
        return float(np.exp(-bound / words))

    # ------------------------------------------------------------------ M-step
    def _em_step(self, corpus, total_samples, batch_update):
        _, sstats, _ = self._e_step(corpus, cal_sstats=True, random_init=True, keep=False)
        dtype = self.components_.dtype
        if batch_update:
            components = self.topic_word_prior_ + sstats
        else:
            weight = np.power(self.learning_offset + self.n_batch_iter_, -self.learning_decay)
            doc_ratio = float(total_samples) / corpus.n_docs
            components = (self.components_ * (1 - weight)
                          + weight * (self.topic_word_prior_ + doc_ratio * sstats))
        self.components_ = components.astype(dtype)
        self.exp_dirichlet_component_ = np.exp(
            _dirichlet_expectation(self.components_)).astype(dtype)
        self.n_batch_iter_ += 1

    def _init_latent_vars(self, n_features, dtype, random_state):
        k = self.n_components
        self.random_state_ = random_state
        self.n_batch_iter_ = 1
        self.n_iter_ = 0
        self.doc_topic_prior_ = 1.0 / k if self.doc_topic_prior is None else self.doc_topic_prior
        self.topic_word_prior_ = (1.0 / k if self.topic_word_prior is None else
                                  self.topic_word_prior)
        self.components_ = self.random_state_.gamma(100.0, 0.01, (k, n_features)).astype(
            dtype, copy=False)
        self.exp_dirichlet_component_ = np.exp(
            _dirichlet_expectation(self.components_)).astype(dtype)

    # ------------------------------------------------------------------ the EM engine
    def _em_initialize(self, data, random_state):
        self._init_latent_vars(data.shape[1], data.dtype, random_state)
        self._last_perplexity = None

    def _summarize(self, X):
        """(the bound, no statistics): what the engine records for ``max_iter=0``."""
        return -self._perplexity(X), None

    def _em_iterate(self, X):
        """One of scikit-learn's iterations: a batch E+M step, or an online pass of
        mini-batch steps; every ``evaluate_every`` iterations the perplexity, whose change
        below ``perp_tol`` ends the fit."""
        n = X.n_docs
        if self.learning_method == "online":
            for batch in X.batches(self.batch_size):
                self._em_step(batch, total_samples=n, batch_update=False)
        else:
            self._em_step(X, total_samples=n, batch_update=True)
        self._iterations_run += 1
        if self.evaluate_every > 0 and self._iterations_run % self.evaluate_every == 0:
            perplexity = self._perplexity(X)
            if self.verbose:
                print(f"iteration: {self._iterations_run} of max_iter: {self.max_iter}, "
                      f"perplexity: {perplexity:.4f}")
            last, self._last_perplexity = self._last_perplexity, perplexity
            converged = bool(last and abs(last - perplexity) < self.perp_tol)
            return Iteration(-perplexity, converged=converged, slack=np.inf)
        if self.verbose:
            print(f"iteration: {self._iterations_run} of max_iter: {self.max_iter}")
        return Iteration(None, converged=False)

    def _get_parameters(self):
        return (self.components_.copy(), self.exp_dirichlet_component_.copy(),
                np.array([self.n_batch_iter_, self._iterations_run]))

    def _set_parameters(self, params):
        self.components_, self.exp_dirichlet_component_ = params[0], params[1]
        self.n_batch_iter_, self._iterations_run = (int(v) for v in params[2])

    # ------------------------------------------------------------------ public API
    def fit(self, X: Any, y: None = None, *, callback: Any = None) -> Self:
        """Learn the topics of the documents X by variational Bayes (``learning_method``);
        returns self.  ``callback`` as for the mixtures (after every iteration)."""
        self._validate_params()
        X = self._corpus(X, reset=True)
        self._runtime = self._resolve_runtime()
        self._iterations_run = 0
        with limit_blas_threads():
            best, _ = self._run_em(X, n_init=1, initialize=True,
                                   random_state=check_random_state(self.random_state),
                                   callback=callback, max_iter=self.max_iter)
            # scikit-learn counts the iterations before the one whose perplexity converged
            self.n_iter_ = best.n_iter - int(best.converged and self.evaluate_every > 0)
            self.bound_ = self._perplexity(X)
        self.backend_ = self._runtime[0]
        return self

    def partial_fit(self, X: Any, y: None = None) -> Self:
        """Online variational Bayes on the mini-batches of X (``batch_size`` documents, in
        order), the steps scaled to ``total_samples`` documents; returns self."""
        self._validate_params()
        first = not self.__sklearn_is_fitted__()
        X = self._corpus(X, reset=first)
        self._runtime = self._resolve_runtime()
        if first:
            self._init_latent_vars(X.n_words, X.dtype, check_random_state(self.random_state))
            self._iterations_run = 0
        with limit_blas_threads():
            for batch in X.batches(self.batch_size):
                self._em_step(batch, total_samples=self.total_samples, batch_update=False)
        self.backend_ = self._runtime[0]
        return self

    def _inference_input(self, X):
        self._check_is_fitted()
        X = self._corpus(X, reset=False)
        self._runtime = self._resolve_runtime()
        return X

    def transform(self, X: Any, *, normalize: bool = True) -> Any:
        """Each document's topic distribution (n_samples, n_components): its E-step gamma
        from a constant start, normalised to sum to one (``normalize``)."""
        from .dask import is_dask_array

        if is_dask_array(X):  # every document's E-step is its own: a lazy map over blocks
            from functools import partial

            from .dask import map_blocks

            self._check_is_fitted()
            self._check_n_features(X.shape[1], False)
            return map_blocks(partial(self.transform, normalize=normalize), X,
                              self.components_.dtype, self.n_components)
        X = self._inference_input(X)
        with limit_blas_threads():
            doc_topic, _, _ = self._e_step(X, cal_sstats=False, random_init=False, keep=True)
        if normalize:
            doc_topic /= doc_topic.sum(axis=1)[:, np.newaxis]
        return doc_topic

    def fit_transform(self, X: Any, y: None = None, *, normalize: bool = True) -> Any:
        """``fit(X).transform(X)``."""
        return self.fit(X).transform(X, normalize=normalize)

    def score(self, X: Any, y: None = None) -> float:
        """The evidence lower bound of X (an approximate log-likelihood)."""
        X = self._inference_input(X)
        with limit_blas_threads():
            return self._bound(X)[0]

    def perplexity(self, X: Any, sub_sampling: bool = False) -> float:
        """exp(-bound / number of words) of X (``sub_sampling``: the bound and the word
        count scaled to ``total_samples`` documents)."""
        X = self._inference_input(X)
        with limit_blas_threads():
            return self._perplexity(X, sub_sampling)

    def get_feature_names_out(self, input_features: Any = None) -> Any:
        """["latentdirichletallocation0", ...]: one name per topic, as scikit-learn's."""
        self._check_is_fitted()
        return np.array([f"latentdirichletallocation{i}" for i in range(self.n_components)],
                        dtype=object)
