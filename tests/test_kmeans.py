"""KMeans and kmeans_plusplus: scikit-learn equivalence, invariants and behaviour."""

import warnings

import numpy as np
import pytest
from conftest import BACKENDS, FAST_BACKENDS, blobs

import fastem
from fastem import KMeans, kmeans_plusplus
from fastem.exceptions import ConvergenceWarning

sk_cluster = pytest.importorskip("sklearn.cluster")


def _sk_kmeans(**kw):
    return sk_cluster.KMeans(**kw)


# ----------------------------------------------------------------- vs scikit-learn
@pytest.mark.parametrize("n,d,k,seed", [(3000, 2, 8, 0), (2000, 16, 16, 1), (1500, 64, 40, 2)])
def test_same_fit_as_sklearn_from_same_init(backend, dtype, n, d, k, seed):
    # overlapping blobs so Lloyd needs many iterations before labels settle
    X, _ = blobs(n, d, k, seed=seed, spread=2.5, scale=5.0, dtype=dtype)
    init = X[np.random.default_rng(seed).choice(n, k, replace=False)].copy()
    ours = KMeans(k, init=init, n_init=1, max_iter=300, backend=backend).fit(X)
    ref = _sk_kmeans(n_clusters=k, init=init, n_init=1, max_iter=300).fit(X)
    assert ours.cluster_centers_.dtype == dtype
    assert ours.n_iter_ == ref.n_iter_
    rtol = 1e-6 if dtype == np.float64 else 1e-4
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=rtol)
    if dtype == np.float64:
        np.testing.assert_array_equal(ours.labels_, ref.labels_)
    else:  # float32 rounding may flip a rare sample sitting on a boundary
        assert np.mean(ours.labels_ == ref.labels_) > 0.999
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_,
                               rtol=rtol, atol=rtol * np.abs(X).max())


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_same_seed_same_result_as_sklearn(init):
    # the seeding draws random numbers in scikit-learn's order: same seed, same answer
    X, _ = blobs(2000, 5, 6, seed=4, spread=1.0)
    w = np.random.default_rng(0).uniform(0.5, 2, 2000)
    ours = KMeans(6, init=init, n_init=3, random_state=7).fit(X, sample_weight=w)
    ref = _sk_kmeans(n_clusters=6, init=init, n_init=3, random_state=7).fit(X, sample_weight=w)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-9)
    assert ours.n_iter_ == ref.n_iter_


def test_kmeans_plusplus_picks_sklearns_indices(backend):
    from sklearn.cluster import kmeans_plusplus as sk_kpp

    X, _ = blobs(5000, 4, 12, seed=5, spread=2.0)
    centers, idx = kmeans_plusplus(X, 12, random_state=3, backend=backend)
    ref_centers, ref_idx = sk_kpp(X, 12, random_state=3)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(centers, X[idx])


def test_kmeans_plusplus_is_greedy_best_of_trials():
    # With one local trial k-means++ is plain D^2 sampling; with many trials each new
    # center must lower the potential at least as much: check the final potential.
    X, _ = blobs(3000, 3, 10, seed=6, spread=1.5)
    pot = []
    for trials in (1, 20):
        c, _ = kmeans_plusplus(X, 10, random_state=0, n_local_trials=trials, backend="numpy")
        d2 = ((X[:, None, :] - c[None]) ** 2).sum(-1).min(1)
        pot.append(d2.sum())
    assert pot[1] < pot[0]


def test_transform_and_score_match_sklearn(backend):
    X, _ = blobs(500, 3, 4, seed=8, spread=1.0)
    init = X[:4].copy()
    ours = KMeans(4, init=init, backend=backend).fit(X)
    ref = _sk_kmeans(n_clusters=4, init=init, n_init=1).fit(X)
    Xt = X[:50] + 0.1
    np.testing.assert_allclose(ours.transform(Xt), ref.transform(Xt), rtol=1e-9)
    assert ours.score(Xt) == pytest.approx(ref.score(Xt), rel=1e-9)
    np.testing.assert_array_equal(ours.predict(Xt), ref.predict(Xt))


def test_empty_cluster_relocation_matches_sklearn(backend):
    # A center far from every point gets no samples in the first iteration and must be
    # moved to the sample farthest from its center.
    X, _ = blobs(400, 2, 3, seed=9, spread=1.0)
    init = np.vstack([X[:3], [[1e3, 1e3]]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = KMeans(4, init=init, backend=backend).fit(X)
    ref = _sk_kmeans(n_clusters=4, init=init, n_init=1).fit(X)
    assert np.unique(ours.labels_).size == 4
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-9)


# ----------------------------------------------------------------- invariants
def test_integer_weights_equal_repeated_rows(backend, dtype):
    X, _ = blobs(600, 3, 5, seed=10, spread=2.0, dtype=dtype)
    reps = np.random.default_rng(0).integers(0, 4, 600)
    reps[:5] = 1  # the rows used as the initial centers must remain present
    init = X[:5].copy()
    weighted = KMeans(5, init=init, backend=backend).fit(X, sample_weight=reps)
    repeated = KMeans(5, init=init, backend=backend).fit(np.repeat(X, reps, axis=0))
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(weighted.cluster_centers_, repeated.cluster_centers_, rtol=rtol,
                               atol=rtol)
    assert weighted.inertia_ == pytest.approx(repeated.inertia_, rel=rtol)
    assert weighted.n_iter_ == repeated.n_iter_
    np.testing.assert_array_equal(np.repeat(weighted.labels_, reps), repeated.labels_)


@pytest.mark.parametrize("backend_name", FAST_BACKENDS)
def test_fit_bit_identical_for_any_thread_count(backend_name, dtype):
    X, _ = blobs(30_000, 5, 12, seed=11, spread=3.0, dtype=dtype)
    fits = [KMeans(12, random_state=0, n_init=2, backend=backend_name, n_threads=t).fit(X)
            for t in (1, 2, 3)]
    for f in fits[1:]:
        assert np.array_equal(f.cluster_centers_, fits[0].cluster_centers_)
        assert np.array_equal(f.labels_, fits[0].labels_)
        assert f.inertia_ == fits[0].inertia_
        assert f.n_iter_ == fits[0].n_iter_


def test_same_random_state_same_result_across_runs(backend):
    X, _ = blobs(2000, 4, 6, seed=12, spread=2.0)
    a = KMeans(6, random_state=123, n_init=2, backend=backend).fit(X)
    b = KMeans(6, random_state=123, n_init=2, backend=backend).fit(X)
    assert np.array_equal(a.cluster_centers_, b.cluster_centers_)


def test_backends_agree_with_reference(fast_backend, dtype):
    X, _ = blobs(5000, 6, 10, seed=13, spread=2.0, dtype=dtype)
    fast = KMeans(10, random_state=1, backend=fast_backend).fit(X)
    ref = KMeans(10, random_state=1, backend="numpy").fit(X)
    rtol = 1e-9 if dtype == np.float64 else 1e-4
    assert fast.inertia_ == pytest.approx(ref.inertia_, rel=rtol)
    assert np.mean(fast.labels_ == ref.labels_) > 0.999


def test_fit_predict_equals_fit_then_predict(backend):
    X, _ = blobs(1000, 3, 5, seed=14, spread=3.0)
    km = KMeans(5, random_state=0, backend=backend, tol=1e-2)
    labels = km.fit_predict(X)
    np.testing.assert_array_equal(labels, km.predict(X))
    assert labels.dtype == np.int32
    np.testing.assert_allclose(km.fit_transform(X), km.transform(X))
    assert km.score(X) == pytest.approx(-km.inertia_, rel=1e-9)


def test_dtypes_preserved_or_promoted():
    X, _ = blobs(200, 2, 3, seed=15)
    assert KMeans(3, random_state=0).fit(X.astype(np.float32)).cluster_centers_.dtype == np.float32
    assert KMeans(3, random_state=0).fit(X).cluster_centers_.dtype == np.float64
    Xi = np.round(X).astype(np.int64)
    km = KMeans(3, random_state=0).fit(Xi)
    assert km.cluster_centers_.dtype == np.float64
    assert KMeans(3, random_state=0).fit(Xi.astype(np.int8)).cluster_centers_.dtype == np.float64


def test_layout_and_copy_x_do_not_change_the_result():
    X, _ = blobs(700, 4, 5, seed=16, spread=2.0)
    base = KMeans(5, random_state=2).fit(X)
    fortran = KMeans(5, random_state=2).fit(np.asfortranarray(X))
    strided = KMeans(5, random_state=2).fit(np.repeat(X, 2, axis=1)[:, ::2])
    X_inplace = X.copy()
    inplace = KMeans(5, random_state=2, copy_x=False).fit(X_inplace)
    for other in (fortran, strided, inplace):
        np.testing.assert_array_equal(other.labels_, base.labels_)
        np.testing.assert_allclose(other.cluster_centers_, base.cluster_centers_, rtol=1e-12)
    np.testing.assert_allclose(X_inplace, X, rtol=0, atol=1e-12)  # restored after centering


def test_n_init_keeps_the_best_run():
    X, _ = blobs(1500, 2, 10, seed=17, spread=1.5)
    single = [KMeans(10, init="random", n_init=1, random_state=s).fit(X).inertia_ for s in range(5)]
    best = KMeans(10, init="random", n_init=10, random_state=0).fit(X).inertia_
    assert best <= min(single) + 1e-9 or best <= np.median(single)


def test_callable_init_and_explicit_init_warning():
    X, _ = blobs(300, 2, 3, seed=18)

    def first_rows(X, n_clusters, random_state):
        return X[:n_clusters]

    km = KMeans(3, init=first_rows, n_init=2).fit(X)
    ref = KMeans(3, init=X[:3], n_init=1).fit(X)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_)
    with pytest.warns(RuntimeWarning, match="only one init"):
        KMeans(3, init=X[:3], n_init=4).fit(X)


def test_duplicate_points_warn_and_stay_finite(backend):
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 50, axis=0)
    with pytest.warns(ConvergenceWarning, match="distinct clusters"):
        km = KMeans(4, random_state=0, backend=backend).fit(X)
    assert np.isfinite(km.cluster_centers_).all() and km.inertia_ < 1e-20


def test_verbose_prints_iterations(capsys):
    X, _ = blobs(300, 2, 3, seed=19, spread=2.0)
    KMeans(3, random_state=0, verbose=1).fit(X)
    out = capsys.readouterr().out
    assert "Initialization complete" in out and "Iteration 0, inertia" in out
    assert "Converged at iteration" in out


def test_feature_names_from_dataframe():
    pd = pytest.importorskip("pandas")
    X, _ = blobs(100, 3, 2, seed=20)
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    km = KMeans(2, random_state=0).fit(df)
    assert list(km.feature_names_in_) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="Feature names must be in the same order"):
        km.predict(df[["b", "a", "c"]])
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        km.predict(X)
    assert list(km.get_feature_names_out()) == ["kmeans0", "kmeans1"]


# ----------------------------------------------------------------- backend selection
def test_backend_recorded_and_config_context():
    X, _ = blobs(100, 2, 2, seed=21)
    assert KMeans(2, random_state=0, backend="numpy").fit(X).backend_ == "numpy"
    with fastem.config_context(backend="numpy"):
        assert KMeans(2, random_state=0).fit(X).backend_ == "numpy"
    expected = next(b for b in ("cython", "numba", "numpy") if b in BACKENDS)
    assert KMeans(2, random_state=0).fit(X).backend_ == expected


def test_unavailable_backend_is_a_clear_error(monkeypatch):
    from fastem import _dispatch

    monkeypatch.setitem(_dispatch._status, ("cython", "kmeans"), "ImportError: not built")
    with pytest.raises(ValueError, match="backend='cython' is not available.*not built"):
        KMeans(2, backend="cython").fit(np.random.rand(10, 2))


def test_auto_falls_back_to_numpy_with_one_warning(monkeypatch):
    from fastem import _dispatch

    monkeypatch.setitem(_dispatch._status, ("numba", "kmeans"), "ImportError: no numba")
    monkeypatch.setitem(_dispatch._status, ("cython", "kmeans"), "ImportError: not built")
    monkeypatch.setattr(_dispatch, "_warned_fallback", False)
    X = np.random.default_rng(0).random((20, 2))
    with pytest.warns(_dispatch.BackendFallbackWarning, match="numpy reference"):
        assert KMeans(2, backend="auto", random_state=0).fit(X).backend_ == "numpy"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KMeans(2, backend="auto", random_state=0).fit(X)  # warned once only


# ----------------------------------------------------------------- bad input
BAD_FITS = [
    (dict(), np.array([[1.0, np.nan]] * 10), ValueError, "contains NaN"),
    (dict(), np.array([[1.0, np.inf]] * 10), ValueError, "infinity"),
    (dict(), np.zeros(10), ValueError, "Expected 2D array"),
    (dict(), np.zeros((2, 3, 4)), ValueError, "Expected 2D array"),
    (dict(), np.zeros((0, 3)), ValueError, "0 sample"),
    (dict(), np.zeros((5, 0)), ValueError, "0 feature"),
    (dict(n_clusters=8), np.zeros((5, 2)), ValueError, "n_samples=5 should be >= n_clusters=8"),
    (dict(n_clusters=0), np.zeros((5, 2)), ValueError, "'n_clusters' parameter"),
    (dict(n_clusters=2.5), np.zeros((5, 2)), TypeError, "'n_clusters' parameter"),
    (dict(n_init=0), np.zeros((5, 2)), ValueError, "'n_init' parameter"),
    (dict(max_iter=-1), np.zeros((5, 2)), ValueError, "'max_iter' parameter"),
    (dict(tol=-1.0), np.zeros((5, 2)), ValueError, "'tol' parameter"),
    (dict(init="kmeans++"), np.zeros((5, 2)), ValueError, "'init' parameter"),
    (dict(algorithm="full"), np.zeros((5, 2)), ValueError, "'algorithm' parameter"),
    (dict(backend="gpu"), np.zeros((5, 2)), ValueError, "'backend' parameter"),
    (dict(n_threads=0), np.zeros((5, 2)), ValueError, "'n_threads' parameter"),
    (dict(random_state="seed"), np.zeros((5, 2)), ValueError, "'random_state' parameter"),
    (dict(n_clusters=2, init=np.zeros((3, 2))), np.zeros((5, 2)), ValueError, "shape of"),
    (dict(n_clusters=2, init=np.zeros((2, 3))), np.zeros((5, 2)), ValueError, "shape of"),
    (dict(n_clusters=2, init=np.full((2, 2), np.nan)), np.zeros((5, 2)), ValueError, "NaN"),
    (dict(), np.array([["a", "b"]] * 10), TypeError, "must contain numbers"),
    (dict(), np.ones((10, 2)) + 1j, ValueError, "Complex data"),
    (dict(n_clusters=2), np.full((10, 2), 1e300), ValueError, "too large in magnitude"),
]


@pytest.mark.parametrize("params,X,exc,match", BAD_FITS)
def test_bad_input_gets_a_clear_error(params, X, exc, match):
    with pytest.raises(exc, match=match):
        KMeans(**{"n_clusters": 2, **params}).fit(X)


@pytest.mark.parametrize("weights,match", [
    (np.array([1.0, -1.0, 1.0, 1.0, 1.0]), "negative"),
    (np.zeros(5), "sums to zero"),
    (np.array([1.0, np.nan, 1.0, 1.0, 1.0]), "NaN"),
    (np.ones(4), "4 entries but X has 5 samples"),
    (np.ones((5, 1)), "1-D"),
    (np.array([1.0, 0, 0, 0, 0]), "only 1 positive"),
])
def test_bad_sample_weight(weights, match):
    X = np.arange(10.0).reshape(5, 2)
    with pytest.raises(ValueError, match=match):
        KMeans(2).fit(X, sample_weight=weights)


def test_sparse_input_is_a_clear_type_error_where_a_model_has_no_sparse_kernels():
    sp = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="Sparse input is not supported by GaussianMixture"):
        fastem.GaussianMixture(2).fit(sp.random(10, 3, density=0.5, format="csr"))


def test_predict_checks():
    X, _ = blobs(50, 3, 2, seed=22)
    with pytest.raises(fastem.exceptions.NotFittedError, match="not fitted"):
        KMeans(2).predict(X)
    km = KMeans(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 2 features, but KMeans is expecting 3"):
        km.predict(X[:, :2])
    with pytest.raises(ValueError, match="Reshape your data"):
        km.predict(X[0])
    with pytest.raises(ValueError, match="too large in magnitude"):
        km.predict(np.full((4, 3), 1e300))


# ----------------------------------------------------------------- scikit-learn's checks
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402


@parametrize_with_checks(
    [KMeans(n_clusters=2, n_init=2, max_iter=5)],
    expected_failed_checks=lambda est: {
        # scikit-learn marks the same checks as expected failures for its own KMeans: the
        # seeding draws differ between weighted and repeated rows.  The equivalence from a
        # common start is tested in test_integer_weights_equal_repeated_rows.
        "check_sample_weight_equivalence_on_dense_data":
            "k-means++ draws differ between weighted and repeated rows",
        "check_sample_weight_equivalence_on_sparse_data":
            "k-means++ draws differ between weighted and repeated rows",
    },
)
@pytest.mark.filterwarnings("ignore:Estimator KMeans does not inherit")
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# ----------------------------------------------------------------- k-means||
def test_row_uniforms_depend_on_the_row_index_only_and_are_uniform():
    from scipy import stats

    from fastem.kmeans import _row_uniforms

    u = _row_uniforms(12345, 0, 100_000)
    np.testing.assert_array_equal(u[300:700], _row_uniforms(12345, 300, 700))
    assert (u >= 0).all() and (u < 1).all()
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    other = _row_uniforms(12346, 0, 100_000)  # another draw: independent numbers
    assert abs(np.corrcoef(u, other)[0, 1]) < 0.02


def _separated_blobs(n_clusters=20, n=6000, d=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-100, 100, (n_clusters, d))
    X = centers[rng.integers(0, n_clusters, n)] + rng.standard_normal((n, d))
    return X, centers


def test_kmeans_parallel_init_finds_every_separated_blob():
    X, centers = _separated_blobs()
    init = fastem.KMeans(20, init="k-means||", random_state=0, max_iter=1).fit(X)
    # after the seeding and one Lloyd step, each true center has a fitted center at
    # about its blob's radius (a missed blob would leave one at least ~10 away)
    d = np.sqrt(((centers[:, None, :] - init.cluster_centers_[None]) ** 2).sum(-1))
    assert d.min(axis=1).max() < 0.5
    full = fastem.KMeans(20, init="k-means||", random_state=0).fit(X)
    best_pp = fastem.KMeans(20, init="k-means++", n_init=5, random_state=0).fit(X)
    assert full.inertia_ <= best_pp.inertia_ * (1 + 1e-9)


def test_kmeans_parallel_init_is_thread_and_chunk_invariant():
    X, _ = _separated_blobs(n=3000, seed=1)
    X += np.random.default_rng(2).standard_normal(X.shape) * 20  # overlapping: harder
    w = np.random.default_rng(3).uniform(0, 2, X.shape[0])
    fits = []
    for n_threads in (1, 2):
        with fastem.config_context(chunk_bytes=4096):
            for data in (X, fastem.Chunks([X[:1000], X[1000:]])):
                fits.append(fastem.KMeans(20, init="k-means||", random_state=5,
                                          n_threads=n_threads).fit(data, sample_weight=w))
    for other in fits[1:]:
        np.testing.assert_array_equal(other.cluster_centers_, fits[0].cluster_centers_)
        assert other.inertia_ == fits[0].inertia_


def test_kmeans_parallel_init_on_fewer_distinct_points_than_clusters():
    X = np.repeat(np.eye(3), 20, axis=0)  # 3 distinct points, 5 clusters
    with pytest.warns(ConvergenceWarning, match="distinct clusters"):
        km = fastem.KMeans(5, init="k-means||", random_state=0).fit(X)
    assert np.isfinite(km.cluster_centers_).all() and km.inertia_ < 1e-20
