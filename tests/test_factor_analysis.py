"""FactorAnalysis: scikit-learn's iterations and model (covariance, precision, score,
rotations), the maximum-likelihood optimum of an independent EM (Rubin and Thayer's),
the data's sources and threads giving the same bits, and errors."""

import warnings

import numpy as np
import pytest

import fastem

sklearn_decomposition = pytest.importorskip("sklearn.decomposition")
SK = sklearn_decomposition.FactorAnalysis


def _data(n=600, d=8, q=2, seed=0):
    """Rows of a factor model: q factors, unequal noise, a mean far from zero."""
    rng = np.random.default_rng(seed)
    loadings = rng.normal(size=(q, d))
    return (rng.normal(size=(n, q)) @ loadings + rng.normal(size=(n, d))
            * rng.uniform(0.3, 1.5, d) + 50.0)


def _same_up_to_sign(a, b, rtol):
    """Rows (factors) of a and b equal up to each factor's sign."""
    signs = np.sign(np.sum(a * b, axis=1))
    np.testing.assert_allclose(a * signs[:, None], b, rtol=rtol, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize("rotation", [None, "varimax", "quartimax"])
def test_factor_analysis_is_sklearns(rotation, backend):
    """Each iteration is scikit-learn's (its SVD of the rows is our eigendecomposition
    of their covariance): the same log-likelihoods, iterations, covariance, precision,
    score and, up to each factor's sign, loadings and factors."""
    X = _data()
    ref = SK(2, svd_method="lapack", tol=1e-6, rotation=rotation).fit(X)
    got = fastem.FactorAnalysis(2, tol=1e-6, rotation=rotation, backend=backend).fit(X)
    assert got.n_iter_ == ref.n_iter_ > 5
    np.testing.assert_allclose(got.loglike_, ref.loglike_, rtol=1e-12)
    np.testing.assert_allclose(got.get_covariance(), ref.get_covariance(), rtol=1e-9,
                               atol=1e-10)
    np.testing.assert_allclose(got.get_precision(), ref.get_precision(), rtol=1e-9,
                               atol=1e-10)
    np.testing.assert_allclose(got.noise_variance_, ref.noise_variance_, rtol=1e-9)
    np.testing.assert_allclose(got.mean_, ref.mean_, rtol=1e-14)
    assert got.score(X) == pytest.approx(ref.score(X), rel=1e-12)
    np.testing.assert_allclose(got.score_samples(X), ref.score_samples(X), rtol=1e-11)
    _same_up_to_sign(got.components_, ref.components_, 1e-8)
    _same_up_to_sign(got.transform(X).T, ref.transform(X).T, 1e-8)


def test_defaults_are_sklearns():
    """scikit-learn's default randomized SVD approximates the exact decomposition we
    use: on a well-separated spectrum the fits agree closely, in as many iterations."""
    X = _data(seed=1)
    ref, got = SK(3).fit(X), fastem.FactorAnalysis(3).fit(X)
    assert got.n_iter_ == ref.n_iter_
    assert got.loglike_[-1] == pytest.approx(ref.loglike_[-1], rel=1e-9)
    assert got.get_params().keys() == ref.get_params().keys() - set() | {"backend",
                                                                         "n_threads"}
    for name, value in ref.get_params().items():
        assert got.get_params()[name] == value, name


def _rubin_thayer(S, q, iterations=20000):
    """Rubin and Thayer's EM for factor analysis from the covariance S (an algorithm
    other than scikit-learn's): L (D, q) and Psi at its fixed point."""
    L = np.linalg.cholesky(S)[:, :q]
    psi = np.diag(S).copy()
    for _ in range(iterations):
        beta = L.T @ np.linalg.inv(L @ L.T + np.diag(psi))  # E[z | x] = beta (x - mu)
        ezz = np.eye(q) - beta @ L + beta @ S @ beta.T  # E[z z^T], averaged
        L = S @ beta.T @ np.linalg.inv(ezz)
        psi = np.diag(S - L @ beta @ S).copy()
    return L @ L.T + np.diag(psi)


def test_the_optimum_is_rubin_and_thayers_and_loglike_is_the_likelihood():
    X = _data(n=400, d=6, seed=2)
    got = fastem.FactorAnalysis(2, tol=1e-10, max_iter=5000).fit(X)
    S = np.cov(X.T, bias=True)

    def log_likelihood(C):
        return -0.5 * X.shape[0] * (6 * np.log(2 * np.pi) + np.linalg.slogdet(C)[1]
                                    + np.trace(np.linalg.solve(C, S)))

    optimum = _rubin_thayer(S, 2)
    # the likelihood is flat near its maximum: both stop within 1e-11 of it, the
    # covariances within 1e-5
    assert log_likelihood(got.get_covariance()) == pytest.approx(log_likelihood(optimum),
                                                                 rel=1e-11)
    np.testing.assert_allclose(got.get_covariance(), optimum, rtol=1e-5, atol=1e-5)
    assert np.all(np.diff(got.loglike_) >= 0)
    # the last log-likelihood is that of the fitted model on the training rows
    assert got.loglike_[-1] == pytest.approx(X.shape[0] * got.score(X), rel=1e-9)


def test_sources_and_threads_give_the_same_bits(tmp_path):
    X = _data(seed=3)
    np.save(tmp_path / "x.npy", X)
    with fastem.config_context(chunk_bytes=8 * 8 * 64):  # chunks of 64 rows
        fits = [fastem.FactorAnalysis(2, n_threads=t).fit(x) for x, t in (
            (X, 1), (X, 2), (np.load(tmp_path / "x.npy", mmap_mode="r"), 2),
            (fastem.Chunks([X[:100], X[100:101], X[101:]]), 1))]
    for other in fits[1:]:
        np.testing.assert_array_equal(other.components_, fits[0].components_)
        np.testing.assert_array_equal(other.noise_variance_, fits[0].noise_variance_)
        assert other.loglike_ == fits[0].loglike_


def test_bad_input_and_non_convergence_are_reported():
    X = _data(n=50)
    with pytest.raises(ValueError, match=r"noise_variance_init has shape \(3,\), expected"):
        fastem.FactorAnalysis(2, noise_variance_init=np.ones(3)).fit(X)
    with pytest.raises(ValueError, match="finite, positive"):
        fastem.FactorAnalysis(2, noise_variance_init=-np.ones(8)).fit(X)
    bad = X.copy()
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        fastem.FactorAnalysis(2).fit(bad)
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="partial_fit takes rows without missing"):
        fastem.FactorAnalysis(2).partial_fit(bad)
    with pytest.raises(ValueError, match="n_components=9 must be at most the number of "
                                         "features, 8"):
        fastem.FactorAnalysis(9).fit(X)
    with pytest.raises(ValueError, match="at least 2 samples"):
        fastem.FactorAnalysis(2).fit(X[:1])
    with pytest.raises(ValueError, match="8 features"):
        fastem.FactorAnalysis(2).fit(X).transform(X[:, :3])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fastem.FactorAnalysis(2, max_iter=2).fit(X)
    assert any("did not converge" in str(w.message) for w in caught)


def test_partial_fit_sees_the_moments_of_every_batch():
    """The batches' moments merged pairwise are the moments of all the rows (to
    rounding), and the iterations from the last noise reach fit's model."""
    X = _data(n=900, seed=4)
    model = fastem.FactorAnalysis(2, tol=1e-8)
    for batch in (X[:100], X[100:101], X[101:700], X[700:]):
        model.partial_fit(batch)
    whole = fastem.FactorAnalysis(2, tol=1e-8).fit(X)
    assert model.n_samples_seen_ == 900
    np.testing.assert_allclose(model._seen.cov, np.cov(X.T, bias=True), rtol=1e-11,
                               atol=1e-12)
    np.testing.assert_allclose(model.mean_, X.mean(axis=0), rtol=1e-13)
    # (two stops of a flat maximum from different starts: within the 1e-4)
    np.testing.assert_allclose(model.get_covariance(), whole.get_covariance(), rtol=1e-4,
                               atol=1e-6)
    assert model.score(X) == pytest.approx(whole.score(X), rel=1e-9)
    with pytest.raises(ValueError, match="8 features"):
        model.partial_fit(X[:5, :3])


@pytest.mark.parametrize("cls", [fastem.FactorAnalysis, fastem.PPCA])
def test_a_loaded_model_cannot_continue_partial_fit(cls, tmp_path):
    X = _data(n=60)
    cls(2).fit(X).save(tmp_path / "m.npz")
    loaded = fastem.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.transform(X), cls(2).fit(X).transform(X))
    with pytest.raises(ValueError, match=f"this {cls.__name__} holds no running moments "
                                         r"\(it was loaded from a file, or fitted"):
        loaded.partial_fit(X)


def _with_holes(X, rate=0.1, seed=0):
    holes = X.copy()
    holes[np.random.default_rng(seed).random(X.shape) < rate] = np.nan
    holes[5, :-1] = np.nan  # a row with one coordinate seen
    return holes


@pytest.mark.parametrize("cls", [fastem.FactorAnalysis, fastem.PPCA])
def test_missing_entries_are_marginalised_in_score_and_transform(cls):
    """log N(x_o | mu_o, C_oo) by scipy and E[z | x_o] = W_o C_oo^-1 (x_o - mu_o) by
    Gaussian conditioning, for rows with missing entries."""
    from scipy.stats import multivariate_normal

    X = _with_holes(_data(n=400, d=6))
    model = cls(2).fit(X)
    cov, w = model.get_covariance(), model._loadings()
    rows = [0, 1, 2, 5, 9]
    expected_ll, expected_z = [], []
    for i in rows:
        o = ~np.isnan(X[i])
        c_oo = cov[np.ix_(o, o)]
        expected_ll.append(multivariate_normal(model.mean_[o], c_oo).logpdf(X[i, o]))
        expected_z.append(w[:, o] @ np.linalg.solve(c_oo, X[i, o] - model.mean_[o]))
    np.testing.assert_allclose(model.score_samples(X[rows]), expected_ll, rtol=1e-10)
    np.testing.assert_allclose(model.transform(X[rows]), expected_z, rtol=1e-9, atol=1e-12)
    assert np.isclose(model.loglike_[-1] if isinstance(model.loglike_, list) else model.loglike_,
                      model.score_samples(X).sum(), rtol=1e-6)


def test_the_em_on_rows_reaches_the_maximum_likelihood_of_the_moments():
    """The missing-entry EM (on the rows, one component's regression M-step) run on
    complete rows reaches the optimum the moments' iterations find: FactorAnalysis's
    and PPCA's closed form."""
    from fastem._dispatch import get_kernels
    from fastem._stream import rows_from
    from fastem.factor_analysis import MissingRows

    X = _data(n=500, d=6, seed=3)
    data = MissingRows(rows_from(X, lambda a, name, cp: a, owner="test"),
                       get_kernels("numpy", "factor_analysis"), 1)
    ref = fastem.FactorAnalysis(2, tol=1e-9, max_iter=20000).fit(X)
    em = fastem.FactorAnalysis(2, tol=1e-9, max_iter=20000)
    em._runtime, em.n_features_in_ = ("numpy", 1), 6
    em._fit_from(data, True, None)
    np.testing.assert_allclose(em.loglike_[-1], ref.loglike_[-1], rtol=1e-9)
    np.testing.assert_allclose(em.get_covariance(), ref.get_covariance(), atol=1e-4)
    assert np.all(np.diff(em.loglike_) >= -1e-9 * abs(em.loglike_[-1]))
    closed = fastem.PPCA(2).fit(X)
    ppca = fastem.PPCA(2)
    ppca._runtime, ppca.n_features_in_ = ("numpy", 1), 6
    ppca._fit_missing(data)
    np.testing.assert_allclose(ppca.loglike_, closed.loglike_, rtol=1e-9)
    np.testing.assert_allclose(ppca.explained_variance_, closed.explained_variance_, rtol=1e-5)
    assert ppca.noise_variance_ == pytest.approx(closed.noise_variance_, rel=1e-5)
    np.testing.assert_allclose(np.abs(ppca.components_), np.abs(closed.components_), atol=1e-4)


def test_a_step_of_the_missing_entry_em_is_an_independent_em_step():
    """``MissingRows.step`` against test_mfa's oracle (scipy's densities, Gaussian
    conditioning, the regression on the raw rows) with one component."""
    from test_mfa import _oracle_step

    from fastem._dispatch import get_kernels
    from fastem._stream import rows_from
    from fastem.factor_analysis import MissingRows

    X = _with_holes(_data(n=150, d=5, seed=4))
    data = MissingRows(rows_from(X, lambda a, name, cp: a, owner="test", ),
                       get_kernels("numpy", "factor_analysis"), 1)
    rng = np.random.default_rng(0)
    mean, loadings, noise = np.nanmean(X, axis=0), rng.normal(size=(2, 5)), rng.uniform(1, 2, 5)
    ll, new_mean, new_loadings, new_noise = data.step(mean, loadings, noise, "component", 1e-12)
    model = fastem.MixtureOfFactorAnalyzers(1, n_factors=2)
    model.weights_, model.means_, model.components_ = np.ones(1), mean[None], loadings[None]
    model.noise_variance_ = noise[None]
    _, o_mean, o_loadings, o_noise, o_ll = _oracle_step(model, X)
    np.testing.assert_allclose(ll / X.shape[0], o_ll, rtol=1e-10)
    np.testing.assert_allclose(new_mean, o_mean[0], rtol=1e-8)
    np.testing.assert_allclose(new_loadings, o_loadings[0], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(new_noise, o_noise[0], rtol=1e-7)
    iso = data.step(mean, loadings, noise, "isotropic", 1e-12)[3]
    assert np.all(iso == iso[0]) and iso[0] == pytest.approx(
        np.average(o_noise[0], weights=(~np.isnan(X)).sum(axis=0)), rel=1e-8)


def test_a_fit_with_missing_entries_is_close_to_the_complete_fit():
    X = _data(n=3000, d=8, seed=5)
    for cls in (fastem.FactorAnalysis, fastem.PPCA):
        full, part = cls(2).fit(X), cls(2).fit(_with_holes(X))
        np.testing.assert_allclose(part.get_covariance(), full.get_covariance(), atol=0.1)
        np.testing.assert_allclose(part.mean_, full.mean_, atol=0.05)
