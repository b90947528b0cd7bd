"""Out-of-core fitting: a fit over a memory map or ``fastem.Chunks`` equals the in-memory
fit bit for bit, holds no copy of the data, and refuses bad streams clearly.

Every test forces many chunks with a small ``chunk_bytes``; the pieces of ``Chunks`` are
cut at sizes unrelated to the chunk size, so the re-cutting is exercised too.
"""

import os
import tracemalloc
import warnings

import numpy as np
import pytest

import fastem
from fastem.exceptions import ConvergenceWarning

from conftest import blobs

CHUNK = 4096  # bytes per chunk: 32-128 rows here


def pieces(X, seed=0):
    """X cut into pieces of random sizes (1 to 200 rows)."""
    rng = np.random.default_rng(seed)
    cuts = np.cumsum(rng.integers(1, 200, size=X.shape[0]))
    cuts = cuts[cuts < X.shape[0]]
    return np.split(X, cuts)


def sources(X, tmp_path):
    """The same rows as: the array, a memory map, Chunks of a list, of a function, of a
    directory of .npy files."""
    path = tmp_path / "x.npy"
    np.save(path, X)
    parts = pieces(X)
    folder = tmp_path / "parts"
    folder.mkdir()
    for i, p in enumerate(pieces(X, seed=1)):
        np.save(folder / f"{i:05d}.npy", p)
    return {
        "array": X,
        "memmap": np.load(path, mmap_mode="r"),
        "list": fastem.Chunks(parts),
        "callable": fastem.Chunks(lambda: iter(parts)),
        "directory": fastem.Chunks(str(folder)),
    }


def fitted(model, X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with fastem.config_context(chunk_bytes=CHUNK):
            return model.fit(X, **kw)


def assert_same(a, b, names):
    for name in names:
        va, vb = getattr(a, name), getattr(b, name)
        if isinstance(va, np.ndarray):
            assert va.dtype == vb.dtype and np.array_equal(va, vb), name
        else:
            assert va == vb, name


KMEANS_ATTRS = ("cluster_centers_", "labels_", "inertia_", "n_iter_")
GMM_ATTRS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bounds_",
             "n_iter_", "converged_")


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_kmeans_streamed_equals_in_memory_bit_for_bit(tmp_path, dtype, init):
    X, _ = blobs(3000, 5, 6, seed=3, spread=2.0, dtype=dtype)
    w = np.random.default_rng(0).uniform(0.5, 2.0, X.shape[0])
    kw = dict(n_clusters=6, init=init, n_init=2, max_iter=30, random_state=0)
    reference = fitted(fastem.KMeans(**kw), X, sample_weight=w)
    assert reference.n_iter_ > 2
    for name, source in sources(X, tmp_path).items():
        est = fitted(fastem.KMeans(**kw), source, sample_weight=w)
        assert_same(est, reference, KMEANS_ATTRS)
        assert est.n_features_in_ == 5, name


def test_kmeans_chunked_agrees_with_one_chunk():
    """The chunk size only changes where float64 sums are added: same labels, centers
    equal to rounding."""
    X, _ = blobs(4000, 4, 5, seed=4, spread=1.5)
    kw = dict(n_clusters=5, max_iter=30, random_state=1, tol=0.0)
    one = fastem.KMeans(**kw).fit(X)
    many = fitted(fastem.KMeans(**kw), X)
    np.testing.assert_array_equal(one.labels_, many.labels_)
    np.testing.assert_allclose(one.cluster_centers_, many.cluster_centers_, rtol=1e-12, atol=1e-12)
    assert one.inertia_ == pytest.approx(many.inertia_, rel=1e-12)


def test_kmeans_streamed_relocates_empty_clusters_like_in_memory(tmp_path):
    """Initial centers far from the data leave clusters empty: the chunked search for
    the farthest samples picks the same samples as a whole-array sort."""
    X, _ = blobs(2000, 3, 3, seed=5)
    init = np.vstack([X[:3], np.full((3, 3), 1e3)])
    reference = fitted(fastem.KMeans(6, init=init, max_iter=10), X)
    assert np.unique(reference.labels_).size == 6
    est = fitted(fastem.KMeans(6, init=init, max_iter=10), sources(X, tmp_path)["list"])
    assert_same(est, reference, KMEANS_ATTRS)


def test_kmeans_plusplus_on_chunks_picks_the_same_centers(tmp_path):
    X, _ = blobs(1500, 3, 8, seed=6)
    with fastem.config_context(chunk_bytes=CHUNK):
        c1, i1 = fastem.kmeans_plusplus(X, 8, random_state=3)
        c2, i2 = fastem.kmeans_plusplus(sources(X, tmp_path)["callable"], 8, random_state=3)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(c1, X[i1])


@pytest.mark.parametrize("cov", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_gmm_streamed_equals_in_memory_bit_for_bit(tmp_path, cov, init_params):
    X, _ = blobs(1200, 3, 4, seed=7, spread=1.5)
    kw = dict(n_components=4, covariance_type=cov, init_params=init_params, max_iter=8, tol=0,
              n_init=2, random_state=0)
    reference = fitted(fastem.GaussianMixture(**kw), X)
    for name, source in sources(X, tmp_path).items():
        if name in ("list", "directory") and (cov, init_params) != ("full", "kmeans"):
            continue  # the re-cutting is the same code for every source: test it once
        est = fitted(fastem.GaussianMixture(**kw), source)
        assert_same(est, reference, GMM_ATTRS)


def test_gmm_fit_predict_on_chunks_labels_every_row(tmp_path):
    X, _ = blobs(900, 2, 3, seed=8)
    kw = dict(n_components=3, random_state=0)
    with fastem.config_context(chunk_bytes=CHUNK):
        expected = fastem.GaussianMixture(**kw).fit_predict(X)
        labels = fastem.GaussianMixture(**kw).fit_predict(sources(X, tmp_path)["list"])
    assert labels.shape == (900,) and np.array_equal(labels, expected)


def test_gmm_reseed_on_chunks_equals_in_memory(tmp_path):
    """A component placed far away collapses and is re-seeded at the worst-explained
    sample, found chunk by chunk."""
    X, _ = blobs(1000, 2, 2, seed=9)
    kw = dict(n_components=3, covariance_type="diag", max_iter=5, tol=0, random_state=0,
              means_init=np.vstack([X[:2], [[1e4, 1e4]]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = fitted(fastem.GaussianMixture(**kw), X)
        est = fitted(fastem.GaussianMixture(**kw), sources(X, tmp_path)["callable"])
    assert reference.n_reseeded_ >= 1
    assert_same(est, reference, GMM_ATTRS)


def test_streamed_fit_with_checkpoint_completes_and_cleans_up(tmp_path):
    X, _ = blobs(800, 3, 3, seed=10)
    path = tmp_path / "fit.ckpt"
    reference = fitted(fastem.KMeans(3, random_state=0), X)
    est = fitted(fastem.KMeans(3, random_state=0), sources(X, tmp_path)["list"],
                 checkpoint=path, checkpoint_every=1)
    assert_same(est, reference, KMEANS_ATTRS)
    assert not path.exists()


def _peak(fit):
    tracemalloc.start()
    try:
        fit()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_streamed_fits_hold_no_copy_of_the_data(tmp_path):
    """Peak traced memory of a fit over a memory map or over Chunks is a fraction of
    the data: the chunk buffer plus per-row vectors (KMeans: labels, and k-means++'s
    distances while seeding), never a copy of X."""
    n, d = 100_000, 16
    X = np.random.default_rng(11).standard_normal((n, d))
    path = tmp_path / "big.npy"
    np.save(path, X)
    counts = tmp_path / "counts.npy"
    np.save(counts, np.abs(np.round(X * 3)))
    small, small_counts = tmp_path / "small.npy", tmp_path / "small_counts.npy"
    np.save(small, X[:2000])
    np.save(small_counts, np.abs(np.round(X[:2000] * 3)))
    chunk = 2**18
    fits = {
        "kmeans": lambda p: fastem.KMeans(4, max_iter=3, random_state=0).fit(
            np.load(p, mmap_mode="r")),
        "gmm": lambda p: fitted(fastem.GaussianMixture(
            4, covariance_type="diag", init_params="random_from_data", max_iter=3,
            random_state=0), fastem.Chunks(str(p))),
        "multinomial": lambda p: fitted(fastem.MultinomialMixture(
            4, max_iter=3, random_state=0), np.load(p, mmap_mode="r")),
    }
    with fastem.config_context(chunk_bytes=chunk):
        for name, fit in fits.items():  # compile or load the kernels (read-only arrays
            fit(small_counts if name == "multinomial" else small)  # too) beforehand
        kmeans = _peak(lambda: fits["kmeans"](path))
        gmm = _peak(lambda: fits["gmm"](path))
        bern = _peak(lambda: fits["multinomial"](counts))
    # per-row vectors: labels (4 bytes) and k-means++'s distances (8); a copy of X alone
    # is 128 n bytes
    assert kmeans < 16 * n + 8 * chunk, kmeans
    assert gmm < 8 * n + 8 * chunk, gmm
    # random_from_data draws k rows among those of positive weight: transient vectors of
    # the weights, the candidates and their permutation (8 bytes each)
    assert bern < 32 * n + 8 * chunk, bern
    del X


def test_changing_data_between_passes_is_refused():
    X, _ = blobs(600, 2, 3, seed=12)
    calls = []

    def shrinking():
        calls.append(1)
        return iter([X[: 600 - 10 * len(calls)]])

    with pytest.raises(ValueError, match="the data changed while fitting"):
        fitted(fastem.KMeans(3, random_state=0), fastem.Chunks(shrinking))


@pytest.mark.parametrize("make, exc, match", [
    (lambda X: fastem.Chunks(iter([X])), TypeError, "one-shot iterator"),
    (lambda X: fastem.Chunks([]), ValueError, "empty list"),
    (lambda X: fastem.Chunks(42), TypeError, "Chunks takes a path"),
    (lambda X: fastem.Chunks("/nonexistent/data.npy"), ValueError, "not found"),
    (lambda X: fastem.Chunks("/nonexistent/*.npy"), ValueError, "no files match"),
])
def test_bad_chunk_sources_are_refused(make, exc, match):
    X, _ = blobs(100, 2, 2)
    with pytest.raises(exc, match=match):
        make(X)


def test_a_directory_without_data_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("no data here")
    with pytest.raises(ValueError, match="no .npy or .npz files in"):
        fastem.Chunks(str(tmp_path))


def test_bad_pieces_name_the_piece():
    X, _ = blobs(300, 3, 2)
    bad = X[100:200].copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="piece 1 of X contains NaN"):
        fastem.KMeans(2).fit(fastem.Chunks([X[:100], bad]))
    with pytest.raises(ValueError, match="piece 1 of X has 2 columns but the first has 3"):
        fastem.KMeans(2).fit(fastem.Chunks([X[:100], X[:100, :2]]))
    with pytest.raises(ValueError, match="yielded no data"):
        fastem.KMeans(2).fit(fastem.Chunks(lambda: iter([])))
    with pytest.raises(TypeError, match="callable init needs the data as an array"):
        fastem.KMeans(2, init=lambda X, k, random_state: X[:k]).fit(fastem.Chunks([X]))


def discrete_data(kind, rng):
    if kind == "bernoulli":
        X = (rng.random((900, 6)) < rng.random(6)).astype(float)
        X[rng.random(X.shape) < 0.02] = np.nan
        X[:300] = np.nan_to_num(X[:300], nan=1.0)  # some chunks have no missing entry
        return X, fastem.BernoulliMixture
    if kind == "multinomial":
        return rng.poisson(rng.uniform(0.5, 4, 8), (900, 8)).astype(float), \
            fastem.MultinomialMixture
    X = rng.integers(-1, 4, (900, 5))
    X[:, 2] = np.minimum(X[:, 2], 2)  # fewer categories in one feature (inferred)
    return X, fastem.CategoricalMixture


@pytest.mark.parametrize("kind", ["bernoulli", "multinomial", "categorical"])
@pytest.mark.parametrize("init_params", ["random_from_data", "random", "kmeans"])
def test_discrete_mixtures_streamed_equal_in_memory(tmp_path, kind, init_params):
    X, model = discrete_data(kind, np.random.default_rng(16))
    if init_params == "kmeans" and kind != "multinomial":
        pytest.skip("kmeans initialization needs float data without missing entries")
    kw = dict(n_components=3, init_params=init_params, max_iter=6, tol=0, n_init=2,
              random_state=0)
    reference = fitted(model(**kw), X)
    names = [n for n in reference._fitted_attributes if n != "backend_"]
    streams = sources(X, tmp_path)
    for name, source in streams.items():
        if name == "directory":
            continue
        est = fitted(model(**kw), source)
        assert_same(est, reference, names)
    with fastem.config_context(chunk_bytes=CHUNK):
        labels = model(**kw).fit_predict(streams["list"])
        assert np.array_equal(labels, model(**kw).fit_predict(X))


def test_streamed_categorical_codes_are_checked():
    X = np.random.default_rng(17).integers(0, 3, (300, 4))
    with pytest.raises(ValueError, match=r"X\[150, 1\] = 7 but feature 1 has 3 categories"):
        bad = X.copy()
        bad[150, 1] = 7
        fitted(fastem.CategoricalMixture(2, n_categories=3), fastem.Chunks([bad[:100], bad[100:]]))
    est = fitted(fastem.CategoricalMixture(2, random_state=0), fastem.Chunks([X[:100], X[100:]]))
    assert est.n_categories_.tolist() == [3, 3, 3, 3]
    with pytest.raises(TypeError, match="Chunks takes dense arrays"):
        import scipy.sparse as sp

        fastem.MultinomialMixture(2).fit(fastem.Chunks([sp.csr_matrix(X.astype(float))]))


def test_float32_pieces_stay_float32_and_mixed_become_float64(tmp_path):
    X, _ = blobs(400, 2, 2, seed=13, dtype=np.float32)
    est = fitted(fastem.KMeans(2, random_state=0), fastem.Chunks([X[:150], X[150:]]))
    assert est.cluster_centers_.dtype == np.float32
    mixed = fitted(fastem.KMeans(2, random_state=0),
                   fastem.Chunks([X[:150], X[150:].astype(np.float64)]))
    assert mixed.cluster_centers_.dtype == np.float64
    assert os.path.exists(tmp_path)


@pytest.mark.parametrize("side", ["left", "right"])
def test_cumulative_search_equals_searchsorted_of_cumsum(side):
    """k-means++'s draws search cumulative sums chunk by chunk: the indices must be
    those of one np.cumsum over everything, including targets on exact partial sums."""
    from fastem.kmeans import cumulative_search

    rng = np.random.default_rng(14)
    values = rng.exponential(size=1000) * (rng.random(1000) < 0.7)  # zeros too
    full = np.cumsum(values)
    targets = np.concatenate([rng.uniform(0, full[-1] * 1.01, 200), full[[0, 17, 500, 999]],
                              [0.0]])
    for cuts in ([], [1, 2, 300, 301, 999], list(range(0, 1000, 7))):
        pieces = lambda: iter(np.split(values, cuts))  # noqa: E731
        got = cumulative_search(pieces, targets, side=side)
        np.testing.assert_array_equal(got, np.searchsorted(full, targets, side=side))
        got = cumulative_search(pieces, targets / full[-1], side=side, normalize=True)
        np.testing.assert_array_equal(got, np.searchsorted(full / full[-1], targets / full[-1],
                                                           side=side))


def test_first_kmeanspp_draw_replays_randomstate_choice():
    from fastem._stream import rows_from
    from fastem.kmeans import _weighted_draw

    X = np.zeros((5000, 1))
    w = np.random.default_rng(15).exponential(size=5000)
    for weights in (None, w):
        with fastem.config_context(chunk_bytes=800):  # 100 rows per chunk
            rows = rows_from(X, lambda a, name, cp: a, owner="test", sample_weight=weights)
            for seed in range(20):
                expected_w = np.ones(5000) if weights is None else w
                expected = np.random.RandomState(seed).choice(
                    5000, p=expected_w / expected_w.sum())
                assert _weighted_draw(rows, np.random.RandomState(seed)) == expected


def test_streamed_kmeans_initialization_refuses_missing_entries():
    X = (np.random.default_rng(18).random((400, 5)) < 0.5).astype(float)
    complete = fitted(fastem.BernoulliMixture(2, init_params="kmeans", random_state=0),
                      fastem.Chunks([X[:150], X[150:]]))
    reference = fitted(fastem.BernoulliMixture(2, init_params="kmeans", random_state=0), X)
    assert np.array_equal(complete.means_, reference.means_)
    X[300, 2] = np.nan  # in the second piece only
    with pytest.raises(ValueError, match="init_params='kmeans' needs dense data without "
                                         "missing entries"):
        fitted(fastem.BernoulliMixture(2, init_params="kmeans"), fastem.Chunks([X[:150], X[150:]]))
