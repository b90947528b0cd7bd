"""KMeans and MiniBatchKMeans on scipy.sparse input: CSR kernels in every backend that
give the dense kernels' labels and sums, fits equal to the dense fit and to
scikit-learn's, and a matrix that is never densified."""

import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import fastem
from fastem._dispatch import get_kernels


def _sparse_blobs(n=2000, d=120, k=6, density=0.15, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 3
    X = centers[rng.integers(0, k, n)] + rng.standard_normal((n, d))
    X[rng.uniform(size=X.shape) > density] = 0.0
    X[::7] = 0.0  # empty rows too
    return sp.csr_matrix(X.astype(dtype))


@pytest.mark.parametrize("index", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_csr_kernels_give_the_dense_kernels_labels_and_sums(backend, dtype, index):
    """The labels bit for bit (both are the exact distance's nearest centers); the Lloyd
    sums (added per cluster in row order, not in the dense kernel's slots) to rounding."""
    kern = get_kernels(backend, "kmeans")
    S = _sparse_blobs(1500, 90, 5, dtype=dtype)
    X = S.toarray()
    data, indices, indptr = S.data, S.indices.astype(index), S.indptr.astype(index)
    rng = np.random.default_rng(1)
    centers = np.ascontiguousarray(X[rng.choice(X.shape[0], 9, replace=False)])
    w = rng.uniform(0.5, 2.0, X.shape[0])
    out = {}
    for form, args in (("dense", (X,)), ("csr", (data, indices, indptr))):
        suffix = "" if form == "dense" else "_csr"
        labels, sums, weights = np.full(X.shape[0], -1, np.int32), np.empty((9, 90)), np.empty(9)
        changed = getattr(kern, "lloyd_step" + suffix)(*args, w, centers, labels, sums, weights,
                                                       2)
        assigned, dist = np.empty(X.shape[0], np.int32), np.empty(X.shape[0])
        getattr(kern, "assign_labels" + suffix)(*args, centers, assigned, dist, 2)
        inertia = getattr(kern, "inertia" + suffix)(*args, w, centers, labels, 2)
        out[form] = labels, sums, weights, changed, assigned, dist, inertia
    (l1, s1, w1, c1, a1, d1, i1), (l2, s2, w2, c2, a2, d2, i2) = out["dense"], out["csr"]
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(a1, l1)
    np.testing.assert_allclose(s2, s1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(w2, w1, rtol=1e-13)
    assert c1 == c2 == X.shape[0]
    # the distances: float32's fast path rounds in float32 (D u ||x||^2, ~1e-3 here)
    np.testing.assert_allclose(d2, d1, rtol=1e-5 if dtype == np.float32 else 1e-9,
                               atol=2e-3 if dtype == np.float32 else 1e-9)
    assert i2 == pytest.approx(i1, rel=1e-12)


def test_a_sparse_fit_is_the_dense_fit_and_scikit_learns(backend):
    from sklearn.cluster import KMeans as SKKMeans

    S = _sparse_blobs()
    X = S.toarray()
    init = X[[3, 100, 200, 300, 400, 500]]
    sparse = fastem.KMeans(6, init=init, backend=backend).fit(S)
    dense = fastem.KMeans(6, init=init, backend=backend, algorithm="lloyd").fit(X)
    ref = SKKMeans(6, init=init, n_init=1, algorithm="lloyd").fit(S)
    np.testing.assert_array_equal(sparse.labels_, dense.labels_)
    np.testing.assert_allclose(sparse.cluster_centers_, dense.cluster_centers_, atol=1e-12)
    np.testing.assert_array_equal(sparse.labels_, ref.labels_)
    np.testing.assert_allclose(sparse.cluster_centers_, ref.cluster_centers_, atol=1e-12)
    assert sparse.n_iter_ == ref.n_iter_
    assert sparse.inertia_ == pytest.approx(ref.inertia_, rel=1e-9)
    # and from the same seed, scikit-learn's k-means++ centers, then the same fit
    a = fastem.KMeans(6, random_state=4, backend=backend).fit(S)
    b = SKKMeans(6, random_state=4, n_init=1).fit(S)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.inertia_ == pytest.approx(b.inertia_, rel=1e-9)
    centers, idx = fastem.kmeans_plusplus(S, 6, random_state=2, backend=backend)
    from sklearn.cluster import kmeans_plusplus

    np.testing.assert_array_equal(idx, kmeans_plusplus(S, 6, random_state=2)[1])
    np.testing.assert_array_equal(centers, X[idx])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_predict_transform_score_on_sparse_equal_the_dense_ones(dtype):
    S = _sparse_blobs(dtype=dtype)
    X = S.toarray()
    km = fastem.KMeans(6, random_state=0).fit(S)
    assert km.cluster_centers_.dtype == dtype
    np.testing.assert_array_equal(km.predict(S), km.labels_)
    np.testing.assert_array_equal(km.predict(S), km.predict(X))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(km.transform(S), km.transform(X), rtol=tol, atol=tol)
    assert km.score(S) == pytest.approx(km.score(X), rel=1e-6 if dtype == np.float32 else 1e-12)
    assert km.transform(S).dtype == dtype


def test_sparse_fits_are_bit_identical_for_any_thread_count_and_chunking(fast_backend):
    S = _sparse_blobs(3000, 60, 5)
    w = np.random.default_rng(3).uniform(0.5, 2.0, S.shape[0])
    fits = []
    for n_threads, chunk_bytes in ((1, None), (2, None), (2, 40_000)):
        with fastem.config_context(**({} if chunk_bytes is None else
                                      {"chunk_bytes": chunk_bytes})):
            fits.append(fastem.KMeans(5, random_state=0, n_threads=n_threads,
                                      backend=fast_backend).fit(S, sample_weight=w))
    for other in fits[1:2]:
        np.testing.assert_array_equal(other.cluster_centers_, fits[0].cluster_centers_)
        np.testing.assert_array_equal(other.labels_, fits[0].labels_)
        assert other.inertia_ == fits[0].inertia_
    # smaller chunks add the sums in more pieces: the same labels, centers to rounding
    np.testing.assert_array_equal(fits[2].labels_, fits[0].labels_)
    np.testing.assert_allclose(fits[2].cluster_centers_, fits[0].cluster_centers_, atol=1e-12)


def test_other_formats_and_unsorted_indices_are_accepted_and_left_unchanged():
    S = _sparse_blobs(500, 30, 3)
    ref = fastem.KMeans(3, random_state=0).fit(S)
    # the same matrix with each row's entries reversed and one entry split in two
    rows = []
    for i in range(S.shape[0]):
        lo, hi = S.indptr[i], S.indptr[i + 1]
        rows.append((S.indices[lo:hi][::-1], S.data[lo:hi][::-1]))
    indices = np.concatenate([r[0] for r in rows] + [[S.indices[S.indptr[1]]]])
    data = np.concatenate([r[1] for r in rows] + [[0.0]])
    indptr = S.indptr.copy()
    indptr[2:] += 1  # the duplicate (a zero added to row 1's first entry)
    order = np.concatenate([np.arange(S.indptr[2]), [S.nnz], np.arange(S.indptr[2], S.nnz)])
    messy = sp.csr_matrix((data[order], indices[order], indptr), shape=S.shape)
    assert not messy.has_canonical_format
    before = (messy.data.copy(), messy.indices.copy())
    for X in (messy, S.tocoo(), S.tocsc(), sp.csr_array(S)):
        got = fastem.KMeans(3, random_state=0).fit(X)
        np.testing.assert_array_equal(got.labels_, ref.labels_)
        np.testing.assert_array_equal(got.cluster_centers_, ref.cluster_centers_)
    np.testing.assert_array_equal(messy.data, before[0])
    np.testing.assert_array_equal(messy.indices, before[1])


def test_a_sparse_matrix_is_never_densified():
    """20,000 x 100,000 with 4 entries a row: 16 GB dense, 1 MB stored; the fit,
    predict and transform hold O(nnz + N K + K D) memory."""
    rng = np.random.default_rng(0)
    n, d, per_row = 20_000, 100_000, 4
    cols = rng.integers(0, d, (n, per_row))
    cols.sort(axis=1)
    S = sp.csr_matrix((rng.uniform(1, 2, n * per_row), cols.ravel(),
                       np.arange(0, n * per_row + 1, per_row)), shape=(n, d))
    S.sum_duplicates()
    tracemalloc.start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        km = fastem.KMeans(4, random_state=0, max_iter=3).fit(S)
        km.predict(S)
        km.transform(S)
        fastem.MiniBatchKMeans(4, random_state=0, max_iter=1).fit(S)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # the centers and their sums are K x D float64: 3.2 MB each
    assert peak < 60 * 2**20, peak


def test_minibatch_kmeans_on_sparse_is_scikit_learns(backend):
    from sklearn.cluster import MiniBatchKMeans as SKMiniBatch

    S = _sparse_blobs(4000, 80, 5)
    a = fastem.MiniBatchKMeans(5, random_state=0, batch_size=256, backend=backend).fit(S)
    b = SKMiniBatch(5, random_state=0, batch_size=256).fit(S)
    assert a.n_steps_ == b.n_steps_
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, atol=1e-12)
    c, e = (fastem.MiniBatchKMeans(5, random_state=0, backend=backend),
            SKMiniBatch(5, random_state=0))
    for start in range(0, S.shape[0], 1000):
        c.partial_fit(S[start:start + 1000])
        e.partial_fit(S[start:start + 1000])
    np.testing.assert_allclose(c.cluster_centers_, e.cluster_centers_, atol=1e-12)
    np.testing.assert_array_equal(c.predict(S), e.predict(S))


def test_bounded_algorithms_on_sparse_say_what_to_use():
    with pytest.raises(ValueError, match="algorithm='hamerly' is not implemented for sparse X"):
        fastem.KMeans(3, algorithm="hamerly").fit(_sparse_blobs(300, 10, 3))


def test_sparse_input_errors_name_the_problem():
    bad = sp.csr_matrix(np.array([[1.0, np.nan], [0.0, 2.0], [3.0, 0.0]]))
    with pytest.raises(ValueError, match="contains NaN or infinity"):
        fastem.KMeans(2).fit(bad)
    with pytest.raises(ValueError, match="at least one sample"):
        fastem.KMeans(2).fit(sp.csr_matrix((0, 3)))
    km = fastem.KMeans(2, random_state=0).fit(_sparse_blobs(100, 10, 2))
    with pytest.raises(ValueError, match="10 features"):
        km.predict(sp.csr_matrix(np.ones((2, 11))))
