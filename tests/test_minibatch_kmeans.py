"""MiniBatchKMeans: scikit-learn equivalence (fit and partial_fit), the streaming-mean
update, convergence on a stream, determinism, backends, model files and bad input."""

import json

import numpy as np
import pytest
from conftest import FAST_BACKENDS, blobs

import fastem
from fastem import MiniBatchKMeans
from fastem._validation import NotFittedError

sk_cluster = pytest.importorskip("sklearn.cluster")


def _first_rows(X, n_clusters, random_state):
    return X[:n_clusters] * 1.0


def _assert_same_model(ours, ref, rtol):
    """Same centers (to rtol of their scale), steps, passes, labels and inertia."""
    scale = np.abs(ref.cluster_centers_).max()
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=0,
                               atol=rtol * scale)
    assert ours.n_steps_ == ref.n_steps_
    if hasattr(ref, "n_iter_"):
        assert ours.n_iter_ == ref.n_iter_
    if hasattr(ref, "labels_"):
        np.testing.assert_array_equal(ours.labels_, ref.labels_)
    if hasattr(ref, "inertia_"):
        assert ours.inertia_ == pytest.approx(ref.inertia_, rel=rtol)


# ----------------------------------------------------------------- fit vs scikit-learn
# The cases stop in each of the three ways (lack of improvement, "tol" by the center
# change, "max_iter" by the step count) and use every kind of init; the callable's
# data are far from the origin, so it must get the rows unshifted.
FIT_CASES = {
    "k-means++": dict(n_clusters=8, batch_size=256, random_state=0),
    "random-weighted": dict(n_clusters=8, batch_size=200, random_state=1, init="random",
                            n_init=3),
    "tol": dict(n_clusters=8, batch_size=100, random_state=2, tol=1e-3),
    "max_iter": dict(n_clusters=6, batch_size=300, random_state=3, max_no_improvement=None,
                     max_iter=4, init_size=500),
    "callable-far": dict(n_clusters=5, batch_size=128, random_state=4, init=_first_rows),
    "array-no-labels": dict(n_clusters=8, batch_size=256, random_state=5, compute_labels=False),
}


@pytest.mark.parametrize("case", sorted(FIT_CASES))
def test_fit_equals_sklearn_from_same_seed(backend, case):
    params = FIT_CASES[case]
    X, _ = blobs(2000, 4, 8, seed=1, spread=2.0, scale=5.0)
    w = None
    if case == "random-weighted":
        w = np.random.default_rng(0).uniform(0.0, 2.0, X.shape[0])
    if case == "callable-far":
        X = X + 1e4  # a callable gets the rows as given, not shifted
    if case == "array-no-labels":
        params = dict(params, init=X[100:108].copy())
    ours = MiniBatchKMeans(**params, backend=backend).fit(X, sample_weight=w)
    ref = sk_cluster.MiniBatchKMeans(**params).fit(X, sample_weight=w)
    assert ours.n_steps_ > 1 and ours.backend_ == backend
    _assert_same_model(ours, ref, rtol=1e-10)
    assert hasattr(ours, "labels_") == params.get("compute_labels", True)


def test_fit_equals_sklearn_with_reassignments(backend, capsys):
    # many small clusters and a high ratio: centers are reassigned repeatedly
    X, _ = blobs(1500, 3, 20, seed=2, spread=1.5, scale=5.0)
    # (10 * n_clusters = 200 samples between reassignments: exactly 4 batches of 50)
    params = dict(n_clusters=20, batch_size=50, random_state=4, reassignment_ratio=0.3,
                  max_iter=5, verbose=1)
    ours = MiniBatchKMeans(**params, backend=backend).fit(X)
    n_ours = capsys.readouterr().out.count("Reassigning")
    ref = sk_cluster.MiniBatchKMeans(**params).fit(X)
    n_ref = capsys.readouterr().out.count("Reassigning")
    assert n_ours == n_ref >= 3
    _assert_same_model(ours, ref, rtol=1e-10)


def test_float32_fit_close_to_sklearn():
    X, _ = blobs(2000, 4, 8, seed=3, spread=2.0, scale=5.0, dtype=np.float32)
    params = dict(n_clusters=8, batch_size=256, random_state=6)
    ours = MiniBatchKMeans(**params).fit(X)
    ref = sk_cluster.MiniBatchKMeans(**params).fit(X)
    assert ours.cluster_centers_.dtype == np.float32
    # scikit-learn accumulates the counts and centers in float32, fastem in float64
    _assert_same_model(ours, ref, rtol=1e-4)


# ----------------------------------------------------------------- partial_fit
def _batches(X, size):
    return [slice(i, i + size) for i in range(0, X.shape[0], size)]


@pytest.mark.parametrize("init", ["array", "k-means++", "random-subsample"])
def test_partial_fit_sequence_equals_sklearn(backend, init, capsys):
    X, _ = blobs(1800, 3, 6, seed=5, spread=2.0, scale=5.0)
    X += 500.0
    w = np.random.default_rng(1).uniform(0.1, 3.0, X.shape[0])
    params = dict(n_clusters=6, random_state=2, reassignment_ratio=0.4, verbose=1)
    if init == "array":
        params["init"] = X[[0, 10, 20, 30, 40, 50]] + 0.5
    if init == "random-subsample":  # first batch larger than init_size: a random sample
        params.update(init="random", init_size=40)
    ours = MiniBatchKMeans(**params, backend=backend)
    snapshots = []
    for sl in _batches(X, 150):
        ours.partial_fit(X[sl], sample_weight=w[sl])
        snapshots.append((ours.cluster_centers_.copy(), ours.labels_, ours.inertia_,
                          ours.n_steps_))
    n_ours = capsys.readouterr().out.count("Reassigning")
    ref = sk_cluster.MiniBatchKMeans(**params)
    for sl, (centers, labels, inertia, n_steps) in zip(_batches(X, 150), snapshots):
        ref.partial_fit(X[sl], sample_weight=w[sl])
        np.testing.assert_allclose(centers, ref.cluster_centers_, rtol=1e-10)
        np.testing.assert_array_equal(labels, ref.labels_)
        assert inertia == pytest.approx(ref.inertia_, rel=1e-10)
        assert n_steps == ref.n_steps_
    assert n_ours == capsys.readouterr().out.count("Reassigning") > 0
    assert ours.n_steps_ == 12 and not hasattr(ours, "n_iter_")


def test_partial_fit_after_fit_continues_like_sklearn():
    X, _ = blobs(1200, 2, 4, seed=6, spread=1.0)
    ours = MiniBatchKMeans(4, batch_size=100, random_state=0).fit(X)
    ref = sk_cluster.MiniBatchKMeans(4, batch_size=100, random_state=0).fit(X)
    for sl in _batches(X[:300], 100):
        ours.partial_fit(X[sl])
        ref.partial_fit(X[sl])
    _assert_same_model(ours, ref, rtol=1e-10)


def test_partial_fit_step_by_hand():
    # Centers start at (0,0) and (10,0) with no accumulated weight.
    km = MiniBatchKMeans(2, init=np.array([[0.0, 0.0], [10.0, 0.0]]))
    # Batch 1: (1,0) and (3,0) go to center 0, (9,1) (weight 2) to center 1.  With no
    # weight yet, each center becomes the weighted mean of its samples.
    km.partial_fit(np.array([[1.0, 0.0], [3.0, 0.0], [9.0, 1.0]]), sample_weight=[1, 1, 2])
    np.testing.assert_allclose(km.cluster_centers_, [[2.0, 0.0], [9.0, 1.0]], rtol=1e-15)
    np.testing.assert_array_equal(km.labels_, [0, 0, 1])
    assert km.inertia_ == pytest.approx(1.0 + 1.0 + 0.0)
    # Batch 2: (4,2) (weight 2) is nearer (2,0) (squared distance 8, not 26); (12,0)
    # nearer (9,1).  Streaming means c <- (W c + sum w x) / (W + sum w):
    #   c0 = (2 * (2,0) + 2 * (4,2)) / 4 = (3, 1)
    #   c1 = (2 * (9,1) + 1 * (12,0)) / 3 = (10, 2/3)
    km.partial_fit(np.array([[4.0, 2.0], [12.0, 0.0]]), sample_weight=[2, 1])
    np.testing.assert_allclose(km.cluster_centers_, [[3.0, 1.0], [10.0, 2.0 / 3.0]],
                               rtol=1e-15)
    np.testing.assert_array_equal(km._counts, [4.0, 3.0])
    np.testing.assert_array_equal(km.labels_, [0, 1])
    # inertia of the batch under the new centers: 2 * (1 + 1) + 1 * (4 + 4/9)
    assert km.inertia_ == pytest.approx(8.0 + 4.0 / 9.0, rel=1e-14)
    assert km.n_steps_ == 2


def test_partial_fit_leaves_centers_without_samples_untouched():
    # a center that gets no sample keeps its value bit for bit (as in scikit-learn),
    # though the batch is shifted by its own mean on the way through the kernels
    rng = np.random.default_rng(3)
    X = rng.standard_normal((60, 3)) * 1e-3 + np.array([[123.456, -7.89, 1e5]])
    init = np.array([[123.4, -7.8, 1e5], [3.14159, 2.71828, -1.41421]]) * 1.01
    km = MiniBatchKMeans(2, init=init, reassignment_ratio=0.0)
    km.partial_fit(X[:30])
    km.partial_fit(X[30:])
    assert np.array_equal(km.cluster_centers_[1], init[1])
    assert km._counts[1] == 0.0 and km._counts[0] == 60.0


def test_memory_mapped_data_gives_the_same_fit(tmp_path):
    X, _ = blobs(1000, 3, 4, seed=18)
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    a = MiniBatchKMeans(4, batch_size=100, random_state=0).fit(X)
    b = MiniBatchKMeans(4, batch_size=100, random_state=0).fit(mapped)
    assert np.array_equal(a.cluster_centers_, b.cluster_centers_)
    with pytest.raises(TypeError, match="random access.*partial_fit"):
        MiniBatchKMeans(4).fit(fastem.Chunks([X[:500], X[500:]]))


def test_stream_recovers_the_true_centers():
    # Four well-separated Gaussian clusters (unit variance, 20 apart) arriving in 60
    # batches of 200.  Every sample is assigned to its own cluster's center from the
    # first batch on (k-means++ puts one center in each cluster), so each center is the
    # running mean of every sample of its cluster seen so far: at the end, the sample
    # mean of its N_j samples, within a few standard errors 1 / sqrt(N_j) of the truth.
    rng = np.random.default_rng(7)
    truth = np.array([[0.0, 0.0, 0.0], [20.0, 0.0, 0.0], [0.0, 20.0, 0.0], [0.0, 0.0, 20.0]])
    km = MiniBatchKMeans(4, random_state=0)
    seen = []
    for _ in range(60):
        which = rng.integers(0, 4, 200)
        km.partial_fit(truth[which] + rng.standard_normal((200, 3)))
        seen.append((which, km.labels_))
    which = np.concatenate([s[0] for s in seen])
    centers = km.cluster_centers_
    match = np.argmin(((centers[:, None, :] - truth[None]) ** 2).sum(-1), axis=1)
    assert sorted(match) == [0, 1, 2, 3]  # one center per true cluster
    for k, j in enumerate(match):
        n_j = np.count_nonzero(which == j)
        assert km._counts[k] == n_j
        assert np.all(np.abs(centers[k] - truth[j]) < 4.0 / np.sqrt(n_j))


# ----------------------------------------------------------------- determinism, backends
@pytest.mark.parametrize("backend_name", FAST_BACKENDS)
def test_bit_identical_for_any_thread_count(backend_name, dtype):
    # batches of 4,096 rows and more: two threads each (one per 2,048 rows)
    X, _ = blobs(9000, 5, 10, seed=8, spread=3.0, dtype=dtype)
    fits, streams = [], []
    for t in (1, 2):
        fits.append(MiniBatchKMeans(10, batch_size=4096, max_iter=3, random_state=0,
                                    backend=backend_name, n_threads=t).fit(X))
        km = MiniBatchKMeans(10, random_state=0, backend=backend_name, n_threads=t)
        for sl in _batches(X, 4500):
            km.partial_fit(X[sl])
        streams.append(km)
    for a, b in (fits, streams):
        assert np.array_equal(a.cluster_centers_, b.cluster_centers_)
        assert np.array_equal(a.labels_, b.labels_)
        assert a.inertia_ == b.inertia_ and a.n_steps_ == b.n_steps_


@pytest.mark.parametrize("backend_name", FAST_BACKENDS)
def test_fast_backends_agree_with_numpy_reference(backend_name, dtype):
    X, _ = blobs(3000, 4, 6, seed=9, spread=2.0, dtype=dtype)
    fast = MiniBatchKMeans(6, batch_size=256, random_state=3, backend=backend_name).fit(X)
    ref = MiniBatchKMeans(6, batch_size=256, random_state=3, backend="numpy").fit(X)
    _assert_same_model(fast, ref, rtol=1e-10 if dtype == np.float64 else 1e-5)


# ----------------------------------------------------------------- API
def test_predict_score_transform_match_sklearn():
    X, _ = blobs(1000, 3, 5, seed=10, spread=1.5)
    ours = MiniBatchKMeans(5, batch_size=128, random_state=1).fit(X)
    ref = sk_cluster.MiniBatchKMeans(5, batch_size=128, random_state=1).fit(X)
    Xt = X[:200] + 0.25
    np.testing.assert_array_equal(ours.predict(Xt), ref.predict(Xt))
    assert ours.score(Xt) == pytest.approx(ref.score(Xt), rel=1e-10)
    np.testing.assert_allclose(ours.transform(Xt), ref.transform(Xt), rtol=1e-9)
    assert list(ours.get_feature_names_out()) == list(ref.get_feature_names_out())
    np.testing.assert_array_equal(ours.fit_predict(X), ours.predict(X))
    np.testing.assert_allclose(ours.fit_transform(X), ours.transform(X))
    tags = ours.__sklearn_tags__()
    assert tags.estimator_type == "clusterer"
    assert tags.transformer_tags.preserves_dtype == ["float64", "float32"]


def test_without_compute_labels_nothing_stale_is_left():
    X, _ = blobs(600, 2, 3, seed=11)
    km = MiniBatchKMeans(3, batch_size=100, random_state=0).fit(X)
    km.set_params(compute_labels=False).fit(X)
    assert not hasattr(km, "labels_")
    ref = sk_cluster.MiniBatchKMeans(3, batch_size=100, random_state=0,
                                     compute_labels=False).fit(X)
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-10)  # smoothed batch inertia
    np.testing.assert_array_equal(km.fit_predict(X), km.predict(X))
    km.partial_fit(X[:100])
    assert not hasattr(km, "labels_") and not hasattr(km, "inertia_")


def test_warnings_like_sklearn():
    X, _ = blobs(300, 2, 4, seed=12)
    with pytest.warns(RuntimeWarning, match="init_size=2 should be larger than n_clusters=4"):
        MiniBatchKMeans(4, init_size=2, random_state=0).fit(X)
    with pytest.warns(RuntimeWarning, match="only one init"):
        MiniBatchKMeans(4, init=X[:4], n_init=3).fit(X)


def test_later_batches_take_the_models_dtype():
    X, _ = blobs(400, 2, 3, seed=13)
    km = MiniBatchKMeans(3, random_state=0).partial_fit(X[:200])
    km.partial_fit(X[200:].astype(np.float32))
    assert km.cluster_centers_.dtype == np.float64


# ----------------------------------------------------------------- model files
def test_save_load_round_trip(tmp_path):
    X, _ = blobs(800, 3, 4, seed=14, spread=1.5, dtype=np.float32)
    km = MiniBatchKMeans(4, batch_size=100, random_state=0).fit(X)
    km.save(tmp_path / "m.npz")
    back = fastem.load(tmp_path / "m.npz")
    assert type(back) is MiniBatchKMeans and back.get_params() == km.get_params()
    np.testing.assert_array_equal(back.predict(X), km.predict(X))
    np.testing.assert_array_equal(back.transform(X), km.transform(X))
    np.testing.assert_array_equal(back.labels_, km.labels_)
    assert back.cluster_centers_.dtype == np.float32
    assert (back.inertia_, back.n_iter_, back.n_steps_) == (km.inertia_, km.n_iter_, km.n_steps_)


def test_loaded_stream_model_continues_the_same_stream(tmp_path):
    # after partial_fit only (no labels_, inertia_ or n_iter_), the file keeps the
    # accumulated weights and the random generator: continuing after load is
    # continuing without it (reassignments draw from the generator)
    X, _ = blobs(1200, 2, 6, seed=15, spread=2.0)
    km = MiniBatchKMeans(6, random_state=1, compute_labels=False, reassignment_ratio=0.5)
    for sl in _batches(X[:600], 100):
        km.partial_fit(X[sl])
    km.save(tmp_path / "m.npz")
    back = fastem.load(tmp_path / "m.npz")
    assert not hasattr(back, "labels_") and not hasattr(back, "n_iter_")
    for sl in _batches(X[600:], 100):
        km.partial_fit(X[600:][sl])
        back.partial_fit(X[600:][sl])
    assert np.array_equal(back.cluster_centers_, km.cluster_centers_)
    assert np.array_equal(back._counts, km._counts) and back.n_steps_ == km.n_steps_ == 12


def test_invalid_model_file_is_refused(tmp_path):
    X, _ = blobs(300, 2, 3, seed=16)
    MiniBatchKMeans(3, random_state=0).fit(X).save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as z:
        files = {k: z[k] for k in z.files}
    meta = json.loads(files.pop("__meta__").tobytes())
    files["a___counts"] = -files["a___counts"]
    meta["checksum"] = fastem._persist._checksum(files, meta)
    np.savez(tmp_path / "bad.npz", **files,
             __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    with pytest.raises(ValueError, match="_counts must be >= 0"):
        fastem.load(tmp_path / "bad.npz")


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize("params,match", [
    (dict(batch_size=0), "'batch_size' parameter"),
    (dict(batch_size=2.5), "'batch_size' parameter"),
    (dict(max_no_improvement=-1), "'max_no_improvement' parameter"),
    (dict(init_size=0), "'init_size' parameter"),
    (dict(reassignment_ratio=-0.1), "'reassignment_ratio' parameter"),
    (dict(compute_labels="yes"), "'compute_labels' parameter"),
    (dict(n_clusters=0), "'n_clusters' parameter"),
    (dict(max_iter=0), "'max_iter' parameter"),
    (dict(n_init=0), "'n_init' parameter"),
    (dict(tol=-1.0), "'tol' parameter"),
    (dict(n_threads=0), "'n_threads' parameter"),
    (dict(init=np.zeros((3, 2))), "shape of the initial centers"),
    (dict(init="k-means||"), "'init' parameter of MiniBatchKMeans must be a str among "
                             "'k-means\\+\\+', 'random'"),  # KMeans' seeding only
    (dict(n_clusters=12), "n_samples=10 should be >= n_clusters=12"),
])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_bad_parameters_name_the_parameter(params, match, method):
    X = np.random.default_rng(0).random((10, 2))
    with pytest.raises(ValueError, match=match):
        getattr(MiniBatchKMeans(**{"n_clusters": 2, **params}), method)(X)


def test_bad_batches_are_refused():
    rng = np.random.default_rng(0)
    km = MiniBatchKMeans(3, random_state=0)
    with pytest.raises(ValueError, match="n_samples=2 should be >= n_clusters=3"):
        km.partial_fit(rng.random((2, 2)))
    with pytest.raises(NotFittedError):
        km.predict(rng.random((2, 2)))  # the failed first batch fitted nothing
    km.partial_fit(rng.random((5, 2)))
    with pytest.raises(ValueError, match="X has 3 features, but MiniBatchKMeans is expecting 2"):
        km.partial_fit(rng.random((5, 3)))
    with pytest.raises(ValueError, match="sample_weight has 4 entries but X has 5"):
        km.partial_fit(rng.random((5, 2)), sample_weight=np.ones(4))
    with pytest.raises(ValueError, match="contains NaN"):
        km.partial_fit(np.array([[1.0, np.nan]] * 5))
    with pytest.raises(ValueError, match="sample_weight has only 1 positive"):
        MiniBatchKMeans(2).fit(rng.random((5, 2)), sample_weight=[1, 0, 0, 0, 0])


def test_far_from_origin_same_as_near():
    # The kernels' ||x||^2 - 2 x.c + ||c||^2 at 1e8 from the origin has rounding errors
    # of order 1 (scikit-learn then mislabels most samples); the shifted coordinates
    # make the fit translation-invariant up to the rounding of X + 1e8 itself (1.5e-8).
    X, _ = blobs(2000, 3, 5, seed=17, spread=1.0, scale=5.0)
    near = MiniBatchKMeans(5, batch_size=128, random_state=0).fit(X)
    far = MiniBatchKMeans(5, batch_size=128, random_state=0).fit(X + 1e8)
    np.testing.assert_allclose(far.cluster_centers_ - 1e8, near.cluster_centers_, rtol=0,
                               atol=1e-6)
    np.testing.assert_array_equal(far.labels_, near.labels_)
    assert far.n_steps_ == near.n_steps_
    near, far = MiniBatchKMeans(5, random_state=0), MiniBatchKMeans(5, random_state=0)
    for sl in _batches(X, 200):
        near.partial_fit(X[sl])
        far.partial_fit(X[sl] + 1e8)
    np.testing.assert_allclose(far.cluster_centers_ - 1e8, near.cluster_centers_, rtol=0,
                               atol=1e-6)
    np.testing.assert_array_equal(far.predict(X + 1e8), near.predict(X))


# ----------------------------------------------------------------- scikit-learn's checks
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402


@parametrize_with_checks(
    [MiniBatchKMeans(n_clusters=2, n_init=2, max_iter=5, batch_size=10)],
    expected_failed_checks=lambda est: {
        # scikit-learn marks the same check as an expected failure for its own
        # MiniBatchKMeans: batches are drawn with probability proportional to the weights,
        # which is not the same random stream as drawing from repeated rows.
        "check_sample_weight_equivalence_on_dense_data":
            "sample_weight is not equivalent to removing/repeating samples",
        "check_sample_weight_equivalence_on_sparse_data":
            "sample_weight is not equivalent to removing/repeating samples",
    },
)
@pytest.mark.filterwarnings("ignore:Estimator MiniBatchKMeans does not inherit")
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
