"""Hidden Markov models: the same fits as hmmlearn, worked examples through the public
API, EM's invariants, backends and threads, and errors."""

import logging
import warnings

import numpy as np
import pytest
from conftest import BACKENDS

import fastem
from fastem.gaussian_mixture import CollapseWarning

hmm = pytest.importorskip("hmmlearn.hmm")
logging.getLogger("hmmlearn").setLevel(logging.ERROR)  # its MultinomialHMM notice

COVS = ["spherical", "diag", "full", "tied"]
IMPLEMENTATIONS = ["log", "scaling"]
START = np.array([0.6, 0.3, 0.1])
TRANS = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
LENGTHS = [120, 40, 1, 239]  # several sequences of different lengths, one of one step


def _gaussian_data():
    ref = hmm.GaussianHMM(3, "full")
    ref.startprob_, ref.transmat_ = START, TRANS
    ref.means_ = np.array([[0.0, 0.0], [3.0, 3.0], [-3.0, 3.0]])
    ref.covars_ = np.stack([np.eye(2), [[1.0, 0.5], [0.5, 1.0]], np.eye(2) * 0.5])
    return ref.sample(sum(LENGTHS), random_state=1)[0]


def _start(model, cov):
    """The same (deliberately poor) start for both libraries."""
    model.startprob_ = np.full(3, 1 / 3)
    model.transmat_ = np.full((3, 3), 1 / 3)
    model.means_ = np.array([[0.5, 0.0], [2.0, 2.5], [-2.0, 2.0]])
    model.covars_ = {"spherical": np.full(3, 2.0), "diag": np.full((3, 2), 2.0),
                     "full": np.stack([np.eye(2) * 2] * 3), "tied": np.eye(2) * 2}[cov]
    return model


def _hmmlearn_covars(model):
    """hmmlearn's covariances in the covariance type's own shape (its spherical covars_
    getter is broken in 0.3.3: it returns (K * D, D, D))."""
    c = model._covars_
    return c[:, 0] if model.covariance_type == "spherical" else c


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("cov", COVS)
def test_gaussian_hmm_is_hmmlearns_from_the_same_start(cov, implementation):
    X = _gaussian_data()
    kw = dict(covariance_type=cov, init_params="", n_iter=15, tol=1e-10,
              implementation=implementation)
    ref = _start(hmm.GaussianHMM(3, **kw), cov).fit(X, LENGTHS)
    ours = _start(fastem.GaussianHMM(3, **kw), cov).fit(X, LENGTHS)
    np.testing.assert_allclose(ours.monitor_.history, ref.monitor_.history, rtol=1e-8)
    assert ours.monitor_.iter == ref.monitor_.iter and ours.monitor_.converged
    for name in ("startprob_", "transmat_", "means_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-6,
                                   atol=1e-9)
    np.testing.assert_allclose(ours._covars_, _hmmlearn_covars(ref), rtol=1e-6, atol=1e-9)
    if cov != "spherical":
        np.testing.assert_allclose(ours.covars_, ref.covars_, rtol=1e-6, atol=1e-9)
    assert ours.score(X, LENGTHS) == pytest.approx(ref.score(X, LENGTHS), rel=1e-10)
    lp, post = ours.score_samples(X, LENGTHS)
    ref_lp, ref_post = ref.score_samples(X, LENGTHS)
    assert lp == pytest.approx(ref_lp, rel=1e-10)
    np.testing.assert_allclose(post, ref_post, atol=1e-9)
    for algorithm in ("viterbi", "map"):
        got, want = ours.decode(X, LENGTHS, algorithm), ref.decode(X, LENGTHS, algorithm=algorithm)
        assert got[0] == pytest.approx(want[0], rel=1e-10)
        np.testing.assert_array_equal(got[1], want[1])
    assert ours.aic(X, LENGTHS) == pytest.approx(ref.aic(X, LENGTHS), rel=1e-10)
    assert ours.bic(X, LENGTHS) == pytest.approx(ref.bic(X, LENGTHS), rel=1e-10)


@pytest.mark.parametrize("cov", ["diag", "full"])
def test_gaussian_hmm_default_initialization_is_hmmlearns(cov):
    """random_state gives hmmlearn's draws of startprob_ and transmat_; the K-means start
    of the means finds the same centers on well-separated data."""
    X = _gaussian_data()
    ref = hmm.GaussianHMM(3, cov, random_state=3).fit(X, LENGTHS)
    ours = fastem.GaussianHMM(3, cov, random_state=3).fit(X, LENGTHS)
    np.testing.assert_allclose(ours.monitor_.history, ref.monitor_.history, rtol=1e-8)
    np.testing.assert_allclose(ours.transmat_, ref.transmat_, rtol=1e-6, atol=1e-9)


def _discrete_pair(kind, **kw):
    rng = np.random.default_rng(0)
    if kind == "categorical":
        gen = hmm.CategoricalHMM(3)
        gen.emissionprob_ = rng.dirichlet(np.ones(5), 3)
        pair = hmm.CategoricalHMM(3, **kw), fastem.CategoricalHMM(3, **kw)
    elif kind == "poisson":
        gen = hmm.PoissonHMM(3)
        gen.lambdas_ = np.array([[1.0, 5.0], [4.0, 1.0], [9.0, 9.0]])
        pair = hmm.PoissonHMM(3, **kw), fastem.PoissonHMM(3, **kw)
    else:
        gen = hmm.MultinomialHMM(3, n_trials=6)
        gen.emissionprob_ = rng.dirichlet(np.ones(4), 3)
        pair = hmm.MultinomialHMM(3, n_trials=6, **kw), fastem.MultinomialHMM(3, n_trials=6,
                                                                            **kw)
    gen.startprob_, gen.transmat_ = START, TRANS
    return gen.sample(sum(LENGTHS), random_state=2)[0], pair


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("kind,table", [("categorical", "emissionprob_"),
                                        ("poisson", "lambdas_"),
                                        ("multinomial", "emissionprob_")])
def test_discrete_hmms_are_hmmlearns_from_the_same_seed(kind, table, implementation):
    """Default initialization with the same random_state: hmmlearn's draws, then the same
    iterations."""
    X, (ref, ours) = _discrete_pair(kind, random_state=5, n_iter=12, tol=1e-12,
                                    implementation=implementation)
    ref.fit(X, LENGTHS)
    ours.fit(X, LENGTHS)
    np.testing.assert_allclose(ours.monitor_.history, ref.monitor_.history, rtol=1e-8)
    for name in ("startprob_", "transmat_", table):
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-6,
                                   atol=1e-9)
    np.testing.assert_array_equal(ours.predict(X, LENGTHS), ref.predict(X, LENGTHS))
    assert ours.bic(X, LENGTHS) == pytest.approx(ref.bic(X, LENGTHS), rel=1e-10)


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_sample_draws_what_hmmlearn_draws(kind):
    if kind == "categorical":
        X, (ref, ours) = _discrete_pair("categorical", random_state=5, n_iter=3)
        ref.fit(X)
        ours.fit(X)
    else:
        X = _gaussian_data()
        ref = _start(hmm.GaussianHMM(3, "full", init_params="", n_iter=3), "full").fit(X)
        ours = _start(fastem.GaussianHMM(3, "full", init_params="", n_iter=3), "full").fit(X)
    got_x, got_z = ours.sample(50, random_state=7)
    want_x, want_z = ref.sample(50, random_state=7)
    np.testing.assert_array_equal(got_z, want_z)
    np.testing.assert_allclose(got_x, want_x, rtol=1e-6)
    got_x, got_z = ours.sample(5, random_state=8, currstate=2)
    assert got_z[0] == 2
    np.testing.assert_allclose(ours.get_stationary_distribution(),
                               ref.get_stationary_distribution(), rtol=1e-8)


# ----------------------------------------------------------------- worked examples
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_wikipedia_umbrella_example_through_the_api(implementation):
    model = fastem.CategoricalHMM(2, init_params="", n_iter=0, implementation=implementation)
    model.startprob_ = np.array([0.5, 0.5])
    model.transmat_ = np.array([[0.7, 0.3], [0.3, 0.7]])
    model.emissionprob_ = np.array([[0.9, 0.1], [0.2, 0.8]])
    X = np.array([[0], [0], [1], [0], [0]])  # umbrella, umbrella, none, umbrella, umbrella
    model.fit(X)  # n_iter=0: the parameters stay as set
    assert model.score(X) == pytest.approx(-3.3725, abs=5e-5)
    post = model.predict_proba(X)
    np.testing.assert_allclose(post[:, 0], [0.8673, 0.8204, 0.3075, 0.8204, 0.8673], atol=5e-5)
    log_prob, path = model.decode(X)
    np.testing.assert_array_equal(path, [0, 0, 1, 0, 0])
    assert log_prob == pytest.approx(-4.4590, abs=5e-5)


def test_wikipedia_rainy_sunny_viterbi_example_through_the_api():
    model = fastem.CategoricalHMM(2, init_params="", n_iter=0)
    model.startprob_ = np.array([0.6, 0.4])  # rainy, sunny
    model.transmat_ = np.array([[0.7, 0.3], [0.4, 0.6]])
    model.emissionprob_ = np.array([[0.1, 0.4, 0.5], [0.6, 0.3, 0.1]])  # walk, shop, clean
    X = np.array([[0], [1], [2]])
    model.fit(X)
    log_prob, path = model.decode(X)
    np.testing.assert_array_equal(path, [1, 0, 0])
    assert np.exp(log_prob) == pytest.approx(0.01344, rel=1e-9)


def test_uniform_transitions_score_like_the_matching_mixture():
    """With every row of transmat_ equal to startprob_, the steps are independent draws
    from a mixture: the HMM's log-likelihood is GaussianMixture's, summed over rows."""
    X = _gaussian_data()
    gm = fastem.GaussianMixture(3, covariance_type="diag", random_state=0).fit(X)
    model = fastem.GaussianHMM(3, "diag", init_params="", n_iter=0)
    model.startprob_ = gm.weights_
    model.transmat_ = np.tile(gm.weights_, (3, 1))
    model.means_, model.covars_ = gm.means_, gm.covariances_
    model.fit(X)
    assert model.score(X, LENGTHS) == pytest.approx(gm.score(X) * len(X), rel=1e-12)
    np.testing.assert_allclose(model.predict_proba(X, LENGTHS), gm.predict_proba(X), atol=1e-10)


@pytest.mark.parametrize("cov", COVS)
def test_without_priors_em_never_lowers_the_log_likelihood(cov):
    X = _gaussian_data()
    model = fastem.GaussianHMM(3, cov, covars_prior=0.0, random_state=0, n_iter=40, tol=-1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the engine's "bound decreased"
        model.fit(X, LENGTHS)
    history = np.array(model.monitor_.history)
    assert len(history) == 40
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[1:]))


def test_scaling_does_not_underflow_where_hmmlearn_would():
    """Data 40 standard deviations from every mean: each step's densities are below
    1e-300, which the scaled recursions take after shifting by the step's maximum."""
    X = _gaussian_data() + 40.0
    kw = dict(covariance_type="diag", init_params="", n_iter=0)
    log = _start(fastem.GaussianHMM(3, **kw), "diag").fit(X, LENGTHS)
    scaled = _start(fastem.GaussianHMM(3, implementation="scaling", **kw), "diag").fit(X, LENGTHS)
    assert np.isfinite(scaled.score(X, LENGTHS))
    assert scaled.score(X, LENGTHS) == pytest.approx(log.score(X, LENGTHS), rel=1e-12)


def test_a_state_never_visited_keeps_its_row_and_every_row_sums_to_one():
    """State 2 has zero start probability and no transition into it: no occupancy.
    hmmlearn leaves its transmat_ row all zeros (and its mean NaN); here the row and the
    emission parameters are kept, with a warning."""
    X = _gaussian_data()
    model = _start(fastem.GaussianHMM(3, "diag", init_params="", n_iter=3), "diag")
    model.startprob_ = np.array([0.5, 0.5, 0.0])
    model.transmat_ = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    with pytest.warns(CollapseWarning, match=r"State\(s\) \[2\] had no occupancy"):
        model.fit(X, LENGTHS)
    np.testing.assert_allclose(model.transmat_.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.transmat_[2], [0.2, 0.3, 0.5])
    np.testing.assert_array_equal(model.means_[2], [-2.0, 2.0])
    assert np.isfinite(model.means_).all() and np.isfinite(model.covars_).all()


def test_a_reachable_state_with_no_occupancy_is_reseeded_at_the_worst_explained_step():
    """State 2 starts a thousand standard deviations from every step: after the first
    E-step it has no occupancy (hmmlearn gives it NaN).  It is re-seeded: its mean at the
    step the other two states (as just updated) explain worst, its covariance the data's,
    and its start and incoming transition probabilities at least 1 / n_samples, each row
    still summing to one; counted and warned, and the fit goes on finite."""
    from scipy.stats import multivariate_normal

    X = _gaussian_data()
    model = _start(fastem.GaussianHMM(3, "diag", init_params="", n_iter=1), "diag")
    model.means_ = np.array([[0.5, 0.0], [2.0, 2.5], [1000.0, 1000.0]])
    with pytest.warns(CollapseWarning, match=r"State\(s\) \[2\] had no occupancy in this "
                                             r"iteration and were re-seeded \(n_reseeded_=1\)"):
        model.fit(X, LENGTHS)
    assert model.n_reseeded_ == 1
    best = np.max([multivariate_normal(model.means_[j], np.diag(model.covars_[j])).logpdf(X)
                   for j in (0, 1)], axis=0)
    np.testing.assert_array_equal(model.means_[2], X[np.argmin(best)])
    np.testing.assert_allclose(model.covars_[2], np.diag(np.diag(np.cov(X.T)) + 1e-3),
                               rtol=1e-12)
    assert model.startprob_[2] >= 1 / len(X) and (model.transmat_[:, 2] >= 1 / len(X)).all()
    np.testing.assert_allclose(model.transmat_.sum(axis=1), 1.0, rtol=1e-14)
    assert model.startprob_.sum() == pytest.approx(1.0, rel=1e-14)
    model.set_params(init_params="", n_iter=5).fit(X, LENGTHS)  # state 2 now takes steps
    assert np.isfinite(model.means_).all() and model.predict_proba(X, LENGTHS)[:, 2].sum() > 1


def test_a_categorical_state_that_emits_no_observed_symbol_is_reseeded_at_the_frequencies():
    """State 2 only emits symbol 5, which the data never show: re-seeded, it emits with
    the data's symbol frequencies (its expected counts summed over the states are the
    counts of the observed symbols)."""
    X, _ = _discrete_pair("categorical")
    X[[3, 50]] = -1  # missing steps count toward no symbol
    model = fastem.CategoricalHMM(3, n_features=6, init_params="", n_iter=1)
    model.startprob_, model.transmat_ = START, TRANS
    model.emissionprob_ = np.array([[0.3, 0.2, 0.2, 0.2, 0.1, 0.0],
                                    [0.1, 0.1, 0.2, 0.3, 0.3, 0.0], [0, 0, 0, 0, 0, 1.0]])
    with pytest.warns(CollapseWarning, match="re-seeded"):
        model.fit(X, LENGTHS)
    observed = X[X[:, 0] >= 0, 0]
    np.testing.assert_allclose(model.emissionprob_[2],
                               np.bincount(observed, minlength=6) / observed.size, rtol=1e-10)
    assert model.n_reseeded_ == 1


def test_a_state_whose_emissions_params_fixes_is_kept_with_a_warning():
    X = _gaussian_data()
    model = _start(fastem.GaussianHMM(3, "diag", init_params="", params="st", n_iter=1), "diag")
    model.means_ = np.array([[0.5, 0.0], [2.0, 2.5], [1000.0, 1000.0]])
    with pytest.warns(CollapseWarning, match="params leaves their emissions fixed"):
        model.fit(X, LENGTHS)
    np.testing.assert_array_equal(model.means_[2], [1000.0, 1000.0])
    assert model.n_reseeded_ == 0


# ----------------------------------------------------------------- backends and threads
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_every_backend_fits_the_same_model(implementation):
    X = _gaussian_data()
    fits = {b: _start(fastem.GaussianHMM(3, "full", init_params="", n_iter=5, backend=b,
                                         implementation=implementation), "full").fit(X, LENGTHS)
            for b in BACKENDS}
    ref = fits["numpy"]
    for b, model in fits.items():
        np.testing.assert_allclose(model.monitor_.history, ref.monitor_.history, rtol=1e-11)
        np.testing.assert_allclose(model.means_, ref.means_, rtol=1e-9)
        np.testing.assert_array_equal(model.predict(X, LENGTHS), ref.predict(X, LENGTHS))


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
def test_fits_are_bit_identical_for_any_thread_count(backend):
    X = _gaussian_data()
    fits = [_start(fastem.GaussianHMM(3, "full", init_params="", n_iter=5, backend=backend,
                                      n_threads=t), "full").fit(X, LENGTHS) for t in (1, 2, 4)]
    for model in fits[1:]:
        assert model.monitor_.history == fits[0].monitor_.history
        np.testing.assert_array_equal(model.means_, fits[0].means_)
        np.testing.assert_array_equal(model.transmat_, fits[0].transmat_)


def test_one_model_predicting_in_several_threads_at_once_gives_each_its_answer():
    """Each call's work arrays are its thread's own (``fastem/kernels/_scratch.py``)."""
    from concurrent.futures import ThreadPoolExecutor

    model = _start(fastem.GaussianHMM(3, "diag", init_params="", n_iter=2), "diag")
    model.fit(_gaussian_data(), LENGTHS)
    batches = [_gaussian_data()[i:i + 150 + 20 * i] for i in range(6)]
    alone = [model.score_samples(b) for b in batches]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(model.score_samples, batches * 3))
    for (lp, post), (ref_lp, ref_post) in zip(together, alone * 3):
        assert lp == ref_lp
        np.testing.assert_array_equal(post, ref_post)


def test_sequences_are_cut_into_chunks_of_whole_sequences(monkeypatch):
    """Many chunks (a tiny chunk budget) give the one-chunk fit: the statistics add up."""
    import fastem._hmm as base

    X = _gaussian_data()
    lengths = [20] * 20
    one = _start(fastem.GaussianHMM(3, "diag", init_params="", n_iter=4), "diag").fit(X, lengths)
    monkeypatch.setattr(base, "_CHUNK_VALUES", 3 * 50)
    many = _start(fastem.GaussianHMM(3, "diag", init_params="", n_iter=4), "diag")
    assert len(base.Sequences(X, lengths, 3).groups) == 10
    many.fit(X, lengths)
    np.testing.assert_allclose(many.monitor_.history, one.monitor_.history, rtol=1e-12)
    np.testing.assert_allclose(many.means_, one.means_, rtol=1e-12)


@pytest.mark.parametrize("lengths", [[500] * 200, None])
def test_a_memory_mapped_x_is_read_a_chunk_at_a_time(monkeypatch, tmp_path, lengths):
    """Validating a memory map or ``Chunks`` of files (missing rows in it), its mean and
    covariance, and the EM iterations allocate a small part of X's size, for many
    sequences and for one long one (taken in blocks), and give the fit of the same array
    in memory, bit for bit.  (The K-means
    start of the means is KMeans' own streaming fit.)"""
    import tracemalloc

    import fastem._hmm as base

    rng = np.random.default_rng(8)
    X = rng.standard_normal((100_000, 4)) + np.repeat(rng.normal(0, 4, (200, 4)), 500, axis=0)
    X[::997] = np.nan
    np.save(tmp_path / "x.npy", X)
    monkeypatch.setattr(base, "_CHUNK_VALUES", 3 * 2_000)  # 4 sequences a chunk
    monkeypatch.setattr(base, "_SEQUENCE_VALUES", 3 * 2_000)  # or blocks of 2,000 steps
    monkeypatch.setattr(base, "_ROW_BLOCK", 2_000)

    def model():
        m = fastem.GaussianHMM(3, "full", n_iter=3, init_params="st", random_state=0)
        m.means_ = np.array([[0.0, 0.0, 0.0, 0.0], [3.0, 3.0, 3.0, 3.0], [-3.0, 0.0, 3.0, 0.0]])
        m.covars_ = np.stack([np.eye(4) * 4.0] * 3)
        return m

    in_memory = model().fit(X, lengths)
    for i, part in enumerate(np.split(X, [33_333, 66_666])):  # cut inside sequences
        np.save(tmp_path / f"part{i}.npy", part)
    for source in (np.load(tmp_path / "x.npy", mmap_mode="r"),
                   fastem.Chunks(sorted(map(str, tmp_path.glob("part*.npy"))))):
        tracemalloc.start()
        fitted = model().fit(source, lengths)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < X.nbytes / 4, (peak, X.nbytes)
        assert list(fitted.monitor_.history) == list(in_memory.monitor_.history)
        np.testing.assert_array_equal(fitted.means_, in_memory.means_)


def _pieces(X, cuts=(37, 38, 150, 161)):
    """X cut at ``cuts``: pieces that split sequences (and one piece of one row)."""
    return np.split(X, list(cuts))


@pytest.mark.parametrize("kind", ["gaussian", "gmm", "categorical", "poisson", "multinomial"])
def test_chunks_cut_inside_sequences_fit_like_the_array(kind):
    """Every HMM fits ``Chunks`` (a list of pieces, and a function yielding them) from
    its default start (K-means for the Gaussian ones, with missing rows in X) to the
    model of the stacked array, bit for bit; score, posteriors, decoding and BIC
    agree."""
    if kind in ("gaussian", "gmm"):
        X = _gaussian_data()
        X[[5, 60, 200]] = np.nan
        make = {"gaussian": lambda: fastem.GaussianHMM(3, "full", n_iter=4, random_state=0),
                "gmm": lambda: fastem.GMMHMM(2, n_mix=2, n_iter=4, random_state=0)}[kind]
    else:
        X, _ = _discrete_pair(kind)
        if kind == "categorical":
            X[[5, 60]] = -1
        cls = {"categorical": fastem.CategoricalHMM, "poisson": fastem.PoissonHMM,
               "multinomial": fastem.MultinomialHMM}[kind]
        make = lambda: cls(3, n_iter=4, random_state=0)  # noqa: E731
    pieces = _pieces(X)
    whole = make().fit(X, LENGTHS)
    for source in (pieces, lambda: iter(pieces)):
        streamed = make().fit(fastem.Chunks(source), LENGTHS)
        assert list(streamed.monitor_.history) == list(whole.monitor_.history)
        for name in ("startprob_", "transmat_", *whole._emission_attributes):
            np.testing.assert_array_equal(getattr(streamed, name), getattr(whole, name))
    data = fastem.Chunks(pieces)
    assert whole.score(data, LENGTHS) == whole.score(X, LENGTHS)
    np.testing.assert_array_equal(whole.predict_proba(data, LENGTHS),
                                  whole.predict_proba(X, LENGTHS))
    np.testing.assert_array_equal(whole.predict(data, LENGTHS), whole.predict(X, LENGTHS))
    assert whole.bic(data, LENGTHS) == whole.bic(X, LENGTHS)


def test_a_long_sequence_in_blocks_across_streamed_pieces(monkeypatch):
    """A function's pieces are read forward, and again from the first for each block the
    backward pass goes back to: one sequence in blocks of 50 steps across pieces of
    other sizes fits as the array does; a piece that changes size is refused."""
    import fastem._hmm as base

    monkeypatch.setattr(base, "_SEQUENCE_VALUES", 3 * 50)
    X = _gaussian_data()
    pieces = _pieces(X, (33, 120, 121, 310))
    make = lambda: _start(fastem.GaussianHMM(3, "diag", init_params="", n_iter=3), "diag")  # noqa: E731
    whole = make().fit(X)
    reads = []

    def source():
        reads.append(1)
        return iter(pieces)
    streamed = make().fit(fastem.Chunks(source))
    np.testing.assert_array_equal(streamed.means_, whole.means_)
    assert list(streamed.monitor_.history) == list(whole.monitor_.history)
    assert len(reads) > 3 * 8  # each backward block reread the pieces from the first
    changed = [pieces[0], pieces[1][:-1], *pieces[2:]]
    calls = iter([pieces, changed])
    with pytest.raises(ValueError, match=r"the data changed while fitting: piece 1 of X no "
                                         r"longer has the 87 rows"):
        make().fit(fastem.Chunks(lambda: iter(next(calls, changed))))


def test_bad_pieces_of_sequences_are_named():
    X = _gaussian_data()
    with pytest.raises(ValueError, match="piece 1 of X has 3 columns but the first has 2"):
        fastem.GaussianHMM(2).fit(fastem.Chunks([X[:10], np.zeros((5, 3))]))
    bad = X[10:20].copy()
    bad[4, 0] = np.nan
    with pytest.raises(ValueError, match="Row 4 of piece 1 of X has some features NaN"):
        fastem.GaussianHMM(2).fit(fastem.Chunks([X[:10], bad]))
    with pytest.raises(ValueError, match="lengths must sum to len"):
        fastem.GaussianHMM(2).fit(fastem.Chunks([X[:10], X[10:]]), [5, 5])
    with pytest.raises(ValueError, match=r"X \(Chunks\) yielded no data"):
        fastem.GaussianHMM(2).fit(fastem.Chunks(lambda: iter([])))


def test_a_callback_sees_every_iteration_and_can_stop_the_fit():
    seen = []
    m = _start(fastem.GaussianHMM(3, "diag", init_params="", n_iter=20, tol=-1e9), "diag")
    m.fit(_gaussian_data(), LENGTHS,
          callback=lambda info: seen.append(info) or info["iteration"] == 4)
    assert [i["iteration"] for i in seen] == [1, 2, 3, 4]
    assert [i["lower_bound"] for i in seen] == list(m.monitor_.history)
    assert m.n_iter_ == 4


# ----------------------------------------------------------------- errors
@pytest.mark.parametrize("lengths,message", [
    ([100, 100], "lengths must sum to len"),
    ([500, -100], "lengths must be non-negative"),
    ([[400]], "lengths must be a 1-D array"),
    ([399.5, 0.5], "lengths must be a 1-D array of non-negative integers")])
def test_lengths_that_do_not_describe_x_are_refused(lengths, message):
    with pytest.raises(ValueError, match=message):
        fastem.GaussianHMM(2).fit(_gaussian_data(), lengths)


@pytest.mark.parametrize("X,message", [
    (np.array([[0.5], [1.0]]), "integer symbols"),
    (np.array([[0], [-2]]), r"non-negative symbols \(or -1 for a missing observation\)"),
    (np.array([0, 1, 2]), "reshape a 1-D array"),
    (np.array([[0, 1], [1, 0]]), r"shape \(n_samples, 1\)")])
def test_categorical_hmm_refuses_what_is_not_symbols(X, message):
    with pytest.raises(ValueError, match=message):
        fastem.CategoricalHMM(2).fit(X)


def test_symbols_beyond_n_features_are_refused():
    with pytest.raises(ValueError, match="Largest symbol is 3 but the model only emits"):
        fastem.CategoricalHMM(2, n_features=3).fit(np.array([[0], [3]]))


@pytest.mark.parametrize("params,message", [
    (dict(algorithm="beam"), "'algorithm' parameter"),
    (dict(implementation="fast"), "'implementation' parameter"),
    (dict(n_iter=-1), "'n_iter' parameter"),
    (dict(covariance_type="block"), "'covariance_type' parameter"),
    (dict(transmat_prior=np.ones((3, 3))), "transmat_prior must be a scalar or broadcast")])
def test_bad_parameters_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        fastem.GaussianHMM(2, **params).fit(_gaussian_data())


def test_parameters_set_by_hand_are_checked():
    model = _start(fastem.GaussianHMM(3, "diag", init_params=""), "diag")
    model.transmat_ = np.full((3, 3), 0.5)
    with pytest.raises(ValueError, match="transmat_ rows must sum to 1"):
        model.fit(_gaussian_data())
    with pytest.raises(ValueError, match="'diag' covars_ must be positive"):
        model.covars_ = np.zeros((3, 2))


def test_an_impossible_sequence_is_a_clear_error():
    model = fastem.CategoricalHMM(2, init_params="", n_iter=1)
    model.startprob_ = np.array([1.0, 0.0])
    model.transmat_ = np.eye(2)  # state 0 forever
    model.emissionprob_ = np.array([[1.0, 0.0], [0.0, 1.0]])  # state 0 never emits 1
    with pytest.raises(ValueError, match="has probability zero under the model"):
        model.fit(np.array([[0], [1]]))


def test_inference_before_fit_is_refused():
    with pytest.raises(fastem.exceptions.NotFittedError, match="not fitted yet"):
        fastem.GaussianHMM(2).predict(np.zeros((3, 2)))


# ----------------------------------------------------------------- missing observations
def _forward_across_gaps(start, trans, dens):
    """log P(x) by the forward recursion on probabilities, dens (T, K) the emission
    densities with NaN for an unobserved step: across a gap of g steps the chain moves
    by trans^(g + 1) (the hidden steps summed out by hand)."""
    steps = [t for t in range(dens.shape[0]) if not np.isnan(dens[t, 0])]
    alpha = start @ np.linalg.matrix_power(trans, steps[0]) * dens[steps[0]]
    log_p = np.log(alpha.sum())
    alpha /= alpha.sum()
    for prev, t in zip(steps, steps[1:]):
        alpha = alpha @ np.linalg.matrix_power(trans, t - prev) * dens[t]
        log_p += np.log(alpha.sum())
        alpha /= alpha.sum()
    return log_p


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_a_nan_row_is_an_unobserved_step_marginalised_exactly(implementation):
    from scipy import stats

    X = _gaussian_data()[:60].copy()
    X[[0, 17, 18, 19, 40, 59]] = np.nan  # the first, a run of three, one alone, the last
    model = _start(fastem.GaussianHMM(3, "full", implementation=implementation,
                                      init_params="", params="", n_iter=1), "full")
    model.startprob_, model.transmat_ = START, TRANS
    model.fit(X)  # params="": fitted, the parameters as set
    dens = np.column_stack([stats.multivariate_normal(model.means_[j], model.covars_[j]).pdf(X)
                            for j in range(3)])
    dens[np.isnan(X[:, 0])] = np.nan
    assert model.score(X) == pytest.approx(_forward_across_gaps(START, TRANS, dens),
                                           rel=1e-12)
    log_p, post = model.score_samples(X)
    np.testing.assert_allclose(post.sum(axis=1), 1.0, rtol=1e-12)
    # decoding gives every step a state, the missing ones too, from the posteriors
    np.testing.assert_array_equal(model.decode(X, algorithm="map")[1], post.argmax(axis=1))
    assert model.predict(X).shape == (60,)


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_a_trailing_missing_step_leaves_a_fit_with_fixed_transitions_unchanged(kind):
    """Summed out, an unobserved last step contributes a factor of one to the likelihood
    and nothing to the start and emission statistics: with transmat_ held fixed the fit
    is the fit without it."""
    if kind == "gaussian":
        X = _gaussian_data()[:200]
        tail = np.full((1, 2), np.nan)

        def make():
            return _start(fastem.GaussianHMM(3, "diag", init_params="", params="smc",
                                             n_iter=5), "diag")
    else:
        X = np.random.default_rng(4).integers(0, 4, size=(200, 1))
        tail = np.array([[-1]])

        def make():
            model = fastem.CategoricalHMM(3, init_params="", params="se", n_iter=5)
            model.startprob_, model.transmat_ = np.full(3, 1 / 3), TRANS
            model.emissionprob_ = np.random.default_rng(5).dirichlet(np.ones(4), size=3)
            return model
    lengths = [120, 80]
    plain = make().fit(X, lengths)
    gapped = make().fit(np.vstack([X[:120], tail, X[120:], tail]), [121, 81])
    for name in ("startprob_", "means_", "_covars_", "emissionprob_"):
        if hasattr(plain, name):
            np.testing.assert_allclose(getattr(gapped, name), getattr(plain, name),
                                       rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(gapped.monitor_.history, plain.monitor_.history, rtol=1e-12)


def test_a_minus_one_symbol_is_an_unobserved_step():
    model = fastem.CategoricalHMM(3, init_params="", params="", n_iter=1)
    model.startprob_, model.transmat_ = START, TRANS
    model.emissionprob_ = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    X = np.array([[0], [2], [-1], [-1], [1], [0], [-1]])
    dens = np.where(X >= 0, model.emissionprob_.T[X[:, 0]], np.nan)
    model.fit(X)  # params="": fitted, the parameters as set
    assert model.score(X) == pytest.approx(_forward_across_gaps(START, TRANS, dens), rel=1e-12)
    assert model.predict(X).shape == (7,)


def test_partly_missing_rows_are_refused():
    X = _gaussian_data()[:50].copy()
    X[7, 1] = np.nan
    with pytest.raises(ValueError, match="Row 7 of X has some features NaN and others"):
        fastem.GaussianHMM(2).fit(X)
    X[7, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        fastem.GaussianHMM(2).fit(X)


def test_a_killed_fit_resumes_from_its_checkpoint_to_the_same_model(tmp_path, monkeypatch):
    X = _gaussian_data()
    path = tmp_path / "hmm.ckpt"

    def make():
        return fastem.GaussianHMM(3, "full", n_iter=12, tol=1e-12, random_state=4)

    reference = make().fit(X, LENGTHS)
    calls = []
    real = fastem.GaussianHMM._em_iterate

    def dies_in_the_seventh_iteration(self, data):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real(self, data)

    monkeypatch.setattr(fastem.GaussianHMM, "_em_iterate", dies_in_the_seventh_iteration)
    with pytest.raises(KeyboardInterrupt):
        make().fit(X, LENGTHS, checkpoint=path, checkpoint_every=2)
    monkeypatch.setattr(fastem.GaussianHMM, "_em_iterate", real)
    assert path.exists()
    with pytest.raises(ValueError, match="written by a different fit"):  # other sequences
        make().fit(X, [LENGTHS[0] + 1] + LENGTHS[1:-1] + [LENGTHS[-1] - 1], checkpoint=path)
    calls.clear()
    monkeypatch.setattr(fastem.GaussianHMM, "_em_iterate",
                        lambda self, data: calls.append(1) or real(self, data))
    resumed = make().fit(X, LENGTHS, checkpoint=path, checkpoint_every=2)
    assert len(calls) == 6  # from the checkpoint of iteration 6: iterations 7 to 12
    assert not path.exists()
    assert list(resumed.monitor_.history) == list(reference.monitor_.history)
    assert resumed.n_iter_ == reference.n_iter_ == 12
    for name in ("startprob_", "transmat_", "means_", "_covars_"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(reference, name))


# ----------------------------------------------------------------- stepwise EM
@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_the_first_partial_fit_is_one_baum_welch_iteration(kind):
    if kind == "gaussian":
        X, make = _gaussian_data(), lambda: fastem.GaussianHMM(3, "full", n_iter=1,
                                                               random_state=2)
    else:
        X, _ = _discrete_pair("categorical")
        make = lambda: fastem.CategoricalHMM(3, n_iter=1, random_state=2)  # noqa: E731
    fitted, stepped = make().fit(X, LENGTHS), make().partial_fit(X, LENGTHS)
    assert list(stepped.monitor_.history) == list(fitted.monitor_.history)
    for name in ("startprob_", "transmat_", *fitted._emission_attributes):
        np.testing.assert_allclose(getattr(stepped, name), getattr(fitted, name), rtol=1e-12,
                                   atol=1e-15)
    assert stepped.n_steps_ == 1


def test_a_later_partial_fit_averages_the_statistics_with_its_step_size():
    """Step t: s = (1 - eta) s_old + eta s(batch) per step of data, eta = (10 + t)^-0.7;
    with flat priors every categorical parameter is its normalized statistic."""
    X, _ = _discrete_pair("categorical")
    first, second = X[:200], X[200:]
    model = fastem.CategoricalHMM(3, random_state=2).partial_fit(first)
    s_old = [np.asarray(a) for a in model._running_stats]  # per step of data
    before = fastem.CategoricalHMM(3, init_params="", params="", n_iter=1)
    before.startprob_, before.transmat_ = model.startprob_, model.transmat_
    before.emissionprob_ = model.emissionprob_
    before.fit(second)  # params="": the model as it is; then its statistics of the batch
    _, batch = before._summarize(before._sequences(second, None, reset=False))
    model.partial_fit(second)
    eta = (10.0 + 1) ** -0.7
    start, trans, counts = [(1 - eta) * a + eta * np.asarray(b) / second.shape[0]
                            for a, b in zip(s_old, batch)]
    np.testing.assert_allclose(model.startprob_, start / start.sum(), rtol=1e-12)
    np.testing.assert_allclose(model.transmat_, trans / trans.sum(axis=1, keepdims=True),
                               rtol=1e-12)
    np.testing.assert_allclose(model.emissionprob_, counts / counts.sum(axis=1, keepdims=True),
                               rtol=1e-12)
    assert model.n_steps_ == 2 and len(model.monitor_.history) == 2


def test_stepwise_em_on_a_stream_of_sequences_finds_the_generating_model():
    gen = hmm.GaussianHMM(2, "diag")
    gen.startprob_, gen.transmat_ = np.array([0.5, 0.5]), np.array([[0.9, 0.1], [0.2, 0.8]])
    gen.means_, gen.covars_ = np.array([[0.0, 0.0], [3.0, -3.0]]), np.ones((2, 2))
    model = fastem.GaussianHMM(2, "diag", random_state=0)
    for batch in range(40):
        X = np.vstack([gen.sample(100, random_state=1000 * batch + s)[0] for s in range(5)])
        model.partial_fit(X, [100] * 5)
    order = np.argsort(model.means_[:, 0])
    np.testing.assert_allclose(model.means_[order], gen.means_, atol=0.1)
    np.testing.assert_allclose(model.transmat_[np.ix_(order, order)], gen.transmat_, atol=0.05)
    np.testing.assert_allclose(model.covars_[order].diagonal(axis1=1, axis2=2), 1.0, atol=0.1)


def test_partial_fit_step_sizes_are_checked():
    with pytest.raises(ValueError, match=r"learning_decay in \(0.5, 1\]"):
        fastem.GaussianHMM(2).partial_fit(_gaussian_data(), learning_decay=0.4)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_a_sequence_longer_than_a_chunk_is_taken_in_blocks_exactly(monkeypatch, kind,
                                                                  implementation):
    """One sequence cut into blocks of 50 steps (the forward state carried across each
    boundary, the backward one brought back) gives the fit, score and posteriors of the
    whole sequence at once, with forbidden transitions in the model."""
    import fastem._hmm as base

    trans = np.array([[0.8, 0.2, 0.0], [0.0, 0.7, 0.3], [0.25, 0.0, 0.75]])
    if kind == "gaussian":
        X = _gaussian_data()

        def make():
            m = _start(fastem.GaussianHMM(3, "full", init_params="", n_iter=5,
                                          implementation=implementation), "full")
            m.transmat_ = trans
            return m
    else:
        X, _ = _discrete_pair("categorical")

        def make():
            m = fastem.CategoricalHMM(3, init_params="e", n_iter=5, random_state=0,
                                      implementation=implementation)
            m.startprob_, m.transmat_ = START, trans
            return m
    whole = make().fit(X)
    monkeypatch.setattr(base, "_SEQUENCE_VALUES", 3 * 50)
    assert len(base.Sequences(X, None, 3).pieces().__next__()[3]) == 8
    blocked = make().fit(X)
    np.testing.assert_allclose(blocked.monitor_.history, whole.monitor_.history, rtol=1e-12)
    for name in ("startprob_", "transmat_", *whole._emission_attributes):
        np.testing.assert_allclose(getattr(blocked, name), getattr(whole, name), rtol=1e-9,
                                   atol=1e-12)
    lp, post = blocked.score_samples(X)
    monkeypatch.setattr(base, "_SEQUENCE_VALUES", 1 << 25)
    ref_lp, ref_post = blocked.score_samples(X)
    assert lp == pytest.approx(ref_lp, rel=1e-12)
    np.testing.assert_allclose(post, ref_post, atol=1e-10)


def test_too_few_observed_rows_or_symbols_to_start_are_refused():
    X = np.full((6, 2), np.nan)
    X[0] = [0.0, 1.0]
    with pytest.raises(ValueError, match="X has 1 observed rows .* needs at least "
                                         "n_components = 2"):
        fastem.GaussianHMM(2).fit(X)
    with pytest.raises(ValueError, match="X has no observed symbol .* set n_features"):
        fastem.CategoricalHMM(2).fit(np.full((5, 1), -1))
