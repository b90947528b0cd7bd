"""Fits on Dask arrays equal the in-memory fits bit for bit.

Every fit here runs twice: on a ``distributed.LocalCluster`` of 2 worker processes
(one thread each), and under dask's local synchronous scheduler (one worker, in this
process).  Both must give exactly the fitted attributes of the in-memory fit of the
same rows under the same ``chunk_bytes``.  Blocks are deliberately not aligned to
fastem's chunks (the fit re-chunks them).
"""

import subprocess
import sys
import warnings

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fastem  # noqa: E402
from fingerprint_grid import fingerprint  # noqa: E402

#: 1536 bytes: 64 float64 rows of 3 features per chunk, so 600 rows make 10 chunks
CHUNK_BYTES = 1536


@pytest.fixture(scope="module")
def cluster_client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            yield client


@pytest.fixture(params=["cluster", "sync"])
def scheduler(request, cluster_client):
    """Runs the test body on the 2-worker cluster, or with the synchronous scheduler (a
    local scheduler set in dask's config wins over a running client)."""
    if request.param == "cluster":
        with cluster_client.as_current():
            yield request.param
    else:
        with dask.config.set(scheduler="sync"):
            yield request.param


def _data(dtype, n=600, d=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-8, 8, size=(4, d))
    X = centers[rng.integers(0, 4, n)] + rng.standard_normal((n, d))
    return X.astype(dtype)


def _fit_both(make, X, sample_weight=None, chunks=97):
    """(in-memory fit, Dask fit) of the same rows under the same small chunks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fastem.config_context(chunk_bytes=CHUNK_BYTES):
            ref = make().fit(X, sample_weight=sample_weight)
            got = make().fit(da.from_array(X, chunks=(chunks, X.shape[1])),
                             sample_weight=sample_weight)
    return ref, got


def _same(ref, got):
    labels = getattr(got, "labels_", None)
    if labels is not None and not isinstance(labels, np.ndarray):
        assert isinstance(labels, da.Array)  # lazy, on the workers
        got.labels_ = labels.compute()
    assert fingerprint(got) == fingerprint(ref)
    for name in ref._persisted_attributes():
        if hasattr(ref, name) and name != "backend_":
            a, b = getattr(ref, name), getattr(got, name)
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(a, b, err_msg=name)
                assert a.dtype == b.dtype, name


@pytest.mark.parametrize("algorithm", ["lloyd", "hamerly", "elkan"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_kmeans_on_dask_equals_the_in_memory_fit(scheduler, algorithm, dtype):
    X = _data(dtype)
    w = np.random.default_rng(1).uniform(0.2, 3.0, X.shape[0])
    ref, got = _fit_both(lambda: fastem.KMeans(5, random_state=0, algorithm=algorithm,
                                               backend="numba"), X, sample_weight=w)
    _same(ref, got)
    assert got.n_iter_ > 1


@pytest.mark.parametrize("init", ["random", "array"])
def test_kmeans_random_and_array_inits_on_dask(scheduler, init):
    X = _data(np.float64)
    start = X[[0, 50, 100, 150]] if init == "array" else "random"
    ref, got = _fit_both(lambda: fastem.KMeans(4, init=start, n_init=3 if init == "random" else 1,
                                               random_state=3, backend="cython"), X)
    _same(ref, got)


def test_kmeans_parallel_init_on_dask_equals_the_in_memory_fit(scheduler):
    """k-means|| draws each row by its global index: the same candidates on the workers."""
    X = _data(np.float32, n=900)
    w = np.random.default_rng(2).uniform(0.2, 3.0, X.shape[0])
    ref, got = _fit_both(lambda: fastem.KMeans(6, init="k-means||", random_state=4,
                                               backend="numba"), X, sample_weight=w)
    _same(ref, got)


def test_kmeans_on_dask_relocates_an_empty_cluster_as_in_memory(scheduler):
    X = _data(np.float64)
    far = np.vstack([X[:3], [[1e3, 1e3, 1e3]]])  # the last center gets no row at first
    ref, got = _fit_both(lambda: fastem.KMeans(4, init=far, backend="numba"), X)
    _same(ref, got)
    assert np.abs(got.cluster_centers_).max() < 100  # relocated onto the data


def test_kmeans_plusplus_on_dask_draws_the_same_rows(scheduler):
    X = _data(np.float32)
    with fastem.config_context(chunk_bytes=CHUNK_BYTES):
        ref = fastem.KMeans(6, random_state=11, max_iter=1).fit(X)
        got = fastem.KMeans(6, random_state=11, max_iter=1).fit(da.from_array(X, chunks=50))
    np.testing.assert_array_equal(got.cluster_centers_, ref.cluster_centers_)


def test_kmeans_on_a_cluster_runs_a_task_per_worker_and_centers_each_block_once(
        cluster_client):
    """A pass is one task per worker (its blocks in order), however many blocks there
    are, and the centered blocks are made on the workers once per fit (each Lloyd task
    used to copy its block every pass)."""
    X = _data(np.float32)
    counts = []
    for chunk_bytes in (CHUNK_BYTES, CHUNK_BYTES // 2):  # 5 blocks of 128 rows, then 10
        with cluster_client.as_current(), distributed.get_task_stream() as stream:
            with fastem.config_context(chunk_bytes=chunk_bytes):
                km = fastem.KMeans(4, init=X[:4], max_iter=6, tol=0, algorithm="lloyd",
                                   backend="numba").fit(da.from_array(X, chunks=97))
        seen = [(t["key"] if isinstance(t["key"], str) else str(t["key"])).split("-")[0]
                for t in stream.data]
        n_blocks = -(-X.shape[0] // (chunk_bytes // 12))  # float32 rows of 3 features
        assert seen.count("_shifted_block") == n_blocks
        counts.append((km.n_iter_, seen.count("_run_group"), seen.count("_results_of")))
    n_iter, groups, collects = counts[0]
    assert counts[1] == counts[0]
    assert groups % 2 == 0 and groups >= 2 * (n_iter + 1)  # 2 workers: the Lloyd steps
    assert collects >= 2 * n_iter                          # and the final E-step


def test_a_one_worker_cluster_gives_the_in_memory_fit():
    """One worker holds every block (one task a pass over all of them): the same model
    as in memory, as with two workers."""
    X = _data(np.float64)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client, client.as_current():
        for make in (lambda: fastem.KMeans(4, random_state=3, algorithm="hamerly"),
                     lambda: fastem.GaussianMixture(3, random_state=3, max_iter=5)):
            _same(*_fit_both(make, X))


@pytest.mark.parametrize("cov", ["full", "tied", "diag", "spherical"])
def test_gaussian_mixture_on_dask_equals_the_in_memory_fit(scheduler, cov):
    X = _data(np.float64)
    w = np.random.default_rng(2).uniform(0.5, 2.0, X.shape[0])
    ref, got = _fit_both(lambda: fastem.GaussianMixture(3, covariance_type=cov, random_state=0, tol=0.0,
                                                        max_iter=15, backend="numba"),
                         X, sample_weight=w)
    _same(ref, got)
    assert got.lower_bounds_ == ref.lower_bounds_ and len(got.lower_bounds_) > 2


@pytest.mark.parametrize("init_params", ["k-means++", "random_from_data"])
def test_gaussian_mixture_inits_on_dask(scheduler, init_params):
    X = _data(np.float32)
    ref, got = _fit_both(lambda: fastem.GaussianMixture(4, init_params=init_params, n_init=2,
                                                        random_state=5, backend="cython"), X)
    _same(ref, got)


def test_gaussian_mixture_reseeds_on_dask_as_in_memory(scheduler):
    rng = np.random.default_rng(9)
    X = np.vstack([rng.normal(0, 1, (200, 2)), rng.normal(8, 1, (200, 2)), [[40.0, 40.0]]])
    init = dict(means_init=np.array([[0.0, 0.0], [8.0, 8.0], [40.0, 40.0]]),
                weights_init=np.array([0.45, 0.45, 0.1]))
    ref, got = _fit_both(lambda: fastem.GaussianMixture(3, reg_covar=0.0, max_iter=30, random_state=0,
                                                        backend="numba", **init), X)
    assert ref.n_reseeded_ >= 1
    _same(ref, got)


@pytest.mark.parametrize("init_params", ["random_from_data", "kmeans"])
@pytest.mark.parametrize("model", ["bernoulli", "multinomial", "categorical"])
def test_discrete_mixtures_on_dask_equal_the_in_memory_fit(scheduler, model, init_params):
    from fingerprint_grid import _binary_data, _categorical_data, _count_data

    cls, data = {"bernoulli": (fastem.BernoulliMixture, _binary_data),
                 "multinomial": (fastem.MultinomialMixture, _count_data),
                 "categorical": (fastem.CategoricalMixture, _categorical_data)}[model]
    if model == "categorical" and init_params == "kmeans":
        pytest.skip("kmeans initialization needs float features, not category codes")
    X = data(np.float64)
    w = np.random.default_rng(4).uniform(0.5, 2.0, X.shape[0])
    ref, got = _fit_both(lambda: cls(3, init_params=init_params, random_state=0, tol=0.0,
                                     max_iter=8, backend="numba"), X, sample_weight=w, chunks=77)
    _same(ref, got)


def test_bernoulli_with_missing_entries_and_trials_on_dask(scheduler):
    rng = np.random.default_rng(6)
    X = rng.binomial(4, rng.uniform(0.1, 0.9, (3, 5))[rng.integers(0, 3, 600)]).astype(float)
    X[rng.uniform(size=X.shape) < 0.1] = np.nan
    ref, got = _fit_both(lambda: fastem.BernoulliMixture(3, n_trials=4, random_state=1,
                                                         backend="cython"), X)
    _same(ref, got)
    np.testing.assert_array_equal(got.predict(da.from_array(X, chunks=100)).compute(),
                                  ref.predict(X))


def test_partial_fit_takes_the_blocks_of_a_dask_array_as_batches(scheduler):
    X = _data(np.float32)
    dX = da.from_array(X, chunks=(150, 3))
    for make in (lambda: fastem.GaussianMixture(3, random_state=0),
                 lambda: fastem.MiniBatchKMeans(3, random_state=0)):
        got, ref = make().partial_fit(dX), make()
        for a in range(0, 600, 150):
            ref.partial_fit(X[a:a + 150])
        assert fingerprint(got) == fingerprint(ref)


def test_predictions_on_dask_are_lazy_and_equal(scheduler):
    X = _data(np.float32)
    dX = da.from_array(X, chunks=(128, 3))
    km = fastem.KMeans(4, random_state=0).fit(X)
    gm = fastem.GaussianMixture(4, random_state=0).fit(X)
    for got, want in [(km.predict(dX), km.predict(X)), (km.transform(dX), km.transform(X)),
                      (gm.predict(dX), gm.predict(X)), (gm.score_samples(dX), gm.score_samples(X)),
                      (gm.predict_proba(dX), gm.predict_proba(X))]:
        assert isinstance(got, da.Array)
        np.testing.assert_array_equal(got.compute(), want)
        assert got.dtype == want.dtype
    assert gm.score(dX) == pytest.approx(gm.score(X), rel=1e-12)
    assert km.score(dX) == pytest.approx(km.score(X), rel=1e-6)
    w = np.random.default_rng(3).uniform(0.5, 2.0, X.shape[0])
    assert km.score(dX, sample_weight=w) == pytest.approx(km.score(X, sample_weight=w), rel=1e-6)
    with pytest.raises(ValueError, match=r"sample_weight has shape \(5,\), expected \(600,\)"):
        km.score(dX, sample_weight=w[:5])
    labels = fastem.GaussianMixture(4, random_state=0).fit_predict(dX)
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), gm.predict(X))


def test_an_error_in_a_worker_reaches_the_caller(scheduler):
    X = _data(np.float64)
    X[333, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fastem.KMeans(3).fit(da.from_array(X, chunks=100))


def test_models_without_dask_support_say_so(scheduler):
    dX = da.from_array(_data(np.float64), chunks=100)
    with pytest.raises(TypeError, match="partial_fit"):
        fastem.MiniBatchKMeans(3).fit(dX)
    for model in (fastem.GaussianMixture, fastem.BernoulliMixture):
        with pytest.raises(ValueError, match="init_params='random'"):
            model(2, init_params="random").fit(dX if model is fastem.GaussianMixture else
                                               (dX > 0).astype(float))
    with pytest.raises(ValueError, match="checkpoint"):
        fastem.KMeans(2).fit(dX, checkpoint="ckpt.npz")
    with pytest.raises(ValueError, match="2 features"):
        fastem.KMeans(2).fit(_data(np.float64)[:, :2]).predict(dX)


def _sequence_data(kind):
    """(X, lengths, a model maker) for each HMM: five sequences, missing steps in the
    Gaussian and categorical data."""
    rng = np.random.default_rng(4)
    lengths = [130, 75, 1, 200, 94]
    n = sum(lengths)
    if kind in ("gaussian", "gmm"):
        X = rng.standard_normal((n, 2)) + np.repeat(rng.normal(0, 3, (10, 2)), 50, axis=0)
        X[[7, 150, 320]] = np.nan
        make = {"gaussian": lambda: fastem.GaussianHMM(3, "full", n_iter=4, random_state=0),
                "gmm": lambda: fastem.GMMHMM(2, n_mix=2, n_iter=3, random_state=0)}[kind]
    elif kind == "categorical":
        X = rng.integers(0, 5, (n, 1))
        X[[3, 99]] = -1
        make = lambda: fastem.CategoricalHMM(3, n_iter=4, random_state=0)  # noqa: E731
    else:
        X = rng.poisson(3.0, (n, 3)).astype(float)
        cls = fastem.PoissonHMM if kind == "poisson" else fastem.MultinomialHMM
        make = lambda: cls(3, n_iter=4, random_state=0)  # noqa: E731
    return X, lengths, make


def _same_hmm(ref, got):
    assert list(got.monitor_.history) == list(ref.monitor_.history)
    for name in ("startprob_", "transmat_", *ref._emission_attributes):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)


@pytest.mark.parametrize("kind", ["gaussian", "gmm", "categorical", "poisson", "multinomial"])
def test_hmms_on_dask_equal_the_in_memory_fit(scheduler, kind, monkeypatch):
    """Runs of whole sequences (about 100 steps each here) are tasks on the workers; the
    blocks of the array cut inside sequences.  The fit from the default start (K-means
    on the workers for the Gaussian ones), score and decoding equal the in-memory ones,
    and so does a partial_fit."""
    import fastem._hmm as base

    monkeypatch.setattr(base, "_CHUNK_VALUES", 300)  # the client's layout: 100 steps
    X, lengths, make = _sequence_data(kind)
    dX = da.from_array(X, chunks=(77, X.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, got = make().fit(X, lengths), make().fit(dX, lengths)
        _same_hmm(ref, got)
        assert got.score(dX, lengths) == ref.score(X, lengths)
        np.testing.assert_array_equal(got.predict(dX, lengths), ref.predict(X, lengths))
        _same_hmm(make().partial_fit(X, lengths), make().partial_fit(dX, lengths))


def test_a_long_sequence_on_dask_runs_as_chains_of_blocks(scheduler, monkeypatch):
    """One sequence in blocks of 60 steps: the forward and backward chains of tasks carry
    the state across the blocks and give the in-memory fit (itself the fit of the whole
    sequence at once, tested elsewhere)."""
    import fastem._hmm as base

    monkeypatch.setattr(base, "_SEQUENCE_VALUES", 3 * 60)
    X, _, _ = _sequence_data("gaussian")
    make = lambda: fastem.GaussianHMM(3, "diag", n_iter=3, random_state=1)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _same_hmm(make().fit(X), make().fit(da.from_array(X, chunks=(101, 2))))


@pytest.mark.parametrize("method", ["batch", "online"])
def test_topic_models_on_dask_equal_the_in_memory_fit(scheduler, method, monkeypatch):
    """Sparse blocks of 37 documents, re-cut to the chunks of 50: LDA's E-steps run on the
    workers (their random starts sent as the generator's state), online steps read the
    blocks in order; the fits, perplexity, score and the lazy transform are the in-memory
    ones, bit for bit.  PLSA (dense blocks) likewise, its P(z|d) sent with each task."""
    import scipy.sparse as sp

    import fastem._topics

    monkeypatch.setattr(fastem._topics, "_CHUNK_VALUES", 4 * 50)
    X = sp.csr_matrix(np.random.default_rng(7).poisson(0.4, (230, 30)).astype(float))
    dX = da.from_array(X, chunks=(37, 30), asarray=False)
    kw = dict(n_components=4, learning_method=method, max_iter=3, batch_size=40,
              random_state=0)
    ref = fastem.LatentDirichletAllocation(**kw).fit(X)
    got = fastem.LatentDirichletAllocation(**kw).fit(dX)
    np.testing.assert_array_equal(got.components_, ref.components_)
    assert got.bound_ == ref.bound_ and got.n_iter_ == ref.n_iter_
    assert got.perplexity(dX) == ref.perplexity(X) and got.score(dX) == ref.score(X)
    doc_topic = got.transform(dX)
    assert isinstance(doc_topic, da.Array)
    np.testing.assert_array_equal(doc_topic.compute(), ref.transform(X))
    np.testing.assert_array_equal(
        fastem.LatentDirichletAllocation(**kw).partial_fit(dX).components_,
        fastem.LatentDirichletAllocation(**kw).partial_fit(X).components_)
    if method == "batch":
        dense = da.from_array(X.toarray(), chunks=(37, 30))
        ref_p = fastem.PLSA(4, max_iter=4, random_state=0).fit(X)
        got_p = fastem.PLSA(4, max_iter=4, random_state=0).fit(dense)
        np.testing.assert_array_equal(got_p.components_, ref_p.components_)
        np.testing.assert_array_equal(got_p.doc_topic_, ref_p.doc_topic_)
        assert got_p.lower_bounds_ == ref_p.lower_bounds_
        np.testing.assert_array_equal(got_p.transform(dense), ref_p.transform(X))


def test_factor_models_on_dask_equal_the_in_memory_fit(scheduler):
    """The two moments passes are tasks on the workers; FactorAnalysis's iterations and
    PPCA's closed form run on the client from the moments alone; the mixture's passes
    are tasks too."""
    X = _data(np.float64, d=5)
    with fastem.config_context(chunk_bytes=CHUNK_BYTES):
        ref = fastem.FactorAnalysis(2, tol=1e-6).fit(X)
        got = fastem.FactorAnalysis(2, tol=1e-6).fit(da.from_array(X, chunks=(97, 5)))
    np.testing.assert_array_equal(got.components_, ref.components_)
    np.testing.assert_array_equal(got.noise_variance_, ref.noise_variance_)
    assert got.loglike_ == ref.loglike_
    with fastem.config_context(chunk_bytes=CHUNK_BYTES):
        ref = fastem.PPCA(2).fit(X)
        got = fastem.PPCA(2).fit(da.from_array(X, chunks=(97, 5)))
    np.testing.assert_array_equal(got.components_, ref.components_)
    assert got.noise_variance_ == ref.noise_variance_ and got.loglike_ == ref.loglike_
    holes = X.copy()
    holes[::7, 1] = np.nan  # the mixture's E-step on the workers, missing entries included
    with fastem.config_context(chunk_bytes=CHUNK_BYTES):
        ref = fastem.MixtureOfFactorAnalyzers(2, n_factors=2, random_state=0,
                                              init_params="random_from_data").fit(holes)
        dX = da.from_array(holes, chunks=(97, 5))
        got = fastem.MixtureOfFactorAnalyzers(2, n_factors=2, random_state=0,
                                              init_params="random_from_data").fit(dX)
    np.testing.assert_array_equal(got.components_, ref.components_)
    np.testing.assert_array_equal(got.noise_variance_, ref.noise_variance_)
    assert got.lower_bounds_ == ref.lower_bounds_
    np.testing.assert_array_equal(got.predict(dX).compute(), ref.predict(holes))
    with fastem.config_context(chunk_bytes=CHUNK_BYTES):  # FactorAnalysis's EM on the rows
        ref = fastem.FactorAnalysis(2, tol=1e-4).fit(holes)
        got = fastem.FactorAnalysis(2, tol=1e-4).fit(dX)
    assert got.loglike_ == ref.loglike_
    np.testing.assert_array_equal(got.components_, ref.components_)


def test_import_fastem_does_not_import_dask():
    code = ("import sys, numpy as np, fastem; fastem.KMeans(2).fit(np.random.rand(20, 2)); "
            "print('dask' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
