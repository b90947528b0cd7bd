"""MixtureOfFactorAnalyzers: one EM step against an independent numpy step (Gaussian
conditioning and Ghahramani and Hinton's M-step on the raw rows, with and without
missing entries), the likelihood never decreasing, one component = FactorAnalysis,
missing entries marginalised exactly, BIC / AIC / sample, streamed and Dask data, and
the errors."""

import warnings

import numpy as np
import pytest
from scipy.stats import multivariate_normal

import fastem
from fastem import MixtureOfFactorAnalyzers as MFA


def _mixture(n=600, d=6, q=2, k=3, seed=0, missing=0.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    loadings = rng.standard_normal((k, q, d))
    means = rng.standard_normal((k, d)) * 4.0
    noise = rng.uniform(0.2, 1.0, (k, d))
    X = np.empty((n, d))
    for c in range(k):
        rows = np.flatnonzero(labels == c)
        X[rows] = (rng.standard_normal((rows.size, q)) @ loadings[c] + means[c]
                   + rng.standard_normal((rows.size, d)) * np.sqrt(noise[c]))
    if missing:
        X[rng.random(X.shape) < missing] = np.nan
    return X, labels


def _covariances(model):
    noise = np.broadcast_to(model.noise_variance_, model.means_.shape)
    return np.array([w.T @ w + np.diag(p) for w, p in zip(model.components_, noise)])


def _oracle_step(model, X):
    """One EM step from the model's parameters, written independently: each row's
    observed coordinates o, log pi_k + log N(x_o | mu_o, C_oo) by scipy, the factors'
    posterior by conditioning the joint normal, and the M-step as Ghahramani and
    Hinton's regression of the raw x_d on (z, 1) over the rows observing d."""
    n, d = X.shape
    k, q, _ = model.components_.shape
    covs = _covariances(model)
    log_joint = np.empty((n, k))
    ez = np.zeros((n, k, q + 1))
    ezz = np.zeros((n, k, q + 1, q + 1))
    for i in range(n):
        o = ~np.isnan(X[i])
        for c in range(k):
            w = model.components_[c][:, o]
            c_oo = covs[c][np.ix_(o, o)]
            y = X[i, o] - model.means_[c, o]
            log_joint[i, c] = np.log(model.weights_[c]) + (
                multivariate_normal(model.means_[c, o], c_oo).logpdf(X[i, o]) if o.any() else 0.0)
            gain = w @ np.linalg.inv(c_oo) if o.any() else np.zeros((q, 0))
            mean_z = gain @ y
            cov_z = np.eye(q) - gain @ w.T
            ez[i, c] = np.append(mean_z, 1.0)
            ezz[i, c] = np.outer(ez[i, c], ez[i, c])
            ezz[i, c, :q, :q] += cov_z
    resp = np.exp(log_joint - np.logaddexp.reduce(log_joint, axis=1)[:, None])
    observed = ~np.isnan(X)
    x0 = np.where(observed, X, 0.0)
    means, loadings = np.empty((k, d)), np.empty((k, q, d))
    resid, counts = np.empty((k, d)), np.empty((k, d))
    for c in range(k):
        for j in range(d):
            r = resp[:, c] * observed[:, j]
            b = (r * x0[:, j]) @ ez[:, c]
            coef = np.linalg.solve(np.einsum("n,nij->ij", r, ezz[:, c]), b)
            loadings[c, :, j], means[c, j] = coef[:q], coef[q]
            resid[c, j] = r @ x0[:, j] ** 2 - coef @ b
            counts[c, j] = r.sum()
    if model.noise_type == "shared":
        noise = resid.sum(axis=0) / counts.sum(axis=0)
    else:
        noise = resid / counts
    weights = resp.sum(axis=0) / n
    return weights, means, loadings, noise, float(np.mean(np.logaddexp.reduce(log_joint, axis=1)))


@pytest.mark.parametrize("noise_type", ["per_component", "shared"])
@pytest.mark.parametrize("missing", [0.0, 0.15])
def test_one_em_step_equals_an_independent_numpy_step(noise_type, missing):
    X, _ = _mixture(n=240, d=5, missing=missing, seed=1)
    X[7] = np.nan  # a row with nothing observed: its prior
    X[8, :4] = np.nan
    start = MFA(3, n_factors=2, noise_type=noise_type, max_iter=0, random_state=0).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (one iteration does not converge)
        step = MFA(3, n_factors=2, noise_type=noise_type, max_iter=1, random_state=0).fit(X)
    weights, means, loadings, noise, ll = _oracle_step(start, X)
    np.testing.assert_allclose(step.lower_bounds_[0], ll, rtol=1e-10)
    np.testing.assert_allclose(step.weights_, weights, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(step.means_, means, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(step.components_, loadings, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(step.noise_variance_, noise, rtol=1e-7, atol=1e-9)


def test_the_log_likelihood_never_decreases_and_every_backend_gives_the_same_fit(backend):
    X, _ = _mixture(missing=0.1, seed=2)
    ref = MFA(3, n_factors=2, tol=1e-5, max_iter=200, random_state=0, backend="numpy").fit(X)
    got = MFA(3, n_factors=2, tol=1e-5, max_iter=200, random_state=0, backend=backend).fit(X)
    assert got.converged_
    bounds = np.array(got.lower_bounds_)
    assert bounds.size > 5 and np.all(np.diff(bounds) >= -1e-10 * np.abs(bounds[1:]))
    assert got.n_iter_ == ref.n_iter_
    for name in ("weights_", "means_", "components_", "noise_variance_"):
        np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=1e-7,
                                   atol=1e-9, err_msg=name)


def test_one_component_is_factor_analysis():
    from sklearn.decomposition import FactorAnalysis as SKFA

    X, _ = _mixture(n=1000, k=1, d=6, q=2, seed=5)
    sk = SKFA(2, tol=1e-8, max_iter=5000, svd_method="lapack").fit(X)
    fa = fastem.FactorAnalysis(2, tol=1e-8, max_iter=5000).fit(X)
    mfa = MFA(1, n_factors=2, tol=1e-11, max_iter=5000, random_state=0).fit(X)
    assert mfa.converged_
    np.testing.assert_allclose(mfa.score(X), sk.score(X), rtol=1e-10)
    np.testing.assert_allclose(mfa.score(X), fa.score(X), rtol=1e-10)
    np.testing.assert_allclose(mfa.get_covariances()[0], sk.get_covariance(), atol=1e-4)
    np.testing.assert_allclose(mfa.means_[0], X.mean(axis=0), atol=1e-6)


def test_missing_entries_are_marginalised_exactly():
    X, _ = _mixture(missing=0.2, seed=4)
    model = MFA(3, n_factors=2, random_state=0).fit(X)
    covs = _covariances(model)
    rows = [0, 1, 2, 3, 10, 11]
    expected = []
    for i in rows:
        o = ~np.isnan(X[i])
        expected.append(np.logaddexp.reduce([
            np.log(model.weights_[c]) + multivariate_normal(model.means_[c, o],
                                                            covs[c][np.ix_(o, o)]).logpdf(X[i, o])
            for c in range(3)]))
    np.testing.assert_allclose(model.score_samples(X[rows]), expected, rtol=1e-10)
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(model.predict(X), proba.argmax(axis=1))


def test_a_fit_with_missing_entries_is_close_to_the_complete_fit():
    X, truth = _mixture(n=1500, seed=5)
    holes = X.copy()
    holes[np.random.default_rng(0).random(X.shape) < 0.1] = np.nan
    full = MFA(3, n_factors=2, random_state=0, tol=1e-5, max_iter=300).fit(X)
    part = MFA(3, n_factors=2, random_state=0, tol=1e-5, max_iter=300).fit(holes)
    order = [np.argmin(np.abs(part.means_ - m).sum(axis=1)) for m in full.means_]
    assert sorted(order) == [0, 1, 2]
    assert np.mean(np.asarray(order)[full.predict(X)] == part.predict(X)) > 0.99
    np.testing.assert_allclose(part.means_[order], full.means_, atol=0.15)
    np.testing.assert_allclose(_covariances(part)[order], _covariances(full), atol=0.6)


@pytest.mark.parametrize("noise_type, n_params", [("per_component", 1 + 10 + 18 + 10),
                                                   ("shared", 1 + 10 + 18 + 5)])
def test_bic_and_aic_count_the_free_parameters(noise_type, n_params):
    # K = 2, D = 5, q = 2: 1 weight, 10 means, 2 (5 * 2 - 1) loadings (up to a rotation
    # of the two factors) and 10 or 5 noise variances
    X, _ = _mixture(n=300, d=5, k=2, seed=6)
    model = MFA(2, n_factors=2, noise_type=noise_type, random_state=0).fit(X)
    log_lik = model.score_samples(X).sum()
    assert model._n_parameters() == n_params
    np.testing.assert_allclose(model.bic(X), -2 * log_lik + n_params * np.log(300), rtol=1e-12)
    np.testing.assert_allclose(model.aic(X), -2 * log_lik + 2 * n_params, rtol=1e-12)
    assert model.noise_variance_.shape == ((5,) if noise_type == "shared" else (2, 5))


def test_sample_draws_from_the_fitted_components():
    X, _ = _mixture(n=600, seed=7)
    model = MFA(3, n_factors=2, random_state=0).fit(X)
    draws, labels = model.sample(30000)
    assert draws.shape == (30000, 6) and labels.shape == (30000,)
    np.testing.assert_allclose(np.bincount(labels, minlength=3) / 30000, model.weights_,
                               atol=0.01)
    first = draws[labels == 0]
    np.testing.assert_allclose(first.mean(axis=0), model.means_[0], atol=0.1)
    np.testing.assert_allclose(np.cov(first.T), model.get_covariances()[0], atol=0.3)


def test_chunks_and_memory_maps_give_the_in_memory_fit(tmp_path):
    X, _ = _mixture(n=700, missing=0.05, seed=8)
    ref = MFA(3, n_factors=2, random_state=0, init_params="random").fit(X)
    np.save(tmp_path / "x.npy", X)
    mapped = MFA(3, n_factors=2, random_state=0, init_params="random").fit(
        np.load(tmp_path / "x.npy", mmap_mode="r"))
    chunks = MFA(3, n_factors=2, random_state=0, init_params="random").fit(
        fastem.Chunks([X[:250], X[250:600], X[600:]]))
    for got in (mapped, chunks):
        assert got.lower_bounds_ == ref.lower_bounds_
        np.testing.assert_array_equal(got.components_, ref.components_)
        np.testing.assert_array_equal(got.noise_variance_, ref.noise_variance_)


def test_kmeans_starts_on_missing_entries_fill_them_with_the_feature_means():
    X, truth = _mixture(n=900, missing=0.1, seed=9)
    model = MFA(3, n_factors=2, random_state=0).fit(X)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, model.predict(X)) > 0.95
    with pytest.raises(ValueError, match="init_params='random'"):
        MFA(3, random_state=0).fit(fastem.Chunks([X[:400], X[400:]]))


def test_partial_fit_steps_are_em_steps_on_recentred_running_statistics():
    """The first step (eta = 1) is one EM step; the second blends the batch's statistics,
    moved to the running average's fixed centers (the initial means), with eta =
    (offset + 1) ** -decay: checked against statistics recomputed here from the
    reference kernel; and a stream recovers the clustering of a fit."""
    from sklearn.metrics import adjusted_rand_score

    from fastem.kernels.reference import factor_analysis as ref

    X, truth = _mixture(n=1200, missing=0.05, seed=10)
    X += 50.0  # far from 0: the running statistics must stay about a center
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = MFA(3, n_factors=2, max_iter=1, random_state=0).fit(X[:400])
    online = MFA(3, n_factors=2, random_state=0).partial_fit(X[:400])
    for name in ("weights_", "means_", "components_", "noise_variance_"):
        # (the statistics are kept per unit weight: divided and multiplied back)
        np.testing.assert_allclose(getattr(online, name), getattr(one, name), rtol=1e-12)
    start = _start_of(X[:400])
    first = [s / 400 for s in _reference_stats(ref, X[:400], start)]
    step1 = (online.means_.copy(), online.components_.copy(), online.noise_variance_.copy(),
             online.weights_.copy())
    second = [s / 400 for s in _reference_stats(ref, X[400:800], step1)]
    online.partial_fit(X[400:800])
    np.testing.assert_array_equal(online._online_center, start[0])
    eta = 11.0 ** -0.7
    expected = [(1 - eta) * a + eta * b for a, b in
                zip(first, _recentred(second, step1[0], start[0]))]
    for got, want in zip(online._running_stats, expected):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert online.n_steps_ == 2
    stream = MFA(3, n_factors=2, random_state=0)
    for a in range(0, 1200, 200):
        stream.partial_fit(X[a:a + 200])
    assert adjusted_rand_score(truth, stream.predict(X)) > 0.95


def _start_of(X):
    """The initial parameters of a fit (max_iter=0 with the same seed)."""
    start = MFA(3, n_factors=2, max_iter=0, random_state=0).fit(X)
    return start.means_, start.components_, start.noise_variance_, start.weights_


def _reference_stats(ref, X, params):
    means, loadings, noise, weights = params
    k, q, d = loadings.shape
    p = q + 1
    out = (np.empty(k), np.empty((k, d)), np.empty((k, p, d)), np.empty((k, d)),
           np.empty((k, p, p)), np.empty((k, d, p, p)))
    with np.errstate(divide="ignore"):
        ref.factor_stats(X, np.ones(X.shape[0]), means, loadings,
                         np.broadcast_to(1.0 / noise, means.shape), np.log(weights), *out, 1)
    return out


def _recentred(stats, shift, center):
    """Statistics about ``shift`` moved to ``center``, from their definitions: y + delta
    over the observed entries."""
    nk, n_missing, sum_zy, sum_yy, sum_zz, sum_zz_missing = stats
    delta = shift - center
    q = sum_zz.shape[1] - 1
    z_seen = np.stack([sum_zz[:, :, q] - sum_zz_missing[:, j, :, q]
                       for j in range(shift.shape[1])], axis=2)  # (K, p, D)
    return (nk, n_missing, sum_zy + delta[:, None, :] * z_seen,
            sum_yy + 2 * delta * sum_zy[:, q] + delta ** 2 * (nk[:, None] - n_missing),
            sum_zz, sum_zz_missing)


def test_bad_input_is_refused_with_a_clear_message():
    X, _ = _mixture(n=100, d=4)
    with pytest.raises(ValueError, match="n_factors=5 must be at most the number of features"):
        MFA(2, n_factors=5).fit(X)
    with pytest.raises(ValueError, match="noise_type"):
        MFA(2, noise_type="diag").fit(X)
    with pytest.raises(ValueError, match="reg_covar"):
        MFA(2, reg_covar=0.0).fit(X)
    bad = X.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        MFA(2).fit(bad)
    with pytest.raises(ValueError, match="means_init must have shape"):
        MFA(2, means_init=np.zeros((3, 4))).fit(X)
    model = MFA(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="4 features"):
        model.predict(X[:, :3])


from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402


@parametrize_with_checks(
    [MFA(n_components=2, n_factors=1, max_iter=20)],
    expected_failed_checks=lambda est: {
        # as for GaussianMixture: the k-means initialization draws differ between
        # weighted and repeated rows
        "check_sample_weight_equivalence_on_dense_data":
            "initialization draws differ between weighted and repeated rows",
    },
)
@pytest.mark.filterwarnings("ignore:Estimator MixtureOfFactorAnalyzers does not inherit")
@pytest.mark.filterwarnings("ignore::fastem.exceptions.ConvergenceWarning")
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
