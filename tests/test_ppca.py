"""PPCA: scikit-learn's PCA model (up to its N - 1 normalisation), Tipping and Bishop's
EM reaching the same optimum, the posterior mean of the factors, sources, errors."""

import numpy as np
import pytest

import fastem

sklearn_decomposition = pytest.importorskip("sklearn.decomposition")


def _data(n=500, d=8, q=3, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, q)) @ rng.normal(size=(q, d))
            + rng.normal(size=(n, d)) * 0.5 + 3.0)


def test_ppca_is_sklearns_pca_model(backend):
    X = _data()
    n = X.shape[0]
    ours = fastem.PPCA(3, backend=backend).fit(X)
    pca = sklearn_decomposition.PCA(3).fit(X)
    signs = np.sign(np.sum(ours.components_ * pca.components_, axis=1))
    np.testing.assert_allclose(ours.components_ * signs[:, None], pca.components_, atol=1e-12)
    # scikit-learn's variances are over N - 1
    np.testing.assert_allclose(ours.explained_variance_ * n / (n - 1), pca.explained_variance_,
                               rtol=1e-12)
    assert ours.noise_variance_ * n / (n - 1) == pytest.approx(pca.noise_variance_, rel=1e-12)
    np.testing.assert_allclose(ours.explained_variance_ratio_, pca.explained_variance_ratio_,
                               rtol=1e-12)
    pca.explained_variance_ *= (n - 1) / n  # the same model over N: the same likelihood
    pca.noise_variance_ *= (n - 1) / n
    assert ours.score(X) == pytest.approx(pca.score(X), rel=1e-12)
    np.testing.assert_allclose(ours.score_samples(X), pca.score_samples(X), rtol=1e-11)
    np.testing.assert_allclose(ours.get_precision(), pca.get_precision(), atol=1e-11)
    assert ours.loglike_ == pytest.approx(n * ours.score(X), rel=1e-12)


def test_tipping_and_bishops_em_reaches_the_closed_form():
    """Their EM from a random start (another route to the optimum): the same covariance;
    the factors are the posterior means (sigma^2 I + W W^T)^-1 W (x - mean)."""
    X = _data(n=300, d=6, q=2, seed=1)
    ours = fastem.PPCA(2).fit(X)
    S = np.cov(X.T, bias=True)
    rng = np.random.default_rng(0)
    W, sigma2 = rng.normal(size=(6, 2)), 1.0
    for _ in range(3000):
        M = W.T @ W + sigma2 * np.eye(2)
        SW = S @ W
        W_new = SW @ np.linalg.inv(sigma2 * np.eye(2) + np.linalg.solve(M, W.T @ SW))
        sigma2 = np.trace(S - SW @ np.linalg.solve(M, W_new.T)) / 6
        W = W_new
    np.testing.assert_allclose(ours.get_covariance(), W @ W.T + sigma2 * np.eye(6),
                               rtol=1e-8, atol=1e-10)
    assert ours.noise_variance_ == pytest.approx(sigma2, rel=1e-8)
    loadings = ours._loadings()
    expected = np.linalg.solve(ours.noise_variance_ * np.eye(2) + loadings @ loadings.T,
                               loadings @ (X - X.mean(axis=0)).T).T
    np.testing.assert_allclose(ours.transform(X), expected, rtol=1e-10, atol=1e-12)


def test_sources_give_the_same_bits_and_errors_are_clear():
    X = _data(seed=2)
    with fastem.config_context(chunk_bytes=8 * 8 * 50):
        a = fastem.PPCA(3).fit(X)
        b = fastem.PPCA(3, n_threads=2).fit(fastem.Chunks([X[:7], X[7:]]))
    np.testing.assert_array_equal(a.components_, b.components_)
    assert a.noise_variance_ == b.noise_variance_ and a.loglike_ == b.loglike_
    with pytest.raises(ValueError, match="between 1 and the number of features minus one"):
        fastem.PPCA(8).fit(X)
    with pytest.raises(ValueError, match="subspace"):
        fastem.PPCA(2).fit(np.repeat(X[:, :2], 3, axis=1))  # rank 2 in 6 dimensions


def test_partial_fit_is_the_fit_of_every_row_seen():
    X = _data(n=400, seed=3)
    model = fastem.PPCA(3)
    for batch in (X[:150], X[150:151], X[151:]):
        model.partial_fit(batch)
    whole = fastem.PPCA(3).fit(X)
    assert model.n_samples_ == 400
    np.testing.assert_allclose(model.get_covariance(), whole.get_covariance(), rtol=1e-11,
                               atol=1e-13)
    assert model.loglike_ == pytest.approx(whole.loglike_, rel=1e-12)
