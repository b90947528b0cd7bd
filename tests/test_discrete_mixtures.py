"""BernoulliMixture, MultinomialMixture and CategoricalMixture: hand-derived EM steps,
brute-force enumeration of the latent variable, missing entries, the EM invariant,
weights, threads, recovery and input errors."""

import warnings
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import BACKENDS
from scipy import stats

from fastem import BernoulliMixture, CategoricalMixture, MultinomialMixture
from fastem._dispatch import backend_unavailable_reason
from fastem.exceptions import ConvergenceWarning

DISCRETE = [b for b in BACKENDS if backend_unavailable_reason(b, "discrete_mixture") is None]


@pytest.fixture(params=DISCRETE)
def backend(request):
    return request.param


def quiet_fit(model, X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, **kw)


# ----------------------------------------------------------------- data with known models
def bernoulli_data(n, *, seed=0, missing=0.0, n_trials=1):
    rng = np.random.default_rng(seed)
    mu = np.array([[0.85, 0.8, 0.2, 0.1, 0.7, 0.3], [0.15, 0.25, 0.9, 0.7, 0.4, 0.6]])
    z = rng.choice(2, size=n, p=[0.4, 0.6])
    X = rng.binomial(n_trials, mu[z]).astype(np.float64)
    X[rng.random(X.shape) < missing] = np.nan
    return X, z, mu


def categorical_data(n, *, seed=0, missing=0.0):
    rng = np.random.default_rng(seed)
    cats = [3, 2, 4, 3]
    theta = [rng.dirichlet(np.full(c, 0.7), 2) for c in cats]
    z = rng.choice(2, size=n, p=[0.3, 0.7])
    X = np.stack([[rng.choice(c, p=t[k]) for k in z] for c, t in zip(cats, theta)], axis=1)
    X[rng.random(X.shape) < missing] = -1
    return X, z, theta


def multinomial_data(n, *, seed=0, n_words=30):
    rng = np.random.default_rng(seed)
    theta = rng.dirichlet(np.full(n_words, 0.3), 2)
    z = rng.choice(2, size=n, p=[0.5, 0.5])
    X = np.stack([rng.multinomial(rng.integers(5, 40), theta[k]) for k in z]).astype(np.float64)
    return X, z, theta


# ----------------------------------------------------------------- the three coins
def test_three_coins_one_em_step_by_hand(backend):
    """Coin A (P(B) = 0.3) picks coin B (heads 0.3) or coin C (heads 0.6), which is
    tossed 3 times; we see HHH, TTT, HHH, TTT, HHH.  The E and M steps are derived
    here in exact rational arithmetic."""
    heads = [3, 0, 3, 0, 3]
    lam, p, q = Fraction(3, 10), Fraction(3, 10), Fraction(6, 10)
    joint_b = [lam * p**h * (1 - p)**(3 - h) for h in heads]
    joint_c = [(1 - lam) * q**h * (1 - q)**(3 - h) for h in heads]
    post_b = [b / (b + c) for b, c in zip(joint_b, joint_c)]  # P(coin B | tosses)
    new_lam = sum(post_b) / 5
    new_p = sum(r * h for r, h in zip(post_b, heads)) / (3 * sum(post_b))
    new_q = sum((1 - r) * h for r, h in zip(post_b, heads)) / (3 * sum(1 - r for r in post_b))
    mean_ll = sum(np.log(float(b + c)) for b, c in zip(joint_b, joint_c)) / 5
    # the same model twice: head counts out of 3 trials, and the 3 tosses as features
    counts = np.array(heads, dtype=float)[:, None]
    tosses = np.array([[1.0] * 3 if h == 3 else [0.0] * 3 for h in heads])
    for X, n_trials in ((counts, 3), (tosses, 1)):
        d = X.shape[1]
        bm = quiet_fit(BernoulliMixture(2, n_trials=n_trials, alpha=1e-12, max_iter=1, tol=0,
                                        weights_init=[0.3, 0.7], means_init=[[0.3] * d, [0.6] * d],
                                        backend=backend), X)
        np.testing.assert_allclose(bm.weights_, [float(new_lam), 1 - float(new_lam)], rtol=1e-9)
        np.testing.assert_allclose(bm.means_, [[float(new_p)] * d, [float(new_q)] * d], rtol=1e-9)
        assert bm.lower_bounds_[0] == pytest.approx(mean_ll, rel=1e-9)


# ----------------------------------------------------------------- brute-force enumeration
def _brute_force_bernoulli(X, weights, mu, n_trials):
    """log p(x, k) by enumerating k, each observed feature's binomial pmf explicitly."""
    lp = np.zeros((X.shape[0], len(weights)))
    for k in range(len(weights)):
        pmf = stats.binom.logpmf(np.nan_to_num(X), n_trials, mu[k])
        lp[:, k] = np.log(weights[k]) + np.where(np.isnan(X), 0.0, pmf).sum(axis=1)
    return lp


def _brute_force_categorical(X, weights, tables):
    lp = np.zeros((X.shape[0], len(weights)))
    for k in range(len(weights)):
        lp[:, k] = np.log(weights[k])
        for j, t in enumerate(tables):
            observed = X[:, j] >= 0
            lp[observed, k] += np.log(t[k, X[observed, j]])
    return lp


def _brute_force_multinomial(X, weights, theta):
    n = X.sum(axis=1)
    return np.stack([np.log(weights[k]) + stats.multinomial.logpmf(X, n, theta[k])
                     for k in range(len(weights))], axis=1)


def _check_against_enumeration(model, X, lp):
    norm = np.logaddexp.reduce(lp, axis=1)
    np.testing.assert_allclose(model.score_samples(X), norm, rtol=1e-10)
    np.testing.assert_allclose(model.predict_proba(X), np.exp(lp - norm[:, None]), atol=1e-10)
    np.testing.assert_array_equal(model.predict(X), np.argmax(lp, axis=1))


def test_bernoulli_densities_by_enumeration(backend):
    X, _, mu = bernoulli_data(300, seed=1, missing=0.2, n_trials=4)
    w = np.array([0.35, 0.65])
    bm = quiet_fit(BernoulliMixture(2, n_trials=4, max_iter=0, weights_init=w, means_init=mu,
                                    backend=backend), X)
    _check_against_enumeration(bm, X, _brute_force_bernoulli(X, w, mu, 4))


def test_categorical_densities_by_enumeration(backend):
    X, _, theta = categorical_data(300, seed=2, missing=0.2)
    w = np.array([0.25, 0.75])
    cm = quiet_fit(CategoricalMixture(2, max_iter=0, weights_init=w, means_init=theta,
                                      backend=backend), X)
    _check_against_enumeration(cm, X, _brute_force_categorical(X, w, theta))


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_multinomial_densities_by_enumeration(backend, sparse):
    X, _, theta = multinomial_data(200, seed=3)
    w = np.array([0.45, 0.55])
    Xin = sp.csr_matrix(X) if sparse else X
    mm = quiet_fit(MultinomialMixture(2, max_iter=0, weights_init=w, means_init=theta,
                                      backend=backend), Xin)
    _check_against_enumeration(mm, Xin, _brute_force_multinomial(X, w, theta))


# ----------------------------------------------------------------- missing entries, by hand
def test_bernoulli_missing_entries_em_step_by_hand(backend):
    """One EM step with missing entries, computed with their terms removed by hand."""
    alpha, m = 0.5, 2
    X, _, mu = bernoulli_data(400, seed=4, missing=0.3, n_trials=m)
    w0 = np.array([0.5, 0.5])
    lp = _brute_force_bernoulli(X, w0, mu, m)
    resp = np.exp(lp - np.logaddexp.reduce(lp, axis=1)[:, None])
    observed = ~np.isnan(X)
    successes = resp.T @ np.nan_to_num(X)  # only observed entries count
    trials = m * (resp.T @ observed)  # each feature's own observed trials
    expected_mu = (successes + alpha) / (trials + 2 * alpha)
    bm = quiet_fit(BernoulliMixture(2, n_trials=m, alpha=alpha, max_iter=1, tol=0,
                                    weights_init=w0, means_init=mu, backend=backend), X)
    np.testing.assert_allclose(bm.means_, expected_mu, rtol=1e-10)
    np.testing.assert_allclose(bm.weights_, resp.mean(axis=0), rtol=1e-10)


def test_categorical_missing_entries_em_step_by_hand(backend):
    alpha = 0.25
    X, _, theta = categorical_data(400, seed=5, missing=0.3)
    w0 = np.array([0.5, 0.5])
    lp = _brute_force_categorical(X, w0, theta)
    resp = np.exp(lp - np.logaddexp.reduce(lp, axis=1)[:, None])
    cm = quiet_fit(CategoricalMixture(2, alpha=alpha, max_iter=1, tol=0, weights_init=w0,
                                      means_init=theta, backend=backend), X)
    for j, t in enumerate(theta):
        counts = np.stack([resp[X[:, j] == c].sum(axis=0) for c in range(t.shape[1])], axis=1)
        expected = (counts + alpha) / (counts.sum(axis=1, keepdims=True) + t.shape[1] * alpha)
        np.testing.assert_allclose(cm.probabilities_[j], expected, rtol=1e-10)


# ----------------------------------------------------------------- EM invariants
def _models(backend, **kw):
    return [
        (BernoulliMixture(3, backend=backend, **kw), bernoulli_data(600, seed=6, missing=0.1)[0]),
        (MultinomialMixture(3, backend=backend, **kw), sp.csr_matrix(multinomial_data(300)[0])),
        (CategoricalMixture(3, backend=backend, **kw), categorical_data(600, missing=0.1)[0]),
    ]


@pytest.mark.parametrize("alpha", [1e-3, 2.0])
def test_lower_bound_never_decreases(backend, alpha):
    for model, X in _models(backend, alpha=alpha, max_iter=60, tol=0, random_state=0,
                            init_params="random"):
        bounds = np.array(quiet_fit(model, X).lower_bounds_)
        assert np.all(np.diff(bounds) >= -1e-12 * np.abs(bounds[1:])), type(model).__name__


@pytest.mark.parametrize("backend_name", [b for b in DISCRETE if b != "numpy"])
def test_fit_bit_identical_for_any_thread_count(backend_name):
    for n_threads in (1, 2, 3):
        fits = [quiet_fit(model, X) for model, X in
                _models(backend_name, max_iter=10, random_state=0, n_threads=n_threads)]
        params = [(f.weights_, f.lower_bound_, getattr(f, "means_", None)) for f in fits]
        if n_threads == 1:
            first = params
            continue
        for a, b in zip(first, params):
            assert np.array_equal(a[0], b[0]) and a[1] == b[1]
            assert a[2] is None or np.array_equal(a[2], b[2])


@pytest.mark.parametrize("model", ["bernoulli", "multinomial-csr", "categorical"])
def test_integer_weights_equal_repeated_rows(backend, model):
    if model == "bernoulli":
        X, _, init = bernoulli_data(300, seed=7, missing=0.1)
        cls, repeat = BernoulliMixture, lambda w: np.repeat(X, w, axis=0)
    elif model == "categorical":
        X, _, init = categorical_data(300, seed=7, missing=0.1)
        cls, repeat = CategoricalMixture, lambda w: np.repeat(X, w, axis=0)
    else:
        dense, _, init = multinomial_data(300, seed=7)
        X = sp.csr_matrix(dense)
        cls, repeat = MultinomialMixture, lambda w: sp.csr_matrix(np.repeat(dense, w, axis=0))
    w = np.random.default_rng(0).integers(0, 4, X.shape[0])
    kw = dict(max_iter=25, tol=0, weights_init=[0.5, 0.5], means_init=init, backend=backend)
    weighted = quiet_fit(cls(2, **kw), X, sample_weight=w)
    repeated = quiet_fit(cls(2, **kw), repeat(w))
    assert weighted.lower_bound_ == pytest.approx(repeated.lower_bound_, rel=1e-10)
    np.testing.assert_allclose(weighted.weights_, repeated.weights_, rtol=1e-9)


def test_warm_start_continues_where_the_last_fit_stopped(backend):
    X = categorical_data(500, seed=18, missing=0.1)[0]
    kw = dict(max_iter=3, tol=0, random_state=0, backend=backend)
    warm = CategoricalMixture(3, warm_start=True, **kw)
    quiet_fit(warm, X)
    quiet_fit(warm, X)
    straight = quiet_fit(CategoricalMixture(3, **dict(kw, max_iter=6)), X)
    assert warm.lower_bound_ == pytest.approx(straight.lower_bound_, rel=1e-12)
    for a, b in zip(warm.probabilities_, straight.probabilities_):
        np.testing.assert_allclose(a, b, rtol=1e-10)


def test_sparse_and_dense_multinomial_fits_agree(backend):
    X = multinomial_data(300, seed=8)[0]
    kw = dict(max_iter=20, tol=0, random_state=0, backend=backend)
    dense = quiet_fit(MultinomialMixture(2, **kw), X)
    csr = quiet_fit(MultinomialMixture(2, **kw), sp.csr_matrix(X))
    assert dense.lower_bound_ == pytest.approx(csr.lower_bound_, rel=1e-12)
    np.testing.assert_allclose(dense.means_, csr.means_, rtol=1e-10)


def test_float32_and_float64_bernoulli_agree(backend):
    X = bernoulli_data(400, seed=9, missing=0.1)[0]
    kw = dict(max_iter=10, tol=0, random_state=0, backend=backend)
    a = quiet_fit(BernoulliMixture(2, **kw), X)
    b = quiet_fit(BernoulliMixture(2, **kw), X.astype(np.float32))
    assert a.lower_bound_ == pytest.approx(b.lower_bound_, rel=1e-12)


@pytest.mark.parametrize("kind", ["bernoulli", "multinomial-csr"])
def test_fit_holds_no_copy_of_the_data(kind):
    """Extra memory is O(N) vectors and O(D x K) tables: never a copy of the data nor an
    N x K matrix (tracemalloc sees numpy's allocations made from Python)."""
    import tracemalloc

    if kind == "bernoulli":
        X = bernoulli_data(40_000, seed=16, missing=0.1)[0]
        X = np.hstack([X, X, X])  # D = 18: the N-vectors are small next to X
        size, model = X.nbytes, BernoulliMixture(8, max_iter=2, tol=0, random_state=0)
    else:
        X = sp.csr_matrix(multinomial_data(40_000, seed=17, n_words=400)[0])
        size = X.data.nbytes + X.indices.nbytes
        model = MultinomialMixture(8, max_iter=2, tol=0, random_state=0)
    quiet_fit(model, X[:500])  # compile / load the kernels outside the measurement
    tracemalloc.start()
    try:
        quiet_fit(model, X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.4 * size, f"peak {peak / 2**20:.1f} MiB for data of {size / 2**20:.1f} MiB"


# ----------------------------------------------------------------- recovery
def _match(estimated, true):
    """Permutation of the estimated components that best matches the true ones."""
    order = [np.argmin([np.abs(e - t).sum() for e in estimated]) for t in true]
    assert sorted(order) == list(range(len(true))), "two true components matched one estimate"
    return order


def test_recovers_bernoulli_parameters():
    # N = 20,000: the standard error of a success probability estimated from ~8,000
    # samples is at most sqrt(0.25 / 8000) = 0.0056; posterior overlap inflates it a
    # little, so 0.03 (over 5 standard errors) can only fail if EM lands elsewhere.
    X, _, mu = bernoulli_data(20_000, seed=10, missing=0.1)
    bm = BernoulliMixture(2, n_init=3, random_state=0).fit(X)
    order = _match(bm.means_, mu)
    np.testing.assert_allclose(bm.means_[order], mu, atol=0.03)
    np.testing.assert_allclose(bm.weights_[order], [0.4, 0.6], atol=0.03)


def test_recovers_categorical_parameters():
    # 20,000 samples, smallest class 30%: standard errors of the table entries are
    # below sqrt(0.25 / 6000) = 0.0065; 0.035 allows over 5 of them.
    X, _, theta = categorical_data(20_000, seed=11, missing=0.1)
    cm = CategoricalMixture(2, n_init=3, random_state=0).fit(X)
    flat_est = np.hstack(cm.probabilities_)
    order = _match(flat_est, np.hstack(theta))
    np.testing.assert_allclose(flat_est[order], np.hstack(theta), atol=0.035)
    np.testing.assert_allclose(cm.weights_[order], [0.3, 0.7], atol=0.035)


def test_recovers_multinomial_parameters():
    # ~1,500 documents of ~22 words per component: ~33,000 words per theta_k, so
    # each entry's standard error is below sqrt(0.25 / 33000) = 0.003; 0.015 is 5 of them.
    X, _, theta = multinomial_data(3000, seed=12)
    mm = MultinomialMixture(2, n_init=3, random_state=0).fit(sp.csr_matrix(X))
    order = _match(mm.means_, theta)
    np.testing.assert_allclose(mm.means_[order], theta, atol=0.015)


def test_sample_draws_from_the_model():
    X, _, mu = bernoulli_data(10, seed=13, n_trials=5)
    bm = quiet_fit(BernoulliMixture(2, n_trials=5, max_iter=0, weights_init=[0.4, 0.6],
                                    means_init=mu, random_state=0), X)
    S, y = bm.sample(20_000)
    assert S.min() >= 0 and S.max() <= 5 and np.array_equal(S, np.round(S))
    assert np.mean(y == 1) == pytest.approx(0.6, abs=0.02)
    np.testing.assert_allclose(S[y == 0].mean(axis=0) / 5, mu[0], atol=0.02)
    Xc, _, theta = categorical_data(10, seed=14)
    cm = quiet_fit(CategoricalMixture(2, max_iter=0, weights_init=[0.3, 0.7], means_init=theta,
                                      random_state=0), Xc)
    C, yc = cm.sample(20_000)
    for j, t in enumerate(theta):
        freq = np.bincount(C[yc == 1, j], minlength=t.shape[1]) / np.sum(yc == 1)
        np.testing.assert_allclose(freq, t[1], atol=0.02)


# ----------------------------------------------------------------- input errors
@pytest.mark.parametrize("make, X, match", [
    (lambda: BernoulliMixture(2), [[0, 1], [2, 1], [1, 0]], "0 or 1"),
    (lambda: BernoulliMixture(2, n_trials=3), [[0, 1], [4, 1], [1, 0]], "0..3"),
    (lambda: BernoulliMixture(2), [[0, 1], [0.5, 1], [1, 0]], "0 or 1"),
    (lambda: BernoulliMixture(2), [[0, 1], [np.inf, 1], [1, 0]], "infinity"),
    (lambda: MultinomialMixture(2), [[0, 1], [-1, 1], [1, 0]], "negative counts"),
    (lambda: MultinomialMixture(2), [[0, 1], [np.nan, 1], [1, 0]], "NaN"),
    (lambda: CategoricalMixture(2), [[0, 1], [np.nan, 1], [1, 0]], "-1"),
    (lambda: CategoricalMixture(2), [[0, 1], [-2, 1], [1, 0]], "negative codes"),
    (lambda: CategoricalMixture(2, n_categories=2), [[0, 1], [2, 1], [1, 0]], "2 categories"),
    (lambda: CategoricalMixture(2), [[0, 1], [1.5, 1], [1, 0]], "integer"),
    (lambda: BernoulliMixture(2, alpha=0.0), [[0, 1], [1, 1], [1, 0]], "alpha"),
    (lambda: MultinomialMixture(2, init_params="kmeans"),
     sp.csr_matrix([[0, 1], [1, 1], [1, 0]]), "dense"),
])
def test_bad_input_gets_a_clear_error(make, X, match):
    with pytest.raises(ValueError, match=match):
        make().fit(X)


def test_type_errors():
    with pytest.raises(TypeError, match="Sparse input"):
        BernoulliMixture(2).fit(sp.csr_matrix([[0, 1], [1, 1], [1, 0]]))
    with pytest.raises(TypeError, match="codes"):
        CategoricalMixture(2).fit(np.array([["a", "b"], ["b", "a"]]))


def test_unseen_category_at_predict_is_an_error():
    X, _, _ = categorical_data(50, seed=15)
    cm = CategoricalMixture(2, random_state=0).fit(X)
    bad = X[:3].copy()
    bad[0, 0] = cm.n_categories_[0]
    with pytest.raises(ValueError, match="not seen"):
        cm.predict(bad)


# ----------------------------------------------------------------- scikit-learn's checks
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

#: scikit-learn's checks draw real-valued X (shifted to be >= 0 under the positive_only
#: tag); BernoulliMixture takes 0/1 data, so every check that fits on such X ends in its
#: own clear ValueError ("needs 0 or 1").  (Under the categorical tag the checks draw
#: integer codes, which CategoricalMixture takes.)  The same checks pass for the other
#: models, and for BernoulliMixture on its own data in the tests above.
_BERNOULLI_NEEDS_BINARY = [
    "check_all_zero_sample_weights_error", "check_dict_unchanged",
    "check_dont_overwrite_parameters", "check_dtype_object", "check_estimators_dtypes",
    "check_estimators_fit_returns_self", "check_estimators_overwrite_params",
    "check_estimators_pickle", "check_f_contiguous_array_estimator", "check_fit2d_1feature",
    "check_fit2d_1sample", "check_fit2d_predict1d", "check_fit_check_is_fitted",
    "check_fit_idempotent", "check_fit_score_takes_y", "check_methods_sample_order_invariance",
    "check_methods_subset_invariance", "check_n_features_in",
    "check_n_features_in_after_fitting", "check_pipeline_consistency",
    "check_positive_only_tag_during_fit", "check_readonly_memmap_input",
    "check_sample_weights_list", "check_sample_weights_not_an_array",
    "check_sample_weights_not_overwritten", "check_sample_weights_pandas_series",
    "check_sample_weights_shape",
]


def _expected_failures(est):
    reasons = {}
    if isinstance(est, BernoulliMixture):
        reasons = {name: "the check's real-valued X is not 0/1 data"
                   for name in _BERNOULLI_NEEDS_BINARY}
    if isinstance(est, CategoricalMixture):
        reasons["check_positive_only_tag_during_fit"] = (
            "-1 is the missing-entry code; other negative codes are refused")
    # as scikit-learn marks its own GaussianMixture: the random initial draws differ
    # between weighted and repeated rows (a common start is tested above)
    for name in ("check_sample_weight_equivalence_on_dense_data",
                 "check_sample_weight_equivalence_on_sparse_data"):
        reasons.setdefault(name, "initialization draws differ between weighted and "
                                 "repeated rows")
    if isinstance(est, MultinomialMixture):
        # the check takes any predict_proba for a classifier's and asks for classifier
        # tags: a mixture's probabilities are over its components
        for name in ("check_estimator_sparse_array", "check_estimator_sparse_matrix"):
            reasons[name] = "the check reads classifier tags on predict_proba"
    return reasons


@parametrize_with_checks(
    [BernoulliMixture(2, max_iter=20), MultinomialMixture(2, max_iter=20),
     CategoricalMixture(2, max_iter=20)],
    expected_failed_checks=_expected_failures,
)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_multinomial_csr_with_duplicate_entries_is_the_summed_matrix():
    """A CSR matrix may store one cell twice (scipy sums them on use): the fit is that of
    the summed counts, multinomial coefficient included (it once took each stored entry
    for a cell of its own), and the caller's matrix is left as it was."""
    rng = np.random.default_rng(4)
    counts = rng.poisson(1.5, (60, 5)).astype(float)
    S = sp.csr_matrix(counts)
    # every stored entry split into two stored ones of the same cell, row by row
    halves = np.floor(S.data / 2)
    data = np.stack([halves, S.data - halves], axis=1).ravel()
    dup = sp.csr_matrix((data, np.repeat(S.indices, 2), 2 * S.indptr), shape=S.shape)
    assert not dup.has_canonical_format and dup.nnz == 2 * S.nnz
    before = dup.data.copy()
    a = MultinomialMixture(2, random_state=0).fit(dup)
    b = MultinomialMixture(2, random_state=0).fit(S)
    assert a.lower_bound_ == pytest.approx(b.lower_bound_, rel=1e-12)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-12)
    np.testing.assert_array_equal(dup.data, before)
