"""GMMHMM: the same fits as hmmlearn's (from the same start and from the same seed),
its draws, missing observations, degenerate components, and errors."""

import warnings

import numpy as np
import pytest

import fastem
from fastem.gaussian_mixture import CollapseWarning

hmm = pytest.importorskip("hmmlearn.hmm")

COVS = ["spherical", "diag", "full", "tied"]
LENGTHS = [150, 60, 1, 189]
K, M, D = 2, 2, 2


def _data():
    """Two states, each a mixture of two well-separated Gaussians."""
    rng = np.random.default_rng(0)
    means = np.array([[[0.0, 0.0], [4.0, 0.0]], [[0.0, 6.0], [5.0, 6.0]]])
    z, x = 0, []
    for _ in range(sum(LENGTHS)):
        z = z if rng.random() < 0.9 else 1 - z
        m = int(rng.random() < 0.4)
        x.append(means[z, m] + rng.normal(size=D) * (0.5 + 0.3 * m))
    return np.array(x)


def _start(model, cov):
    """One (imperfect) start for both libraries."""
    model.startprob_ = np.array([0.5, 0.5])
    model.transmat_ = np.array([[0.7, 0.3], [0.4, 0.6]])
    model.weights_ = np.array([[0.5, 0.5], [0.3, 0.7]])
    model.means_ = np.array([[[0.5, 0.5], [3.0, -0.5]], [[-0.5, 5.0], [4.0, 5.5]]])
    model.covars_ = {"spherical": np.full((K, M), 1.5),
                     "diag": np.full((K, M, D), 1.5),
                     "full": np.tile(np.eye(D) * 1.5, (K, M, 1, 1)),
                     "tied": np.tile(np.eye(D) * 1.5, (K, 1, 1))}[cov]
    return model


@pytest.mark.parametrize("implementation", ["log", "scaling"])
@pytest.mark.parametrize("cov", COVS)
def test_gmm_hmm_is_hmmlearns_from_the_same_start(cov, implementation):
    X = _data()
    kw = dict(n_mix=M, covariance_type=cov, init_params="", n_iter=12, tol=1e-10,
              implementation=implementation)
    ref = _start(hmm.GMMHMM(K, **kw), cov).fit(X, LENGTHS)
    ours = _start(fastem.GMMHMM(K, **kw), cov).fit(X, LENGTHS)
    np.testing.assert_allclose(ours.monitor_.history, ref.monitor_.history, rtol=1e-8)
    for name in ("startprob_", "transmat_", "weights_", "means_", "covars_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-6,
                                   atol=1e-9, err_msg=name)
    lp, post = ours.score_samples(X, LENGTHS)
    ref_lp, ref_post = ref.score_samples(X, LENGTHS)
    assert lp == pytest.approx(ref_lp, rel=1e-10)
    np.testing.assert_allclose(post, ref_post, atol=1e-9)
    np.testing.assert_array_equal(ours.predict(X, LENGTHS), ref.predict(X, LENGTHS))


@pytest.mark.parametrize("cov", ["diag", "full"])
def test_gmm_hmm_default_initialization_is_hmmlearns(cov):
    """The same random_state: hmmlearn's draws of startprob_ / transmat_ and its K-means
    of the states, then of each state's rows, on data where those find the same
    centers."""
    X = _data()
    ref = hmm.GMMHMM(K, n_mix=M, covariance_type=cov, random_state=1, n_iter=5).fit(X, LENGTHS)
    ours = fastem.GMMHMM(K, n_mix=M, covariance_type=cov, random_state=1,
                         n_iter=5).fit(X, LENGTHS)
    np.testing.assert_allclose(ours.monitor_.history, ref.monitor_.history, rtol=1e-8)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-6, atol=1e-9)


def test_sample_draws_what_hmmlearn_draws():
    X = _data()
    kw = dict(n_mix=M, covariance_type="full", init_params="", n_iter=2)
    ref = _start(hmm.GMMHMM(K, **kw), "full").fit(X)
    ours = _start(fastem.GMMHMM(K, **kw), "full").fit(X)
    got_x, got_z = ours.sample(40, random_state=3)
    want_x, want_z = ref.sample(40, random_state=3)
    np.testing.assert_array_equal(got_z, want_z)
    np.testing.assert_allclose(got_x, want_x, rtol=1e-6)


def test_one_component_of_one_state_scores_as_a_gaussian_hmm():
    """n_mix = 1 with the same parameters: the emission density is the state's Gaussian,
    so the likelihood and the posteriors are GaussianHMM's."""
    X = _data()
    g = fastem.GMMHMM(K, n_mix=1, covariance_type="full", init_params="", params="",
                      n_iter=1)
    h = fastem.GaussianHMM(K, covariance_type="full", init_params="", params="", n_iter=1)
    for model in (g, h):
        model.startprob_ = np.array([0.5, 0.5])
        model.transmat_ = np.array([[0.7, 0.3], [0.4, 0.6]])
    g.weights_ = np.ones((K, 1))
    g.means_ = np.array([[[1.0, 0.0]], [[2.0, 6.0]]])
    g.covars_ = np.array([[[[2.0, 0.3], [0.3, 1.0]]], [[[1.0, 0.0], [0.0, 3.0]]]])
    h.means_, h.covars_ = g.means_[:, 0], g.covars_[:, 0]
    g.fit(X, LENGTHS)
    h.fit(X, LENGTHS)
    assert g.score(X, LENGTHS) == pytest.approx(h.score(X, LENGTHS), rel=1e-12)
    np.testing.assert_allclose(g.predict_proba(X, LENGTHS), h.predict_proba(X, LENGTHS),
                               atol=1e-12)


def test_missing_rows_are_marginalised():
    """An all-NaN last row of each sequence: with transmat_ held fixed, the fit of the
    data without those rows."""
    X = _data()[:210]
    kw = dict(n_mix=M, covariance_type="diag", init_params="", params="swmc", n_iter=5)
    plain = _start(fastem.GMMHMM(K, **kw), "diag").fit(X, [150, 60])
    gap = np.full((1, D), np.nan)
    gapped = _start(fastem.GMMHMM(K, **kw), "diag").fit(
        np.vstack([X[:150], gap, X[150:], gap]), [151, 61])
    for name in ("startprob_", "weights_", "means_", "covars_"):
        np.testing.assert_allclose(getattr(gapped, name), getattr(plain, name), rtol=1e-10,
                                   atol=1e-13, err_msg=name)


def test_a_component_without_data_gets_weight_zero_and_keeps_its_covariance():
    """hmmlearn's rule for the weight (0) and the mean (0 / 1: it no longer matters);
    hmmlearn's covariance would be 0 / 0 = NaN, this keeps the previous one and warns."""
    X = _data()
    model = _start(fastem.GMMHMM(K, n_mix=M, init_params="", n_iter=2), "diag")
    model.means_ = model.means_.copy()
    model.means_[1, 1] = [1e3, 1e3]  # far from every row: no responsibility
    before = model.covars_[1, 1].copy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, LENGTHS)
    assert any(issubclass(w.category, CollapseWarning) for w in caught)
    assert model.weights_[1, 1] == 0.0
    np.testing.assert_array_equal(model.means_[1, 1], [0.0, 0.0])
    np.testing.assert_array_equal(model.covars_[1, 1], before)
    assert np.isfinite(model.covars_).all() and np.isfinite(model.score(X, LENGTHS))
    np.testing.assert_allclose(model.weights_.sum(axis=1), 1.0, rtol=1e-12)


def test_aic_and_bic_count_every_states_mixture_weights():
    X = _data()
    model = _start(fastem.GMMHMM(K, n_mix=M, init_params="", n_iter=1), "diag").fit(X)
    # s: K - 1, t: K (K - 1), m: K M D, c: K M D, w: K (M - 1)
    n_params = (K - 1) + K * (K - 1) + 2 * K * M * D + K * (M - 1)
    assert model.aic(X) == pytest.approx(-2 * model.score(X) + 2 * n_params, rel=1e-12)


@pytest.mark.parametrize("attr,value,message", [
    ("weights_", np.full((K, M), 0.4), "weights_ rows must sum to 1"),
    ("means_", np.zeros((K, D)), r"means_ must be a finite array of shape \(2, 2, n_features\)"),
    ("covars_", np.full((K, M), 1.0), r"covars_ for covariance_type='diag' must be .* shape"),
    ("covars_", np.full((K, M, D), -1.0), "'diag' covars_ must be positive")])
def test_parameters_set_by_hand_are_checked(attr, value, message):
    model = _start(fastem.GMMHMM(K, n_mix=M, init_params=""), "diag")
    setattr(model, attr, value)
    with pytest.raises(ValueError, match=message):
        model.fit(_data())


def test_priors_that_do_not_broadcast_are_named():
    model = _start(fastem.GMMHMM(K, n_mix=M, init_params="", weights_prior=np.ones(5)), "diag")
    with pytest.raises(ValueError, match=r"weights_prior must be a scalar or broadcast to "
                                         r"shape \(2, 2\)"):
        model.fit(_data())


def test_a_state_without_data_is_reseeded_on_the_worst_explained_steps():
    """State 1 far from every row: its two components are re-seeded on the two steps
    state 0 (as just updated) explains worst, with equal weights and the data's
    covariance."""
    from scipy.stats import multivariate_normal

    X = _data()
    model = _start(fastem.GMMHMM(K, n_mix=M, covariance_type="full", init_params="",
                                 n_iter=1), "full")
    model.means_ = model.means_.copy()
    model.means_[1] = [[1e3, 1e3], [2e3, 1e3]]
    with pytest.warns(CollapseWarning, match=r"State\(s\) \[1\] had no occupancy .* re-seeded"):
        model.fit(X, LENGTHS)
    density = sum(model.weights_[0, m] * multivariate_normal(model.means_[0, m],
                                                             model.covars_[0, m]).pdf(X)
                  for m in range(M))
    worst = np.lexsort((np.arange(len(X)), np.log(density)))[:2]
    np.testing.assert_array_equal(model.means_[1], X[worst])
    np.testing.assert_array_equal(model.weights_[1], [0.5, 0.5])
    np.testing.assert_allclose(model.covars_[1], np.tile(np.cov(X.T) + 1e-3 * np.eye(D),
                                                         (M, 1, 1)), rtol=1e-12)
    assert model.n_reseeded_ == 1
