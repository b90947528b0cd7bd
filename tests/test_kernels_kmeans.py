"""K-means kernels: the reference against hand-worked numbers, every backend against the
reference, and thread-count invariance (bit-identical outputs)."""

import numpy as np
import pytest
from conftest import FAST_BACKENDS, blobs

from fastem._dispatch import get_kernels

REF = get_kernels("numpy", "kmeans")


def rtol_for(dtype):
    return 1e-5 if dtype == np.float32 else 1e-11


# ----------------------------------------------------------------- reference, by hand
def test_reference_matches_hand_worked_example():
    # Two obvious groups around (0, 0) and (10, 10); weights 1, 2, 1, 3, 1.
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [10.0, 10.0], [11.0, 10.0]])
    w = np.array([1.0, 2.0, 1.0, 3.0, 1.0])
    centers = np.array([[0.0, 0.0], [10.0, 10.0]])
    labels = np.empty(5, np.int32)
    d2 = np.empty(5)
    REF.assign_labels(X, centers, labels, d2, 1)
    assert labels.tolist() == [0, 0, 0, 1, 1]
    assert d2.tolist() == [0.0, 1.0, 1.0, 0.0, 1.0]

    sums, wsum = np.empty((2, 2)), np.empty(2)
    REF.lloyd_step(X, w, centers, labels, sums, wsum, 1)
    # cluster 0: 1*(0,0) + 2*(1,0) + 1*(0,1) = (2, 1), weight 4
    # cluster 1: 3*(10,10) + 1*(11,10) = (41, 40), weight 4
    assert sums.tolist() == [[2.0, 1.0], [41.0, 40.0]]
    assert wsum.tolist() == [4.0, 4.0]
    # inertia = 1*0 + 2*1 + 1*1 + 3*0 + 1*1 = 4
    assert REF.inertia(X, w, centers, labels, 1) == 4.0

    # k-means++ with only (0,0) chosen: D^2 = 0, 1, 1, 200, 221.
    closest = np.full(5, np.inf)
    REF.kmeanspp_update_closest(X, centers[0], closest, 1)
    assert closest.tolist() == [0.0, 1.0, 1.0, 200.0, 221.0]
    pots = np.empty(2)
    cands = np.array([[10.0, 10.0], [1.0, 0.0]])
    REF.kmeanspp_trial_potentials(X, w, cands, closest, pots, 1)
    # candidate (10,10): min(D^2, d^2) = 0, 1, 1, 0, 1 -> 0 + 2 + 1 + 0 + 1 = 4
    # candidate (1,0): d^2 = 1, 0, 2, 181, 200 -> mins 0, 0, 1, 181, 200 -> 0+0+1+543+200
    assert pots.tolist() == [4.0, 744.0]


def test_reference_ties_go_to_lowest_index():
    X = np.array([[0.0], [1.0]])
    centers = np.array([[0.5], [0.5], [-0.5]])
    labels = np.empty(2, np.int32)
    REF.assign_labels(X, centers, labels, np.empty(2), 1)
    assert labels.tolist() == [0, 0]


# ----------------------------------------------------------------- backends vs reference
def _run_all(kern, X, w, centers, n_threads):
    n, k = X.shape[0], centers.shape[0]
    out = {}
    out["labels"] = np.empty(n, np.int32)
    out["min_sq_dist"] = np.empty(n)
    kern.assign_labels(X, centers, out["labels"], out["min_sq_dist"], n_threads)
    out["step_labels"] = np.empty(n, np.int32)
    out["sums"] = np.empty((k, X.shape[1]))
    out["weight_sums"] = np.empty(k)
    kern.lloyd_step(X, w, centers, out["step_labels"], out["sums"], out["weight_sums"], n_threads)
    out["inertia"] = np.array(kern.inertia(X, w, centers, out["labels"], n_threads))
    out["closest"] = np.full(n, np.inf)
    kern.kmeanspp_update_closest(X, centers[0], out["closest"], n_threads)
    out["potentials"] = np.empty(k)
    kern.kmeanspp_trial_potentials(X, w, centers, out["closest"], out["potentials"], n_threads)
    return out


SHAPES = [  # (n_samples, n_features, n_clusters): below / at / around one block, K=1, D=1
    (1, 3, 1), (7, 2, 3), (255, 4, 5), (256, 4, 5), (257, 4, 5), (1000, 5, 7),
    (3000, 1, 4), (600, 6, 1), (20000, 3, 2),
    (900, 2, 5), (500, 1, 37),  # D <= 2: centers four at a time, K not a multiple of 4
    (2000, 8, 40), (700, 3, 70),  # K >= 32, D <= 8: exact distances computed directly
    (1500, 12, 40),  # K >= 32, more features: GEMM and the vectorised (integer-key) argmin
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_backend_matches_reference(fast_backend, dtype, shape):
    n, d, k = shape
    X, centers = blobs(n, d, k, seed=n + d + k, dtype=dtype)
    rng = np.random.default_rng(1)
    w = rng.uniform(0.5, 2.0, n)
    w[::5] = 0.0  # zero weights are allowed and must not count
    kern = get_kernels(fast_backend, "kmeans")
    got = _run_all(kern, X, w, centers, 2)
    ref = _run_all(REF, X, w, centers, 1)
    np.testing.assert_array_equal(got["labels"], ref["labels"])
    np.testing.assert_array_equal(got["step_labels"], ref["labels"])
    tol = rtol_for(dtype)
    # the fast backends' assignment distance uses ||x||^2 - 2x.c + ||c||^2 in X's dtype:
    # absolute error ~ eps * (||x||^2 + ||c||^2)
    scale = np.max(np.sum(X.astype(np.float64) ** 2, axis=1)) + 1.0
    np.testing.assert_allclose(got["min_sq_dist"], ref["min_sq_dist"], rtol=0,
                               atol=50 * np.finfo(dtype).eps * scale)
    for key in ("sums", "weight_sums", "inertia", "closest", "potentials"):
        np.testing.assert_allclose(got[key], ref[key], rtol=tol, atol=tol, err_msg=key)


def test_backend_duplicate_points_and_single_cluster(fast_backend, dtype):
    X = np.repeat(np.array([[1.0, 2.0], [3.0, -1.0]], dtype=dtype), 300, axis=0)
    centers = np.array([[1.0, 2.0]], dtype=dtype)
    w = np.ones(600)
    got = _run_all(get_kernels(fast_backend, "kmeans"), X, w, centers, 2)
    ref = _run_all(REF, X, w, centers, 1)
    assert (got["labels"] == 0).all()
    np.testing.assert_allclose(got["sums"], ref["sums"], rtol=1e-12)
    np.testing.assert_allclose(got["inertia"], 300 * 13.0, rtol=1e-12)


@pytest.mark.parametrize("n_clusters", [3, 40])
@pytest.mark.parametrize("n_features", [2, 12])  # direct distances; GEMM (+ keyed argmin)
def test_backend_ties_go_to_lowest_index(fast_backend, dtype, n_clusters, n_features):
    X = np.zeros((3, n_features), dtype=dtype)
    X[:, :2] = [[0.0, 0.0], [2.0, 2.0], [9.0, 9.0]]
    centers = np.zeros((n_clusters, n_features), dtype=dtype)
    centers[:, :2] = 50.0
    centers[1, :2] = centers[2, :2] = 1.0  # two identical nearest centers for rows 0, 1
    centers[-1, :2] = centers[-2, :2] = 9.0  # and two for the last row, at the far end
    labels = np.empty(3, np.int32)
    get_kernels(fast_backend, "kmeans").assign_labels(X, centers, labels, np.empty(3), 1)
    assert labels.tolist() == [1, 1, n_clusters - 2]


def test_backend_accepts_readonly_inputs(fast_backend):
    X, centers = blobs(300, 3, 4)
    w = np.ones(300)
    for a in (X, centers, w):
        a.flags.writeable = False
    got = _run_all(get_kernels(fast_backend, "kmeans"), X, w, centers, 2)
    ref = _run_all(REF, X, w, centers, 1)
    np.testing.assert_array_equal(got["labels"], ref["labels"])


@pytest.mark.parametrize("n_features", [2, 12])  # direct distances; GEMM
def test_lloyd_step_returns_the_number_of_changed_labels(backend, n_features):
    X, centers = blobs(3000, n_features, 5, seed=4, spread=3.0)
    kern = get_kernels(backend, "kmeans")
    truth = np.empty(3000, np.int32)
    REF.assign_labels(X, centers, truth, np.empty(3000), 1)
    labels = truth.copy()
    labels[::7] = (labels[::7] + 1) % 5  # 429 wrong labels on entry
    labels[1::7] = -1  # and 429 rows with none
    sums, wsum = np.empty((5, n_features)), np.empty(5)
    assert kern.lloyd_step(X, np.ones(3000), centers, labels, sums, wsum, 2) == 858
    np.testing.assert_array_equal(labels, truth)
    assert kern.lloyd_step(X, np.ones(3000), centers, labels, sums, wsum, 2) == 0


# ----------------------------------------------------------------- thread invariance
@pytest.mark.parametrize("backend_name", FAST_BACKENDS)
@pytest.mark.parametrize("n_features", [2, 6])  # direct distances; GEMM
def test_kernels_bit_identical_for_any_thread_count(backend_name, dtype, n_features):
    # large enough for many blocks and slots, with an uneven last block
    X, centers = blobs(40_000 + 77, n_features, 9, seed=3, spread=3.0, dtype=dtype)
    w = np.random.default_rng(2).uniform(0, 3, X.shape[0])
    kern = get_kernels(backend_name, "kmeans")
    runs = [_run_all(kern, X, w, centers, t) for t in (1, 2, 3)]
    for other in runs[1:]:
        for key, value in runs[0].items():
            assert np.array_equal(value, other[key]), key
