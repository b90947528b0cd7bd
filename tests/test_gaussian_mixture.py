"""GaussianMixture: scikit-learn equivalence, the EM invariant, and behaviour."""

import warnings

import numpy as np
import pytest
from conftest import BACKENDS, blobs

from fastem import GaussianMixture
from fastem._dispatch import backend_unavailable_reason
from fastem.exceptions import ConvergenceWarning
from fastem.gaussian_mixture import CollapseWarning

sk_mixture = pytest.importorskip("sklearn.mixture")
COVS = ["full", "tied", "diag", "spherical"]
GMM_BACKENDS = [b for b in BACKENDS if backend_unavailable_reason(b, "gaussian_mixture") is None]
GMM_FAST = [b for b in GMM_BACKENDS if b != "numpy"]


@pytest.fixture(params=GMM_BACKENDS)
def gmm_backend(request):
    return request.param


def overlapping(n=2000, d=3, k=4, seed=0, dtype=np.float64):
    return blobs(n, d, k, seed=seed, spread=1.5, scale=3.0, dtype=dtype)[0]


def init_params_for(cov, X, k, seed=0):
    """Identical, deliberately poor initial parameters for both libraries."""
    rng = np.random.default_rng(seed)
    d = X.shape[1]
    means = X[rng.choice(X.shape[0], k, replace=False)].astype(np.float64)
    weights = np.full(k, 1.0 / k)
    prec = {"full": np.stack([np.eye(d) * 0.5] * k), "tied": np.eye(d) * 0.5,
            "diag": np.full((k, d), 0.5), "spherical": np.full(k, 0.5)}[cov]
    return dict(weights_init=weights, means_init=means, precisions_init=prec)


# ----------------------------------------------------------------- vs scikit-learn
@pytest.mark.parametrize("cov", COVS)
def test_same_fit_as_sklearn_from_identical_init(gmm_backend, cov):
    X = overlapping(seed=1)
    init = init_params_for(cov, X, 4)
    kw = dict(covariance_type=cov, tol=1e-8, max_iter=500, **init)
    ours = GaussianMixture(4, backend=gmm_backend, **kw).fit(X)
    ref = sk_mixture.GaussianMixture(4, **kw).fit(X)
    assert ours.n_iter_ == ref.n_iter_
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-8)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ours.covariances_, ref.covariances_, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ours.weights_, ref.weights_, rtol=1e-6)
    np.testing.assert_allclose(ours.precisions_cholesky_, ref.precisions_cholesky_, rtol=1e-6,
                               atol=1e-8)
    np.testing.assert_allclose(ours.score_samples(X[:100]), ref.score_samples(X[:100]), rtol=1e-8)
    np.testing.assert_allclose(ours.predict_proba(X[:100]), ref.predict_proba(X[:100]),
                               atol=1e-8)
    assert ours.bic(X) == pytest.approx(ref.bic(X), rel=1e-8)
    assert ours.aic(X) == pytest.approx(ref.aic(X), rel=1e-8)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_same_seed_same_fit_as_sklearn(init_params):
    X = overlapping(n=1500, seed=2)
    ours = GaussianMixture(4, init_params=init_params, random_state=3, n_init=2).fit(X)
    ref = sk_mixture.GaussianMixture(4, init_params=init_params, random_state=3, n_init=2).fit(X)
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-8)
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


# ----------------------------------------------------------------- invariants
@pytest.mark.parametrize("cov", COVS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lower_bound_never_decreases(gmm_backend, cov, seed):
    X = overlapping(n=1200, d=3, k=5, seed=seed)
    gm = GaussianMixture(5, covariance_type=cov, init_params="random", random_state=seed,
                         tol=0, max_iter=60, backend=gmm_backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("error", RuntimeWarning)  # the monitor's "lower bound decreased"
        gm.fit(X)
    assert gm.n_reseeded_ == 0
    bounds = np.array(gm.lower_bounds_)
    assert len(bounds) == gm.n_iter_
    assert np.all(np.diff(bounds) >= -1e-12 * np.abs(bounds[1:])), np.diff(bounds).min()


def test_responsibilities_sum_to_one(gmm_backend):
    X = overlapping(seed=4)
    gm = GaussianMixture(4, random_state=0, backend=gmm_backend).fit(X)
    proba = gm.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(proba.argmax(axis=1), gm.predict(X))
    np.testing.assert_array_equal(gm.fit_predict(X), gm.predict(X))


@pytest.mark.parametrize("backend_name", GMM_FAST)
@pytest.mark.parametrize("cov", COVS)
def test_fit_bit_identical_for_any_thread_count(backend_name, cov):
    X = overlapping(n=20_000, d=4, k=5, seed=5)
    fits = [GaussianMixture(5, covariance_type=cov, random_state=0, max_iter=20, tol=0,
                            backend=backend_name, n_threads=t) for t in (1, 2, 3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for f in fits:
            f.fit(X)
    for f in fits[1:]:
        assert f.lower_bounds_ == fits[0].lower_bounds_
        assert np.array_equal(f.means_, fits[0].means_)
        assert np.array_equal(f.covariances_, fits[0].covariances_)


@pytest.mark.parametrize("cov", COVS)
def test_integer_weights_equal_repeated_rows(gmm_backend, cov):
    X = overlapping(n=400, seed=6)
    reps = np.random.default_rng(0).integers(0, 4, 400)
    init = init_params_for(cov, X, 3, seed=1)
    kw = dict(covariance_type=cov, tol=1e-10, max_iter=300, backend=gmm_backend, **init)
    weighted = GaussianMixture(3, **kw).fit(X, sample_weight=reps)
    repeated = GaussianMixture(3, **kw).fit(np.repeat(X, reps, axis=0))
    assert weighted.n_iter_ == repeated.n_iter_
    assert weighted.lower_bound_ == pytest.approx(repeated.lower_bound_, rel=1e-10)
    np.testing.assert_allclose(weighted.means_, repeated.means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(weighted.covariances_, repeated.covariances_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("cov", COVS)
def test_float32_agrees_with_float64(gmm_backend, cov):
    X = overlapping(n=3000, seed=7)
    init = init_params_for(cov, X, 4, seed=2)
    kw = dict(covariance_type=cov, tol=1e-6, max_iter=50, backend=gmm_backend, **init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        g64 = GaussianMixture(4, **kw).fit(X)
        g32 = GaussianMixture(4, **kw).fit(X.astype(np.float32))
    for attr in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert getattr(g32, attr).dtype == np.float32, attr
        assert getattr(g64, attr).dtype == np.float64, attr
    assert g32.lower_bound_ == pytest.approx(g64.lower_bound_, rel=1e-4)
    np.testing.assert_allclose(g32.means_, g64.means_, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("cov", ["full", "diag"])
def test_fit_holds_no_copy_of_x_and_no_responsibility_matrix(gmm_backend, cov):
    """Extra memory is O(N) vectors at most (weights, log-likelihoods, labels): never a
    copy of X (N x D) nor an N x K matrix.  tracemalloc sees every numpy allocation
    made from Python (not the kernels' block buffers, which are O(block x K))."""
    import tracemalloc

    if gmm_backend == "numpy":
        pytest.skip("the reference backend holds N x K arrays by design")
    n, d, k = 40_000, 16, 8
    X = overlapping(n, d, k, seed=12)
    init = init_params_for(cov, X, k)
    gm = GaussianMixture(k, covariance_type=cov, max_iter=2, tol=0, backend=gmm_backend, **init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X[:500])  # compile / load kernels outside the measurement
        tracemalloc.start()
        try:
            gm.fit(X, sample_weight=np.ones(n))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    # an N x K float64 matrix alone is X.nbytes / 2 here; a copy of X is X.nbytes
    assert peak < 0.4 * X.nbytes, f"peak {peak / 2**20:.1f} MiB for X of {X.nbytes / 2**20:.1f}"


# ----------------------------------------------------------------- degenerate data
def test_duplicated_points_and_constant_feature_fit_finitely(gmm_backend):
    rng = np.random.default_rng(8)
    X = np.repeat(rng.standard_normal((40, 3)), 5, axis=0)
    X[:, 1] = 2.5  # constant feature
    for cov in COVS:
        gm = GaussianMixture(3, covariance_type=cov, random_state=0, backend=gmm_backend).fit(X)
        assert np.isfinite(gm.lower_bound_) and np.isfinite(gm.covariances_).all()
        # the constant feature's variance is exactly reg_covar, never negative
        var1 = {"full": lambda: gm.covariances_[:, 1, 1], "tied": lambda: gm.covariances_[1, 1],
                "diag": lambda: gm.covariances_[:, 1], "spherical": lambda: gm.covariances_}[cov]()
        assert np.all(var1 >= gm.reg_covar * (1 - 1e-6))


def test_collapsing_component_is_reseeded_not_fatal(gmm_backend):
    # Two tight groups and a third component started on a single far-away point: its
    # covariance is singular with reg_covar=0, which scikit-learn reports as an error.
    rng = np.random.default_rng(9)
    X = np.vstack([rng.normal(0, 1, (200, 2)), rng.normal(8, 1, (200, 2)), [[40.0, 40.0]]])
    init = dict(means_init=np.array([[0.0, 0.0], [8.0, 8.0], [40.0, 40.0]]),
                weights_init=np.array([0.45, 0.45, 0.1]))
    with pytest.warns(CollapseWarning, match="re-seeded"):
        gm = GaussianMixture(3, reg_covar=0.0, max_iter=30, backend=gmm_backend, **init).fit(X)
    assert gm.n_reseeded_ >= 1
    assert np.isfinite(gm.lower_bound_) and np.isfinite(gm.precisions_cholesky_).all()
    with pytest.raises(ValueError):
        sk_mixture.GaussianMixture(3, reg_covar=0.0, max_iter=30, **init).fit(X)


def test_fewer_distinct_points_than_components_is_an_error():
    X = np.repeat(np.array([[0.0, 1.0], [2.0, 3.0]]), 10, axis=0)
    with pytest.raises(ValueError, match="only 2 distinct points"):
        GaussianMixture(3).fit(X)


# ----------------------------------------------------------------- API
def test_warm_start_continues_from_previous_fit():
    X = overlapping(seed=10)
    gm = GaussianMixture(4, warm_start=True, max_iter=3, random_state=0, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
        first = gm.lower_bound_
        gm.fit(X)
    assert gm.lower_bound_ >= first
    full = GaussianMixture(4, max_iter=6, random_state=0, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        full.fit(X)
    assert gm.lower_bound_ == pytest.approx(full.lower_bound_, rel=1e-10)


def test_kmeans_initialization_runs_once_per_init(monkeypatch):
    from fastem import kmeans as kmeans_module

    fits = []
    original = kmeans_module.KMeans._fit_rows

    def counting_fit(self, *args, **kwargs):
        fits.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(kmeans_module.KMeans, "_fit_rows", counting_fit)
    GaussianMixture(3, n_init=2, init_params="kmeans", random_state=0).fit(overlapping(n=500))
    assert len(fits) == 2


def test_not_converged_warns():
    X = overlapping(seed=11)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        GaussianMixture(4, max_iter=2, tol=0, random_state=0).fit(X)


def test_sample_draws_from_the_model():
    X = overlapping(n=4000, seed=12)
    gm = GaussianMixture(4, random_state=0).fit(X)
    Xs, ys = gm.sample(20000)
    assert Xs.shape == (20000, 3) and ys.shape == (20000,)
    np.testing.assert_allclose(np.bincount(ys, minlength=4) / 20000, gm.weights_, atol=0.02)
    for k in range(4):
        np.testing.assert_allclose(Xs[ys == k].mean(0), gm.means_[k], atol=0.1)


@pytest.mark.parametrize("params,match", [
    (dict(covariance_type="banded"), "'covariance_type' parameter"),
    (dict(init_params="best"), "'init_params' parameter"),
    (dict(reg_covar=-1.0), "'reg_covar' parameter"),
    (dict(n_components=0), "'n_components' parameter"),
    (dict(weights_init=[0.5, 0.6]), "sum to 1"),
    (dict(weights_init=[1.0]), "weights_init must have shape"),
    (dict(means_init=np.zeros((3, 3))), "means_init must have shape"),
    (dict(precisions_init=np.ones((2, 3))), "precisions_init must have shape"),
    (dict(precisions_init=np.stack([-np.eye(3)] * 2)), "positive definite"),
])
def test_bad_parameters(params, match):
    X = overlapping(n=100)
    with pytest.raises((ValueError, TypeError), match=match):
        GaussianMixture(**{"n_components": 2, **params}).fit(X)


def test_too_few_samples():
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        GaussianMixture(5).fit(np.random.rand(3, 2))


from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402


@parametrize_with_checks(
    [GaussianMixture(n_components=2, max_iter=20)],
    expected_failed_checks=lambda est: {
        # as for KMeans: the k-means initialization draws differ between weighted and
        # repeated rows. Equivalence from a common start: test_integer_weights_equal_repeated_rows
        "check_sample_weight_equivalence_on_dense_data":
            "initialization draws differ between weighted and repeated rows",
    },
)
@pytest.mark.filterwarnings("ignore:Estimator GaussianMixture does not inherit")
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# ----------------------------------------------------------------- reg_covar and the bound
def _q_by_definition(gm, X, resp):
    """Q = sum_i sum_k r_ik [log pi_k + log N(x_i | mu_k, Sigma_k)], from scipy."""
    from scipy.stats import multivariate_normal

    cov = gm.covariance_type
    d = X.shape[1]
    sigmas = {"full": lambda k: gm.covariances_[k], "tied": lambda k: gm.covariances_,
              "diag": lambda k: np.diag(gm.covariances_[k]),
              "spherical": lambda k: np.eye(d) * gm.covariances_[k]}[cov]
    return sum(resp[:, k] @ (np.log(gm.weights_[k])
                             + multivariate_normal(gm.means_[k], sigmas(k)).logpdf(X))
               for k in range(gm.n_components))


@pytest.mark.parametrize("cov", COVS)
def test_expected_complete_loglik_is_q_by_its_definition(cov):
    """Q before and after an update, from the fused statistics, against scipy's densities
    weighted by the E-step's responsibilities; and EM's inequality: the log-likelihood
    rises by at least Q's gain."""
    X = overlapping(n=300, d=3, k=3, seed=5)
    gm = GaussianMixture(3, covariance_type=cov, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
    rows = gm._fit_input(X, None, False, "")
    resp = gm.predict_proba(X)
    ll_before = gm.score(X) * len(X)
    _, stats = gm._summarize(rows)
    q_old = gm._expected_complete_loglik(stats)
    assert q_old == pytest.approx(_q_by_definition(gm, X, resp), rel=1e-10)
    gm._from_summaries(rows, stats)
    q_new = gm._expected_complete_loglik(stats)
    assert q_new == pytest.approx(_q_by_definition(gm, X, resp), rel=1e-10)
    assert gm.score(X) * len(X) - ll_before >= q_new - q_old - 1e-9


def test_reg_covar_can_lower_the_bound_and_the_monitor_allows_exactly_that():
    """A component on one point whose variance was above reg_covar is put back at
    reg_covar: Q falls, and so may the bound (EM's guarantee is for Q's maximizer).
    21 components on 21 points found this (the monitor called it a bug); the slack the
    update reports covers the fall, and a fall beyond it is still reported."""
    X = np.array([-0.536, -0.929, 0.013, 0.662, 1.04, 0.88, 0.685, 0.459, 0.235, 0.278,
                  -0.959, -1.275, -0.429, 1.64, 0.255, -0.546, -0.096, 0.568, 1.385, 0.26,
                  0.385])[:, None]
    gm = GaussianMixture(21, max_iter=10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("error", RuntimeWarning)
        gm.fit(X)
    drops = -np.diff(gm.lower_bounds_)
    assert drops.max() > 1e-6  # the bound did fall (by 4.4e-6 once), and nothing re-seeded
    assert gm.n_reseeded_ == 0
    # the same run with the slack taken away is reported as a bug
    gm2 = GaussianMixture(21, max_iter=10, random_state=0)
    orig = gm2._em_iterate
    gm2._em_iterate = lambda rows: orig(rows)._replace(slack=0.0)
    with pytest.warns(RuntimeWarning, match="the lower bound decreased"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm2.fit(X)
