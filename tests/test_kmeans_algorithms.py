"""The exact K-means assignment and the bounded algorithms (Hamerly, Yinyang, Elkan).

The assignment is defined by the exact float64 distance (reference kernels): every
backend must find those labels even where its fast GEMM distances round the other way,
and every algorithm must give Lloyd's labels and centers at every iteration.
"""

from fractions import Fraction

import numpy as np
import pytest
from conftest import FAST_BACKENDS, blobs

import fastem
from fastem._dispatch import get_kernels
from fastem._stream import Chunks, rows_from
from fastem.kmeans import BOUNDED, _group_centers, _LloydRun

REF = get_kernels("numpy", "kmeans")
ALGORITHMS = ["lloyd", *BOUNDED]


def _exact_sq(x, c):
    """The defining distance, written out: float64, feature order, one rounding per op."""
    acc = 0.0
    for xj, cj in zip(x, c):
        diff = float(xj) - float(cj)
        acc = acc + diff * diff
    return acc


def _near_ties(n_rows=40, n_features=8, seed=0):
    """Rows far from the origin (large ||x||, so float32 GEMM distances carry errors of
    ~1e-2) with three centers at squared distance ~1, two of them within 2^-5 of a tie.
    Returns X, per-row centers and each row's exact nearest center."""
    rng = np.random.default_rng(seed)
    X = (rng.uniform(-1, 1, (n_rows, n_features)) * 1000).astype(np.float32)
    cases = []
    for t in range(n_rows):
        x = X[t].astype(np.float64)
        e = np.zeros(n_features)
        e[t % n_features] = 1.0
        c = np.stack([x + e, x - e, x + np.roll(e, 1)]).astype(np.float32)
        c[1, (t + 3) % n_features] += np.float32(2.0 ** -6)
        exact = [_exact_sq(X[t], ck) for ck in c]
        cases.append((c, int(np.argmin(exact))))
    return X, cases


def test_reference_distance_is_the_written_out_definition():
    X, cases = _near_ties(n_rows=5)
    for t, (c, _) in enumerate(cases):
        labels, d2 = np.empty(1, np.int32), np.empty(1)
        REF.assign_labels(X[t:t + 1], c, labels, d2, 1)
        assert d2[0] == min(_exact_sq(X[t], ck) for ck in c)


@pytest.mark.parametrize("n_clusters", [3, 40])  # K >= 32: the keyed argmin
def test_gemm_rounding_never_decides_a_near_tie(backend, n_clusters):
    # With ||x|| ~ 1000 in float32, the GEMM's values ||c||^2/2 - x.c carry errors far
    # larger than the gap between the two nearest centers' squared distances; taking
    # the GEMM's argmin as is, the fast backends got 13 of the first 20 rows wrong.
    # (12 features: the GEMM path for any K; far centers fill K up to 40.)
    kern = get_kernels(backend, "kmeans")
    X, cases = _near_ties(n_features=12)
    for t, (c, expected) in enumerate(cases):
        far = X[t] + np.float32(300.0) * (1 + np.arange(n_clusters - 3, dtype=np.float32))[:, None]
        c = np.concatenate([c, far.astype(np.float32)])
        labels = np.empty(1, np.int32)
        kern.assign_labels(X[t:t + 1], c, labels, np.empty(1), 1)
        assert labels[0] == expected, t
        sums, wsum = np.empty((n_clusters, X.shape[1])), np.empty(n_clusters)
        kern.lloyd_step(X[t:t + 1], np.ones(1), c, labels, sums, wsum, 1)
        assert labels[0] == expected, t


@pytest.mark.parametrize("own_in_tile", [True, False], ids=["own-in-tile", "own-float64"])
def test_bounded_step_certifies_a_near_tie_among_tile_candidates(fast_backend, own_in_tile):
    # A Yinyang step where only the group of the three near-tie centers is open: the row
    # goes through that group's own small GEMM (8 of 40 centers), whose float32 values
    # cannot order the near-tie, and must end on the exact nearest.  With own-float64,
    # the row's own center sits in another, closed group: it is a candidate at its
    # float64 distance beside the GEMM's values.
    kern = get_kernels(fast_backend, "kmeans")
    X, cases = _near_ties(n_features=12)
    k, size = 40, 8
    group_of = np.repeat(np.arange(k // size), size)
    group_start = np.arange(0, k + 1, size)
    members = np.arange(k)
    n_settled_exactly = 0
    for t, (c, expected) in enumerate(cases):
        far = X[t] + np.float32(300.0) * (1 + np.arange(k, dtype=np.float32))[:, None]
        centers = far.astype(np.float32)
        centers[[0, 1]] = c[:2]
        own = 2 if own_in_tile else size  # group 0, else the first center of group 1
        centers[own] = c[2]
        d = np.sqrt(((centers.astype(np.float64) - X[t].astype(np.float64)) ** 2).sum(axis=1))
        lower = np.empty((1, k // size))
        for g in range(k // size):
            others = [j for j in range(g * size, (g + 1) * size) if j != own]
            lower[0, g] = d[others].min() * (1 - 1e-9)  # valid bounds: only group 0 is open
        lower[0, 0] = 0.0
        labels = np.array([own], np.int32)
        upper = np.array([d[own] * (1 + 1e-9)])
        stats = np.empty(3)
        kern.bounded_step(X[t:t + 1], np.ones(1), centers, np.zeros(k), np.zeros(k),
                          group_of, group_start, members, labels, upper, lower, False,
                          np.empty((k, X.shape[1])), np.empty(k), stats, 1)
        assert labels[0] == [0, 1, own][expected], t
        # its own distance and the open group's: the tile path; then maybe all K exactly
        assert stats[2] in (1 + size, 1 + size + k), stats[2]
        n_settled_exactly += stats[2] == 1 + size + k
        assert upper[0] >= d[labels[0]] * (1 - 1e-12)
        rest = np.delete(np.arange(k), labels[0])
        for g in range(k // size):
            in_g = rest[(rest >= g * size) & (rest < (g + 1) * size)]
            assert lower[0, g] <= d[in_g].min() * (1 + 1e-12), (t, g)
    assert n_settled_exactly >= len(cases) // 4  # the GEMM really could not order them


def test_bounded_step_bounds_the_old_center_after_a_tile_move(fast_backend, dtype):
    # The row's own center (group 1, distance 3) is in a closed group; the open group 0
    # holds a center at distance 1, which the tile's GEMM certifies.  The old center is
    # then one of group 1's others, so group 1's bound must drop from ~19 to ~3.
    kern = get_kernels(fast_backend, "kmeans")
    k, size, n_features = 40, 8, 12
    x = np.zeros((1, n_features), dtype)
    centers = np.zeros((k, n_features), dtype)
    centers[:, 2] = 10.0 + np.arange(k)  # far, yet not so far that float32 GEMM errors grow
    centers[0] = 0.0
    centers[0, 0] = 1.0
    centers[size] = 0.0
    centers[size, 1] = 3.0
    d = np.sqrt((centers.astype(np.float64) ** 2).sum(axis=1))
    lower = np.array([[0.0] + [d[g * size + 1:(g + 1) * size].min() * (1 - 1e-9)
                               for g in range(1, k // size)]])
    labels, upper, stats = np.array([size], np.int32), np.array([3.0 * (1 + 1e-9)]), np.empty(3)
    kern.bounded_step(x, np.ones(1), centers, np.zeros(k), np.zeros(k),
                      np.repeat(np.arange(k // size), size), np.arange(0, k + 1, size),
                      np.arange(k), labels, upper, lower, False, np.empty((k, n_features)),
                      np.empty(k), stats, 1)
    assert labels[0] == 0 and stats[2] == 1 + size  # its own distance and group 0's
    assert 1.0 <= upper[0] < 1.01
    assert 2.99 < lower[0, 1] <= 3.0  # the old center, now an other
    assert lower[0, 0] > 10.99  # group 0 without the new center
    assert lower[0, 2] == pytest.approx(d[2 * size + 1:3 * size].min(), rel=1e-6)


def _fma(a, b, c):
    """a * b + c rounded once, as a fused multiply-add computes it."""
    return float(Fraction(a) * Fraction(b) + Fraction(c))


@pytest.mark.parametrize("n_clusters, n_features", [(2, 2), (40, 2), (40, 3), (2, 3)])
def test_exact_distance_is_never_fused(backend, n_clusters, n_features):
    # (the direct distances for two features, few and many clusters; for more features
    # and many clusters; and the GEMM path's exact fallback)
    # x = (v, v) and the centers (v + a, v + b), (v + b, v + a): the defining distances
    # round(round(a^2) + round(b^2)) and round(round(b^2) + round(a^2)) tie, so label 0.
    # Fused into fma(b, b, round(a^2)) and fma(a, a, round(b^2)) they differ; keep the
    # rows where the second center would then win.  (Far centers fill K up to 40.)
    rng = np.random.default_rng(5)
    X, centers = [], []
    while len(X) < 12:
        v = np.float32(rng.uniform(-4, 4))
        a, b = (np.float32(v + rng.uniform(-1, 1)) for _ in range(2))
        da, db = float(v) - float(a), float(v) - float(b)
        if _fma(db, db, da * da) < _fma(da, da, db * db):
            X.append([v, v] + [0.0] * (n_features - 2))  # more features add 0, exactly
            centers.append([[b, a], [a, b]])
    X = np.array(X, np.float32)
    kern = get_kernels(backend, "kmeans")
    for t in range(len(X)):
        c = np.full((n_clusters, n_features), 1e4, np.float32)
        c[:2, 2:] = 0.0
        c[:2, :2] = centers[t]
        labels, d2 = np.empty(1, np.int32), np.empty(1)
        kern.assign_labels(X[t:t + 1], c, labels, d2, 1)
        assert labels[0] == 0 and d2[0] == _exact_sq(X[t], c[0]), t
        kern.lloyd_step(X[t:t + 1], np.ones(1), c, labels, np.empty((n_clusters, n_features)),
                        np.empty(n_clusters), 1)
        assert labels[0] == 0, t


def _overlapping(n, d, k, dtype, seed=0):
    """Overlapping clusters: many rows near a boundary, labels keep changing."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 2.0
    X = (centers[rng.integers(0, k, n)] + 1.5 * rng.standard_normal((n, d))).astype(dtype)
    return X - X.mean(axis=0, dtype=np.float64).astype(dtype)


def _history(rows, init, algorithm, kern, max_iter=15):
    """(final labels, inertia, centers, iterations), and (centers, labels, labels changed)
    after every iteration, of a run stopped at strict convergence or max_iter."""
    run = _LloydRun(rows, init, None, algorithm=algorithm, tol=0.0, verbose=0, kern=kern,
                    n_threads=2)
    seen = []
    for _ in range(max_iter):
        converged, _, n_changed = run.step()
        seen.append((run.centers.copy(), run.labels.copy(), n_changed))
        if converged:
            break
    inertia = run.finish()
    return (run.labels, inertia, run.centers, run.n_done), seen


@pytest.mark.parametrize("shape", [(3000, 2, 8), (2500, 16, 16), (1200, 24, 45), (1500, 12, 70),
                                   (600, 3, 1)],
                         ids=lambda s: "x".join(map(str, s)))
def test_every_algorithm_gives_lloyds_iterations_bit_for_bit(backend, dtype, shape):
    n, d, k = shape
    X = _overlapping(n, d, k, dtype, seed=n + k)
    rng = np.random.default_rng(3)
    w = rng.uniform(0.5, 2.0, n)
    w[::7] = 0.0
    init = X[rng.choice(n, k, replace=False)].copy()
    kern = get_kernels(backend, "kmeans")
    rows = rows_from(X, lambda a, name, cp: a, owner="test", sample_weight=w)
    (labels0, inertia0, centers0, _), lloyd = _history(rows, init, "lloyd", kern)
    assert any(h[2] > 0 for h in lloyd[3:]) or k == 1  # labels still moving: a real test
    for algorithm in BOUNDED:
        (labels, inertia, centers, _), seen = _history(rows, init, algorithm, kern)
        assert len(seen) == len(lloyd)
        for it, (a, b) in enumerate(zip(seen, lloyd)):
            np.testing.assert_array_equal(a[0], b[0], err_msg=f"{algorithm} centers, it {it}")
            np.testing.assert_array_equal(a[1], b[1], err_msg=f"{algorithm} labels, it {it}")
            assert a[2] == b[2]
        np.testing.assert_array_equal(labels, labels0)
        assert inertia == inertia0


def test_bounded_algorithms_relocate_empty_clusters_like_lloyd(backend):
    # Two far-apart groups and three centers started on one side: a cluster empties.
    X = np.concatenate([np.zeros((50, 2)), np.full((50, 2), 10.0)])
    X += np.random.default_rng(0).normal(0, 0.1, X.shape)
    init = np.array([[10.0, 10.0], [10.1, 10.0], [100.0, 100.0]])
    kern = get_kernels(backend, "kmeans")
    rows = rows_from(X, lambda a, name, cp: a, owner="test")
    _, lloyd = _history(rows, init, "lloyd", kern, max_iter=5)
    for algorithm in BOUNDED:
        _, seen = _history(rows, init, algorithm, kern, max_iter=5)
        for a, b in zip(seen, lloyd):
            np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize("backend_name", FAST_BACKENDS)
def test_bounds_prune_and_stay_valid(backend_name, dtype):
    """Well-separated blobs: after one full step and a step with the same centers, no
    distance is computed at all (so the bounds really prune), and after steps with
    moved centers the bounds still hold for the exact distances."""
    kern = get_kernels(backend_name, "kmeans")
    X, centers = blobs(3000, 5, 12, seed=4, dtype=dtype)
    n, k = X.shape[0], centers.shape[0]
    for n_groups in (1, 3, k):
        group_of, start, members = _group_centers(centers, n_groups)
        g = start.size - 1
        labels = np.full(n, -1, np.int32)
        upper, lower = np.zeros(n), np.zeros((n, g))
        sums, wsum, stats = np.empty((k, 5)), np.empty(k), np.empty(3)
        half_sep = np.full(k, 0.0)
        args = (group_of, start, members, labels, upper, lower)
        kern.bounded_step(X, np.ones(n), centers, np.zeros(k), half_sep, *args, True,
                          sums, wsum, stats, 1)
        assert stats[0] == n and stats[2] == n * k
        kern.bounded_step(X, np.ones(n), centers, np.zeros(k), half_sep, *args, False,
                          sums, wsum, stats, 1)
        assert stats[0] == 0 and stats[2] == 0, n_groups
        moved = centers.copy()
        rng = np.random.default_rng(n_groups)
        for _ in range(3):
            new = (moved + rng.normal(0, 0.5, moved.shape)).astype(dtype)
            drift = np.sqrt(((new.astype(np.float64) - moved) ** 2).sum(axis=1)) * (1 + 1e-9)
            kern.bounded_step(X, np.ones(n), new, drift, half_sep, *args, False, sums, wsum,
                              stats, 1)
            moved = new
            ref_labels = np.empty(n, np.int32)
            REF.assign_labels(X, moved, ref_labels, np.empty(n), 1)
            np.testing.assert_array_equal(labels, ref_labels)
            d = np.sqrt(((X[:, None, :].astype(np.float64) - moved[None].astype(np.float64))
                         ** 2).sum(axis=-1))
            assert np.all(upper >= d[np.arange(n), labels] * (1 - 1e-12))
            d[np.arange(n), labels] = np.inf
            for grp in range(g):
                nearest = d[:, members[start[grp]:start[grp + 1]]].min(axis=1)
                assert np.all(lower[:, grp] <= nearest * (1 + 1e-12))


@pytest.mark.parametrize("algorithm", ["auto", *ALGORITHMS])
def test_kmeans_algorithm_parameter_gives_the_same_model(algorithm):
    X = _overlapping(2000, 6, 12, np.float64, seed=9)
    ref = fastem.KMeans(12, n_init=1, random_state=0, algorithm="lloyd", tol=0).fit(X)
    km = fastem.KMeans(12, n_init=1, random_state=0, algorithm=algorithm, tol=0).fit(X)
    np.testing.assert_array_equal(km.labels_, ref.labels_)
    np.testing.assert_array_equal(km.cluster_centers_, ref.cluster_centers_)
    assert km.inertia_ == ref.inertia_ and km.n_iter_ == ref.n_iter_


def test_bounded_algorithm_streams_like_in_memory(tmp_path):
    X = _overlapping(3000, 4, 10, np.float32, seed=2)
    parts = [X[:1000], X[1000:2200], X[2200:]]
    for i, p in enumerate(parts):
        np.save(tmp_path / f"part{i}.npy", p)
    kw = dict(n_clusters=10, n_init=1, random_state=0, tol=0, max_iter=20)
    with fastem.config_context(chunk_bytes=16 * 700):  # several chunks
        mem = fastem.KMeans(algorithm="lloyd", **kw).fit(X)
        streamed = fastem.KMeans(algorithm="yinyang", **kw).fit(Chunks(str(tmp_path)))
    np.testing.assert_array_equal(streamed.labels_, mem.labels_)
    np.testing.assert_array_equal(streamed.cluster_centers_, mem.cluster_centers_)


def test_bad_algorithm_is_a_clear_error():
    with pytest.raises(ValueError, match="'algorithm' parameter"):
        fastem.KMeans(2, algorithm="fast").fit(np.zeros((5, 2)))


def test_group_centers_partitions_the_centers():
    centers = np.random.default_rng(0).standard_normal((37, 4))
    for n_groups, expect in ((1, 1), (3, None), (37, 37)):
        group_of, start, members = _group_centers(centers, n_groups)
        assert sorted(members.tolist()) == list(range(37))
        assert start[0] == 0 and start[-1] == 37 and np.all(np.diff(start) > 0)
        for g in range(start.size - 1):
            assert np.all(group_of[members[start[g]:start[g + 1]]] == g)
        if expect is not None:
            assert start.size - 1 == expect


def test_auto_keeps_streamed_fits_free_of_per_row_bounds():
    from fastem.kmeans import _auto_algorithm

    assert _auto_algorithm(8, 256, in_memory=True) == "hamerly"
    assert _auto_algorithm(8, 256, in_memory=False) == "lloyd"  # only labels per row
    assert _auto_algorithm(16, 8, in_memory=True) == "lloyd"  # bounds do not pay off
    assert _auto_algorithm(16, 32, in_memory=True) == "lloyd"
    assert _auto_algorithm(4, 64, in_memory=True) == "hamerly"
    assert _auto_algorithm(2, 256, in_memory=True) == "lloyd"  # direct exact distances
