"""Online (stepwise) EM: ``partial_fit`` on the mixture models.

A step blends the batch's expected sufficient statistics into a running average,
``s <- (1 - eta) s + eta s(batch)`` with ``eta_t = (learning_offset + t) ** -learning_decay``,
and sets the parameters from it.  Checked against: one EM step (the first step of a
fitted model, eta = 1), a second step derived here from scratch with scipy's densities,
and parameter recovery on a stream.
"""

import warnings

import numpy as np
import pytest
from scipy.stats import multivariate_normal

import fastem
from fastem.exceptions import ConvergenceWarning

TRUE_MEANS = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
COVS = ["full", "tied", "diag", "spherical"]


def gaussian_batch(rng, n, offset=100.0):
    """Three unit-variance blobs, equally likely, far from the origin (so the running
    statistics must be kept around a center to stay exact)."""
    lab = rng.integers(0, 3, n)
    return TRUE_MEANS[lab] + rng.standard_normal((n, 2)) + offset


def fitted_on(X, cov):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fastem.GaussianMixture(3, covariance_type=cov, max_iter=5, random_state=0).fit(X)


@pytest.mark.parametrize("cov", COVS)
def test_first_step_of_a_fitted_model_is_one_em_step(cov):
    """With eta = 1 the step is exactly EM's: statistics converted to the running
    average's center and back must give the M-step of the batch itself."""
    rng = np.random.default_rng(0)
    gm = fitted_on(gaussian_batch(rng, 600), cov)
    batch = gaussian_batch(rng, 400)
    one_step = fastem.GaussianMixture(
        3, covariance_type=cov, max_iter=1, tol=0, weights_init=gm.weights_,
        means_init=gm.means_, precisions_init=gm.precisions_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one_step.fit(batch)
    gm.partial_fit(batch)
    assert gm.n_steps_ == 1
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(gm, name), getattr(one_step, name), rtol=1e-9,
                                   atol=1e-9, err_msg=name)
    assert gm.lower_bound_ == pytest.approx(one_step.lower_bounds_[0], rel=1e-12)


def _raw_moments(gm, X):
    """Per-unit-weight E-step statistics of X under gm, from scipy's densities:
    s0_k = mean r_ik, s1_k = mean r_ik x_i, s2_k = mean r_ik x_i x_i^T."""
    dens = np.column_stack([w * multivariate_normal(m, c).pdf(X) for w, m, c in
                            zip(gm.weights_, gm.means_, gm.covariances_)])
    r = dens / dens.sum(axis=1, keepdims=True)
    n = X.shape[0]
    return r.sum(axis=0) / n, r.T @ X / n, np.einsum("ik,ij,il->kjl", r, X, X) / n


def test_second_step_blends_statistics_with_the_decayed_step_size():
    rng = np.random.default_rng(1)
    gm = fitted_on(gaussian_batch(rng, 600), "full")
    gm.set_params(learning_decay=0.8, learning_offset=3.0, reg_covar=1e-3)
    A, B = gaussian_batch(rng, 300), gaussian_batch(rng, 500)
    sA = _raw_moments(gm, A)
    gm.partial_fit(A)
    sB = _raw_moments(gm, B)
    gm.partial_fit(B)
    eta = (3.0 + 1) ** -0.8
    s0, s1, s2 = ((1 - eta) * a + eta * b for a, b in zip(sA, sB))
    means = s1 / s0[:, None]
    covs = s2 / s0[:, None, None] - means[:, :, None] * means[:, None, :] + 1e-3 * np.eye(2)
    np.testing.assert_allclose(gm.weights_, s0 / s0.sum(), rtol=1e-9)
    np.testing.assert_allclose(gm.means_, means, rtol=1e-9)
    np.testing.assert_allclose(gm.covariances_, covs, rtol=1e-6)
    assert gm.n_steps_ == 2 and gm.n_iter_ == 2 and not gm.converged_


@pytest.mark.parametrize("cov", ["full", "diag"])
def test_stream_recovers_the_generating_mixture(cov):
    """300 batches of 500 from random initialization.  With eta ~ 0.02 at the end the
    estimate averages roughly the last 1/eta = 55 batches: ~9,000 samples per
    component, a standard error of ~0.011 per mean coordinate; allow 5."""
    rng = np.random.default_rng(2)
    gm = fastem.GaussianMixture(3, covariance_type=cov, random_state=0)
    for _ in range(300):
        gm.partial_fit(gaussian_batch(rng, 500))
    expected = TRUE_MEANS + 100.0
    order = [int(np.argmin(((gm.means_ - t) ** 2).sum(axis=1))) for t in expected]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(gm.means_[order], expected, atol=0.06)
    np.testing.assert_allclose(gm.weights_, 1 / 3, atol=0.03)
    variances = gm.covariances_ if cov == "diag" else np.diagonal(gm.covariances_, 0, 1, 2)
    np.testing.assert_allclose(variances, 1.0, atol=0.08)
    assert gm.n_steps_ == 300


def test_bernoulli_and_categorical_streams_recover_their_tables():
    rng = np.random.default_rng(3)
    p = np.vstack([np.full(12, 0.85), np.full(12, 0.15)])
    p[1, :4] = 0.85
    bm = fastem.BernoulliMixture(2, random_state=0)
    for _ in range(200):
        lab = rng.integers(0, 2, 400)
        bm.partial_fit((rng.random((400, 12)) < p[lab]).astype(float))
    order = np.argsort(-bm.means_[:, 8])
    # ~55 batches x 200 samples per component: SE of a probability ~0.003; allow 0.03
    np.testing.assert_allclose(bm.means_[order], p, atol=0.03)

    theta = np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]])
    cm = fastem.CategoricalMixture(2, n_categories=3, random_state=1)
    for _ in range(200):
        lab = rng.integers(0, 2, 400)
        u = rng.random((400, 8))[:, :, None]
        codes = (u > np.cumsum(theta[lab], axis=1)[:, None, :]).sum(axis=2)
        cm.partial_fit(codes)
    probs = np.stack(cm.probabilities_, axis=1)  # (K, D, C)
    order = np.argsort(-probs[:, 0, 0])
    np.testing.assert_allclose(probs[order], np.repeat(theta[:, None, :], 8, axis=1),
                               atol=0.03)


def test_partial_fit_is_bit_identical_across_thread_counts():
    results = []
    for n_threads in (1, 2):
        rng = np.random.default_rng(4)
        gm = fastem.GaussianMixture(3, random_state=0, n_threads=n_threads)
        for _ in range(5):
            gm.partial_fit(gaussian_batch(rng, 300))
        results.append((gm.means_, gm.covariances_, gm.weights_))
    for a, b in zip(*results):
        assert np.array_equal(a, b)


def test_partial_fit_errors():
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match="first batch of partial_fit"):
        fastem.GaussianMixture(3).partial_fit(gaussian_batch(rng, 2))
    gm = fastem.GaussianMixture(3, random_state=0).partial_fit(gaussian_batch(rng, 100))
    with pytest.raises(ValueError, match="X has 3 features"):
        gm.partial_fit(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="learning_decay"):
        fastem.GaussianMixture(3, learning_decay=0.4).partial_fit(gaussian_batch(rng, 100))
