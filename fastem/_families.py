"""Every model family, declared once.

A family is a kernel module, ``fastem/kernels/{reference,numba,cython}/<name>``, with the
same kernel names and positional signatures in every backend (inputs, output buffers,
then ``n_threads``), and the estimators that run on it.  Everything that needs the list
reads it here: the backend registry (``_dispatch``), the Cython build (``setup.py``,
which runs this file without importing fastem, so it imports nothing of fastem at the
top), ``fastem warmup`` (which runs every declared call), model files (``_persist``),
the ``fastem`` command and the generated contract tests (``tests/test_contract.py``).

Adding a family: write the three kernel modules, add a ``Family`` below with its
kernels, a ``calls`` function and its estimators, and list the estimators in
``fastem/__init__.py``.

``calls(dtype, n, d, k, rng)`` returns the kernel calls of one small case, in order,
as (kernel name, positional arguments without ``n_threads``): realistic inputs of
``n`` rows, ``d`` features and ``k`` components (float ``dtype`` data, zero weights
included, an empty cluster where k > 1) on fresh output buffers; a later call may
read what an earlier one wrote (the bounded K-means step first builds its bounds, then
uses them).  Warm-up runs the calls of a tiny case; the contract tests run them on
every backend, compare each against the reference and across thread counts.
"""

from typing import Callable, NamedTuple


class Family(NamedTuple):
    name: str  # the kernel module's name
    kernels: tuple  # the names every backend module defines
    calls: Callable  # calls(dtype, n, d, k, rng) -> [(kernel name, args)], see above
    estimators: tuple  # (CLI name, class name in fastem) of each estimator
    #: {kernel: parameters} whose values a backend chooses within the kernel's contract
    #: (valid but backend-specific bounds, work counters): checked for thread invariance,
    #: not against the reference
    loose: dict = {}


def _weights(n, rng):
    w = rng.uniform(0.5, 2.0, n)
    w[::5] = 0.0  # zero weights: their rows must not count
    return w


def _kmeans_calls(dtype, n, d, k, rng):
    import numpy as np

    from .kmeans import _group_centers, _half_separation

    X = rng.standard_normal((n, d)).astype(dtype)
    centers = np.ascontiguousarray(X[rng.integers(0, n, k)])
    if k > 1:
        centers[-1] += 100.0  # far from every row: an empty cluster
    w = _weights(n, rng)
    labels, closest = np.empty(n, np.int32), np.full(n, np.inf)
    calls = [
        ("assign_labels", (X, centers, labels, np.empty(n))),
        ("lloyd_step", (X, w, centers, np.full(n, -1, np.int32), np.empty((k, d)), np.empty(k))),
        ("inertia", (X, w, centers, labels)),
        ("kmeanspp_update_closest", (X, centers[0], closest)),
        ("kmeanspp_trial_potentials", (X, w, centers, closest, np.empty(k))),
    ]
    # the bounded step ("auto" runs Hamerly from K = 64): centers in two groups (one
    # when k = 1); a full step builds the bounds, a second one with the same centers
    # (no drift) prunes with them
    group_of, start, members = _group_centers(centers, min(2, k))
    state = (np.full(n, -1, np.int32), np.zeros(n), np.zeros((n, start.size - 1)))
    geometry = (np.zeros(k), _half_separation(centers), group_of, start, members)
    for full in (True, False):
        calls.append(("bounded_step", (X, w, centers, *geometry, *state, full,
                                       np.empty((k, d)), np.empty(k), np.zeros(3))))
    # the same rows as CSR (about half of them zero: empty rows too), with int32 and
    # int64 indices, and indptr not starting at 0 (a chunk of a larger matrix)
    S = np.where(rng.uniform(size=(n, d)) < 0.5, X, 0).astype(dtype)
    rows, cols = np.nonzero(S)
    for index in (np.int32, np.int64):
        csr = (np.concatenate([np.zeros(2, dtype), S[rows, cols]]),
               np.concatenate([[0, 0], cols]).astype(index),
               (np.searchsorted(rows, np.arange(n + 1)) + 2).astype(index))
        closest = np.full(n, np.inf)
        calls += [
            ("assign_labels_csr", (*csr, centers, np.empty(n, np.int32), np.empty(n))),
            ("lloyd_step_csr", (*csr, w, centers, np.full(n, -1, np.int32), np.empty((k, d)),
                                np.empty(k))),
            ("inertia_csr", (*csr, w, centers, labels)),
            ("kmeanspp_update_closest_csr", (*csr, centers[0], closest)),
            ("kmeanspp_trial_potentials_csr", (*csr, w, centers, closest, np.empty(k))),
        ]
    return calls


_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def _gaussian_mixture_calls(dtype, n, d, k, rng):
    import numpy as np

    X = rng.standard_normal((n, d)).astype(dtype)
    means = np.ascontiguousarray(X[rng.integers(0, n, k)]).astype(dtype)
    consts = np.log(np.full(k, 1.0 / k)) - 0.5 * d * np.log(2 * np.pi)
    w = _weights(n, rng)

    def upper(m):  # a Cholesky factor of a precision: upper triangular, positive diagonal
        return (np.triu(0.2 * rng.standard_normal((m, d, d)), 1)
                + np.eye(d) * rng.uniform(0.5, 1.5, (m, 1, 1))).astype(dtype)

    prec_chol = {"full": upper(k), "tied": upper(1)[0],
                 "diag": rng.uniform(0.5, 1.5, (k, d)).astype(dtype),
                 "spherical": rng.uniform(0.5, 1.5, k).astype(dtype)}
    xx = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}
    calls = []
    for cov in _COVARIANCE_TYPES:
        p = prec_chol[cov]
        calls += [
            (f"estimate_log_prob_{cov}", (X, means, p, consts, np.empty((n, k)))),
            (f"estimate_log_norm_{cov}", (X, means, p, consts, np.empty(n),
                                          np.empty(n, np.int32))),
            (f"accumulate_stats_{cov}", (X, w, means, p, consts, means, np.empty(k),
                                         np.empty((k, d)), np.empty(xx[cov]))),
        ]
    return calls


def _discrete_mixture_calls(dtype, n, d, k, rng):
    import numpy as np

    counts = rng.poisson(1.0, (n, d)).astype(dtype)
    coef = np.ascontiguousarray(np.log(rng.dirichlet(np.ones(d), k).T))  # (D, K): log theta
    obs_coef = np.log(rng.uniform(0.2, 0.8, (d, k)))
    offset = np.log(np.full(k, 1.0 / k))
    w = _weights(n, rng)
    with_nan = counts.copy()
    with_nan[::3, 0] = np.nan  # missing entries, marginalised
    calls = []
    for X, missing in ((counts, False), (with_nan, True)):
        calls += [
            ("estimate_log_prob_dense", (X, coef, obs_coef, offset, missing, np.empty((n, k)))),
            ("estimate_log_norm_dense", (X, coef, obs_coef, offset, missing, np.empty(n),
                                         np.empty(n, np.int32))),
            ("accumulate_stats_dense", (X, w, coef, obs_coef, offset, missing, np.empty(k),
                                        np.empty((d, k)), np.empty((d, k)))),
        ]
    rows, cols = np.nonzero(counts)
    for index in (np.int32, np.int64):
        csr = (np.ascontiguousarray(counts[rows, cols]), cols.astype(index),
               np.searchsorted(rows, np.arange(n + 1)).astype(index))
        calls += [
            ("estimate_log_prob_csr", (*csr, coef, offset, np.empty((n, k)))),
            ("estimate_log_norm_csr", (*csr, coef, offset, np.empty(n), np.empty(n, np.int32))),
            ("accumulate_stats_csr", (*csr, w, coef, offset, np.empty(k), np.empty((d, k)))),
        ]
    return calls


def _hmm_calls(dtype, n, d, k, rng):
    """A batch of sequences over n rows (one step, an empty sequence, then two pieces),
    some transitions forbidden, an unobserved step; both forms, Viterbi, and the
    M-steps' weighted moments and symbol counts.  (The HMM
    kernels take float64 log-probabilities whatever the data's dtype.)"""
    import numpy as np

    start = rng.dirichlet(np.ones(k))
    trans = rng.dirichlet(np.ones(k), size=k)
    if k > 1:
        trans[0] = 0.0
        trans[0, k - 1] = 1.0  # state 0 always moves to the last state
    with np.errstate(divide="ignore"):
        log_start, log_trans = np.log(start), np.log(trans)
    log_emission = rng.normal(-3.0, 2.0, size=(n, k))
    log_emission[n // 2] = 0.0  # unobserved
    # one step, an empty sequence, then two pieces
    offsets = np.array([0, min(n, 1), min(n, 1), max(min(n, 1), n // 2), n], dtype=np.int64)
    s = offsets.shape[0] - 1
    calls = [("forward_backward", (log_start, log_trans, log_emission, offsets, scaled,
                                   np.empty(s), np.empty((n, k)), np.empty((s, k, k))))
             for scaled in (True, False)]
    calls += [("forward", (log_start, log_trans, log_emission, offsets, scaled, np.empty(s),
                           np.empty((s, k)))) for scaled in (True, False)]
    calls.append(("decode_viterbi", (log_start, log_trans, log_emission, offsets,
                                     np.empty(s), np.empty(n, np.int32))))
    # the Gaussian HMM's M-step moments, squares and outer products, with posteriors
    X = rng.standard_normal((n, d)).astype(dtype)
    post = rng.dirichlet(np.ones(k), size=n)
    post[:, 0] = 0.0  # a state with no occupancy
    for rows in (1, d):
        calls.append(("weighted_moments", (X, X.mean(axis=0, dtype=np.float64), post,
                                           np.empty(k), np.empty((k, d)),
                                           np.empty((k, rows, d)))))
    # a categorical HMM's expected emissions: symbols 0..d (the last one never seen)
    calls.append(("symbol_counts", (rng.integers(0, d, n).astype(np.int64), post,
                                    np.empty((k, d + 1)))))
    return calls


def _topics_calls(dtype, n, d, k, rng):
    import numpy as np

    # n documents over d words: counts, an empty document, a word no document has
    counts = rng.poisson(1.0, size=(n, d)).astype(dtype)
    counts[0] = 0.0
    if d > 1:
        counts[:, -1] = 0.0
    indptr = np.concatenate([[0], np.cumsum((counts > 0).sum(axis=1))]).astype(np.int64)
    indices = np.nonzero(counts)[1].astype(np.int64)
    data = counts[counts > 0]
    topics = rng.gamma(100.0, 0.01, (k, d))
    from scipy.special import psi

    elog = psi(topics) - psi(topics.sum(axis=1))[:, None]
    start = rng.gamma(100.0, 0.01, (n, k)).astype(dtype)
    calls = [("lda_e_step", (data, indices, indptr, np.exp(elog), start.copy(), 0.1, 30, 1e-3,
                             np.empty((k, d)))),
             ("lda_e_step", (data, indices, indptr, np.exp(elog), np.ones((n, k), dtype),
                             0.1, 30, 1e-3, np.empty((0, d))))]
    elog_doc = psi(start.astype(np.float64)) - psi(start.sum(axis=1, dtype=np.float64))[:, None]
    calls.append(("lda_word_bound", (data, indices, indptr, elog_doc, elog, np.empty(n))))
    theta = rng.dirichlet(np.ones(k), n).astype(dtype)
    beta = np.ascontiguousarray(rng.dirichlet(np.ones(d), k).T)
    for stats in (np.empty((d, k)), np.empty((0, k))):  # a fit's pass, a fold-in's
        calls.append(("plsa_em_pass", (data, indices, indptr, theta, beta,
                                       np.empty((n, k), dtype), stats, np.empty(n))))
    return calls


def _factor_analysis_calls(dtype, n, d, k, rng):
    """The two passes of a fit's moments: the mean (about zero, squares only), then the
    outer products about it; unit weights and zero weights."""
    import numpy as np

    X = (rng.standard_normal((n, d)) * 3.0 + 10.0).astype(dtype)
    w = _weights(n, rng)[:, None]
    return [("weighted_moments", (X, np.zeros(d), w, np.empty(1), np.empty((1, d)),
                                  np.empty((1, 1, d)))),
            ("weighted_moments", (X, X.mean(axis=0, dtype=np.float64), np.ones((n, 1)),
                                  np.empty(1), np.empty((1, d)), np.empty((1, d, d)))),
            *_mixture_of_factors_calls(dtype, n, d, k, rng)]


def _mixture_of_factors_calls(dtype, n, d, k, rng):
    """The mixture of factor analyzers' E-step: q = 2 factors (1 for 2 features), an
    empty component, missing entries (a row with most missing and one with all, where
    there are rows enough)."""
    import numpy as np

    q = 1 if d <= 2 else 2
    X = rng.standard_normal((n, d)).astype(dtype)
    X[rng.random((n, d)) < 0.1] = np.nan
    if n > 3:
        X[1, : d - 1] = np.nan
        X[2] = np.nan
    means = rng.standard_normal((k, d))
    loadings = rng.standard_normal((k, q, d))
    inv_noise = rng.uniform(0.5, 2.0, (k, d))
    log_weights = np.log(np.full(k, 1.0 / k))
    if k > 1:
        log_weights[-1] = -np.inf
    p = q + 1
    return [("factor_log_prob", (X, means, loadings, inv_noise, log_weights,
                                 np.empty((n, k)))),
            ("factor_stats", (X, _weights(n, rng), means, loadings, inv_noise, log_weights,
                              np.empty(k), np.empty((k, d)), np.empty((k, p, d)),
                              np.empty((k, d)), np.empty((k, p, p)),
                              np.empty((k, d, p, p))))]


FAMILIES = (
    Family("kmeans",
           ("assign_labels", "lloyd_step", "inertia", "kmeanspp_update_closest",
            "kmeanspp_trial_potentials", "bounded_step", "assign_labels_csr", "lloyd_step_csr",
            "inertia_csr", "kmeanspp_update_closest_csr", "kmeanspp_trial_potentials_csr"),
           _kmeans_calls, (("kmeans", "KMeans"), ("minibatch", "MiniBatchKMeans")),
           loose={"bounded_step": ("upper", "lower", "stats")}),
    Family("gaussian_mixture",
           tuple(f"{kind}_{cov}" for cov in _COVARIANCE_TYPES
                 for kind in ("estimate_log_prob", "estimate_log_norm", "accumulate_stats")),
           _gaussian_mixture_calls, (("gmm", "GaussianMixture"),)),
    Family("discrete_mixture",
           tuple(f"{kind}_{layout}" for layout in ("dense", "csr")
                 for kind in ("estimate_log_prob", "estimate_log_norm", "accumulate_stats")),
           _discrete_mixture_calls,
           (("bernoulli", "BernoulliMixture"), ("multinomial", "MultinomialMixture"),
            ("categorical", "CategoricalMixture"))),
    Family("hmm", ("forward_backward", "forward", "decode_viterbi", "weighted_moments",
                   "symbol_counts"),
           _hmm_calls,
           (("gaussian-hmm", "GaussianHMM"), ("gmm-hmm", "GMMHMM"),
            ("categorical-hmm", "CategoricalHMM"), ("poisson-hmm", "PoissonHMM"),
            ("multinomial-hmm", "MultinomialHMM"))),
    Family("topics", ("lda_e_step", "lda_word_bound", "plsa_em_pass"), _topics_calls,
           (("lda", "LatentDirichletAllocation"), ("plsa", "PLSA"))),
    Family("factor_analysis", ("weighted_moments", "factor_log_prob", "factor_stats"),
           _factor_analysis_calls,
           (("fa", "FactorAnalysis"), ("ppca", "PPCA"), ("mfa", "MixtureOfFactorAnalyzers"))),
)

#: The family names, in declaration order.
NAMES = tuple(f.name for f in FAMILIES)
#: The estimators' names in the ``fastem`` command (``fastem fit <name> ...``).
CLI_NAMES = tuple(cli for f in FAMILIES for cli, _ in f.estimators)


def family(name):
    """The ``Family`` called ``name``."""
    for f in FAMILIES:
        if f.name == name:
            return f
    raise KeyError(name)


def family_of(cls):
    """The name of the family whose kernels the estimator class ``cls`` (or the declared
    class it derives from) runs on."""
    for klass in cls.__mro__:
        for f in FAMILIES:
            if any(name == klass.__name__ for _, name in f.estimators):
                return f.name
    raise TypeError(f"{cls.__name__} is not a declared fastem estimator (fastem/_families.py)")


def estimator_classes():
    """{CLI name: estimator class} of every declared estimator, in declaration order."""
    import fastem

    return {cli: getattr(fastem, cls) for f in FAMILIES for cli, cls in f.estimators}


def run_calls(kern, calls, n_threads):
    """Run ``calls`` on the kernel module ``kern``: (kernel name, return value, {parameter
    name: a copy of its array after the call}) of each call (outputs, and inputs that
    must be unchanged)."""
    import inspect

    import numpy as np

    out = []
    for name, args in calls:
        func = getattr(kern, name)
        params = list(inspect.signature(func).parameters)
        ret = func(*args, n_threads)
        out.append((name, ret, {p: np.array(a) for p, a in zip(params, args)
                                if isinstance(a, np.ndarray)}))
    return out
