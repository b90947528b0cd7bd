"""K-means (hard EM): ``KMeans`` and ``kmeans_plusplus``, drop-in for scikit-learn's.

The E-step assigns every sample to its nearest center; the M-step moves each center
to the weighted mean of its samples.  Both happen in one pass over the data in the
``lloyd_step`` kernel; this module holds the parameters, the checks and the loop.
Everything here is backend-independent: kernels come from ``fastem._dispatch``.

Follows scikit-learn's Lloyd exactly where it matters for identical answers: the
data are centered before fitting, ``tol`` is relative to the mean feature variance,
convergence is either "labels unchanged" (strict) or "squared center shift <= tol",
and a final assignment makes ``labels_`` consistent with ``cluster_centers_``.
"""

from __future__ import annotations

import numbers
import warnings
from typing import TYPE_CHECKING

import numpy as np

from ._config import BACKENDS
from ._threads import limit_blas_threads
from ._validation import (
    Interval,
    Options,
    check_array,
    check_array_or_csr,
    check_enough_samples,
    check_magnitude,
    check_random_state,
    check_sample_weight,
    row_blocks,
    validate_params,
)
from ._stream import cumulative_search, rows_from
from .base import EMEstimator, Iteration, lazy_on_dask
from .exceptions import ConvergenceWarning

if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Union

    from typing_extensions import Self

    from ._typing import ArrayLike, Callback, Data, Labels, NDArray, Weights


_RELOCATION_CHUNK = 65536


def _on_rows(X, dense, csr, *args):
    """``dense(X, *args)``, or on a CSR matrix (canonical, see ``check_csr``) the kernel's
    CSR form ``csr(data, indices, indptr, *args)``."""
    if isinstance(X, np.ndarray):
        return dense(X, *args)
    return csr(X.data, X.indices, X.indptr, *args)


def _column_sums(chunk):
    """Per-feature sums of a chunk (float64).  (``einsum`` sums down the columns in one
    pass: ``sum(axis=0)`` took 5x longer on 1,000,000 x 2 float64.)"""
    return np.einsum("ij->j", chunk.X, dtype=np.float64)


def _mean(rows):
    """Per-feature mean (float64), summed chunk by chunk."""
    total = np.zeros(rows.n_features)
    for part in rows.map(_column_sums):
        total += part
    return total / rows.n_rows


def _dense_rows(X, index):
    """Rows of X (an array or a CSR matrix) as a dense array."""
    rows = X[index]
    return rows if isinstance(rows, np.ndarray) else rows.toarray()


def _csr_row_parts(X):
    """(the row of every stored entry, the entries in float64) of a CSR matrix."""
    return (np.repeat(np.arange(X.shape[0]), np.diff(X.indptr)), X.data.astype(np.float64))


def _moment_parts(chunk):
    """(sum x, sum x^2) of each small block of a chunk, float64: the caller adds them in
    order, as one running sum over the blocks of every chunk."""
    if not isinstance(chunk.X, np.ndarray):  # CSR: the stored entries, by column
        v = chunk.X.data.astype(np.float64)
        d = chunk.X.shape[1]
        return [(np.bincount(chunk.X.indices, v, d), np.bincount(chunk.X.indices, v * v, d))]
    parts = []
    for a, b in row_blocks(*chunk.X.shape, elements=2**18):  # small float64 temporaries
        block = chunk.X[a:b].astype(np.float64)
        parts.append((block.sum(axis=0), np.einsum("ij,ij->j", block, block)))
    return parts


def _tolerance(rows, tol):
    """scikit-learn's ``tol``: a fraction of the mean per-feature variance of the data."""
    if tol == 0:
        return 0.0
    s1 = np.zeros(rows.n_features)
    s2 = np.zeros(rows.n_features)
    for parts in rows.map(_moment_parts):
        for p1, p2 in parts:
            s1 += p1
            s2 += p2
    mean = s1 / rows.n_rows
    return float(np.mean(np.maximum(s2 / rows.n_rows - mean * mean, 0.0)) * tol)


def _sq_dist_to_assigned(X, centers, labels):
    """float64 ``||x_i - centers[labels_i]||^2``, in chunks to bound the temporary (CSR:
    ``||x||^2 - 2 x.c + ||c||^2`` over the stored entries)."""
    if not isinstance(X, np.ndarray):
        row, v = _csr_row_parts(X)
        n = X.shape[0]
        dots = np.bincount(row, v * centers[labels[row], X.indices], n)
        c_sq = np.einsum("ij,ij->i", centers, centers)[labels]
        return np.maximum(np.bincount(row, v * v, n) - 2.0 * dots + c_sq, 0.0)
    out = np.empty(X.shape[0], dtype=np.float64)
    for start in range(0, X.shape[0], _RELOCATION_CHUNK):
        stop = start + _RELOCATION_CHUNK
        diff = X[start:stop].astype(np.float64) - centers[labels[start:stop]]
        out[start:stop] = np.einsum("ij,ij->i", diff, diff)
    return out


def _farthest_in_chunk(chunk, centers, m):
    """The chunk's ``m`` rows farthest from their assigned centers (``chunk.state[0]``):
    (squared distances, global indices, rows, labels), zero-weight rows at distance -1."""
    dist = _sq_dist_to_assigned(chunk.X, centers, chunk.state[0])
    dist[chunk.w == 0] = -1.0
    top = np.argsort(-dist, kind="stable")[:m]
    return dist[top], top + chunk.start, _dense_rows(chunk.X, top), chunk.state[0][top]


def _farthest(rows, centers, labels, m):
    """The ``m`` samples farthest from their assigned centers, farthest first, ties to the
    lowest index, zero-weight samples last: (indices, their rows, their labels), in one
    pass."""
    keep_d = np.empty(0)
    keep_i = np.empty(0, dtype=np.intp)
    keep_x = np.empty((0, rows.n_features), dtype=rows.dtype)
    keep_l = np.empty(0, dtype=np.int32)
    for dist, idx, x, lab in rows.map(_farthest_in_chunk, centers, m, state=(labels,)):
        d = np.concatenate([keep_d, dist])
        i = np.concatenate([keep_i, idx])
        x = np.concatenate([keep_x, x])
        lab = np.concatenate([keep_l, lab])
        order = np.lexsort((i, -d))[:m]  # by distance descending, then index
        keep_d, keep_i, keep_x, keep_l = d[order], i[order], x[order], lab[order]
    return keep_i, keep_x, keep_l


def _relocate_empty_clusters(rows, centers_old, sums, weight_sums, labels):
    """Give every empty cluster one of the samples farthest from its center.

    Deterministic: samples are ranked by squared distance to their assigned (old)
    center, farthest first, ties to the lowest index; zero-weight samples are never
    chosen (they could not make a cluster non-empty).  The sample's weighted
    contribution moves from its old cluster's sums to the empty cluster's, as in
    scikit-learn; ``labels`` is left unchanged (the next iteration reassigns).
    """
    empty = np.flatnonzero(weight_sums == 0)
    if empty.size == 0:
        return 0
    far, far_rows, far_labels = _farthest(rows, centers_old.astype(np.float64), labels,
                                          empty.size)
    for new_k, idx, x, old_k in zip(empty, far, far_rows, far_labels):
        w = 1.0 if rows.weights is None else rows.weights[idx]
        contribution = w * x.astype(np.float64)
        sums[old_k] -= contribution
        weight_sums[old_k] -= w
        sums[new_k] = contribution
        weight_sums[new_k] = w
    return empty.size


def _average_centers(sums, weight_sums, centers_old, dtype):
    """New centers = sums / weights; a cluster left with no weight keeps its old center."""
    centers = centers_old.astype(np.float64, copy=True)
    filled = weight_sums > 0
    centers[filled] = sums[filled] / weight_sums[filled, None]
    return np.ascontiguousarray(centers, dtype=dtype)


def _inertia_of_chunk(chunk, kern, centers):
    return _on_rows(chunk.X, kern.inertia, kern.inertia_csr, chunk.w, centers, chunk.state[0],
                    chunk.n_threads)


def _inertia(rows, centers, labels, kern, n_threads):
    """Weighted inertia of the assignment ``labels``, summed chunk by chunk."""
    return sum(rows.map(_inertia_of_chunk, kern, centers, state=(labels,), n_threads=n_threads))


def _assign_chunk(chunk, kern, centers):
    _on_rows(chunk.X, kern.assign_labels, kern.assign_labels_csr, centers, chunk.state[0],
             np.empty(chunk.X.shape[0], np.float64), chunk.n_threads)


def _assign(rows, centers, labels, kern, n_threads):
    """Nearest center of every sample, into ``labels``."""
    for _ in rows.map(_assign_chunk, kern, centers, state=(labels,), n_threads=n_threads):
        pass


#: The bounded algorithms and their number of center groups for K clusters: one lower
#: bound per row (Hamerly), one per group of about 32 centers (Yinyang), one per center
#: (Elkan's lower bounds).  Yinyang's groups are larger than the usual K/10 because the
#: kernels compute an open group's distances with one GEMM per group: 256 clusters in 8
#: groups fit 200,000 x 64 float32 rows 1.2x faster than in 25 (benchmarks/RESULTS.md).
BOUNDED = {"hamerly": lambda k: 1, "yinyang": lambda k: max(1, k // 32), "elkan": lambda k: k}
#: A bound that bounds nothing (the kernels' FAR).
_FAR = 1e300


def _group_centers(centers, n_groups):
    """Yinyang's grouping: the centers clustered into ``n_groups`` by five Lloyd
    iterations on the centers themselves, seeded with evenly spaced centers (so the
    grouping is deterministic).  Returns (group_of, group_start, group_members)."""
    n_clusters = centers.shape[0]
    if n_groups <= 1:
        group_of = np.zeros(n_clusters, dtype=np.int64)
    elif n_groups >= n_clusters:
        group_of = np.arange(n_clusters, dtype=np.int64)
    else:
        c = centers.astype(np.float64)
        c_sq = np.einsum("ij,ij->i", c, c)
        seeds = c[np.linspace(0, n_clusters - 1, n_groups).round().astype(np.intp)]
        for _ in range(5):
            d2 = c_sq[:, None] - 2.0 * (c @ seeds.T) + np.einsum("ij,ij->i", seeds, seeds)
            group_of = np.argmin(d2, axis=1)
            for g in range(n_groups):
                if np.any(group_of == g):
                    seeds[g] = c[group_of == g].mean(axis=0)
        group_of = np.unique(group_of, return_inverse=True)[1].astype(np.int64)
    members = np.argsort(group_of, kind="stable").astype(np.int64)
    start = np.searchsorted(group_of[members], np.arange(group_of.max() + 2)).astype(np.int64)
    return group_of, start, members


def _rel_error(n_features):
    """The kernels' relative error bound of a float64 distance: (D + 8) 2^-53."""
    return (n_features + 8) * 2.0 ** -53


def _half_separation(centers):
    """A lower bound on half the distance from each center to its nearest other center
    (in float64 by the expansion, minus its rounding error bound)."""
    c = centers.astype(np.float64)
    c_sq = np.einsum("ij,ij->i", c, c)
    d2 = c_sq[:, None] + c_sq[None, :] - 2.0 * (c @ c.T)
    d2 -= 4.0 * _rel_error(c.shape[1]) * (c_sq[:, None] + c_sq[None, :])
    np.fill_diagonal(d2, np.inf)
    half = 0.5 * np.sqrt(np.maximum(d2.min(axis=1), 0.0)) * (1.0 - 1e-12)
    return np.minimum(half, _FAR / 4)  # one cluster: nothing to separate from


class _Bounds:
    """Per-row distance bounds of a bounded Lloyd run (see ``bounded_step``): the upper
    bound (8 bytes a row) and one lower bound per center group (8 bytes a row each).

    Rounding: center drifts are inflated by their own relative error and by
    ``2^-50 reach``, where ``reach`` bounds every bound ever stored (the largest bound a
    kernel made plus all drift since); the kernels' bound updates ``u + drift`` and
    ``l - drift`` round by at most ``2^-53 reach``, so the bounds stay rigorous.
    """

    def __init__(self, rows, centers, algorithm):
        n_groups = BOUNDED[algorithm](centers.shape[0])
        self.group_of, self.group_start, self.group_members = _group_centers(centers, n_groups)
        n_groups = self.group_start.size - 1
        self.upper = rows.new_state(0.0, np.float64)
        self.lower = rows.new_state(0.0, np.float64, width=n_groups)
        self.drift = np.zeros(centers.shape[0])
        self.half_sep = _half_separation(centers)
        self.full = True  # the bounds are not built yet
        self.reach = 0.0

    def geometry(self):
        """What ``bounded_step`` reads of the centers besides them: drifts, half
        separations and the grouping."""
        return (self.drift, self.half_sep, self.group_of, self.group_start, self.group_members)

    def moved(self, old, new):
        """The centers moved from ``old`` to ``new``: the drifts for the next step."""
        diff = new.astype(np.float64) - old.astype(np.float64)
        drift = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        self.reach += float(drift.max(initial=0.0))
        self.drift = drift * (1.0 + 4.0 * _rel_error(old.shape[1])) + 2.0 ** -50 * self.reach
        self.reach += float(self.drift.max(initial=0.0))
        self.half_sep = _half_separation(new)
        self.full = False


def _lloyd_chunk(chunk, kern, centers):
    """One Lloyd step on a chunk (labels in ``chunk.state[0]`` updated in place):
    (per-cluster sums, per-cluster weights, labels changed)."""
    sums = np.empty((centers.shape[0], centers.shape[1]), dtype=np.float64)
    weights = np.empty(centers.shape[0], dtype=np.float64)
    n_changed = _on_rows(chunk.X, kern.lloyd_step, kern.lloyd_step_csr, chunk.w, centers,
                         chunk.state[0], sums, weights, chunk.n_threads)
    return sums, weights, int(n_changed), 0.0


def _bounded_chunk(chunk, kern, centers, geometry, full):
    """One bounded step on a chunk (labels, upper and lower bounds in ``chunk.state``;
    ``geometry``: ``_Bounds.geometry()``): (sums, weights, labels changed, the largest
    bound made)."""
    sums = np.empty((centers.shape[0], centers.shape[1]), dtype=np.float64)
    weights = np.empty(centers.shape[0], dtype=np.float64)
    stats = np.zeros(3)
    labels, upper, lower = chunk.state
    kern.bounded_step(chunk.X, chunk.w, centers, *geometry, labels, upper, lower, full, sums,
                      weights, stats, chunk.n_threads)
    return sums, weights, int(stats[0]), float(stats[1])


class _LloydRun:
    """One Lloyd run (hard EM) from ``centers``: ``step()`` is one iteration, ``finish()``
    the final assignment and inertia.

    Each iteration is one pass over the chunks of ``rows``: ``lloyd_step`` assigns a
    chunk and gives its per-cluster sums, which are added in chunk order (the additive
    statistics), then the centers move to the means (``_average_centers``, with empty
    clusters relocated).  The labels are the only per-row state (4 bytes a row); the
    kernel overwrites them in place and returns how many changed.

    A bounded ``algorithm`` ("hamerly", "yinyang", "elkan") runs ``bounded_step``
    instead, which keeps distance bounds per row to skip most distance computations
    and gives the same labels, sums and centers bit for bit.  ``labels`` (from a
    checkpoint) continues a run; None starts with every row unassigned.
    """

    def __init__(self, rows, centers, labels, n_done=0, *, algorithm, tol, verbose, kern,
                 n_threads):
        self.rows, self.kern, self.n_threads, self.n_done = rows, kern, n_threads, n_done
        self.tol, self.verbose = tol, verbose
        self.centers = np.ascontiguousarray(centers, dtype=rows.dtype).copy()
        self.labels = (rows.new_state(-1, np.int32) if labels is None else
                       np.array(labels, dtype=np.int32))
        self.bounds = None if algorithm == "lloyd" else _Bounds(rows, self.centers, algorithm)
        self.strict = False  # the last step changed no label

    def step(self):
        """One iteration: (converged, squared center shift, labels changed)."""
        i = self.n_done  # (counted from 0 in the messages, as scikit-learn does)
        self.n_done += 1
        rows, kern, bounds, centers = self.rows, self.kern, self.bounds, self.centers
        n_clusters, n_features = centers.shape
        sums = np.zeros((n_clusters, n_features), dtype=np.float64)
        weight_sums = np.zeros(n_clusters, dtype=np.float64)
        n_changed = 0
        if bounds is None:
            steps = rows.map(_lloyd_chunk, kern, centers, state=(self.labels,),
                             n_threads=self.n_threads)
        else:
            steps = rows.map(_bounded_chunk, kern, centers, bounds.geometry(), bounds.full,
                             state=(self.labels, bounds.upper, bounds.lower),
                             n_threads=self.n_threads)
        for chunk_sums, chunk_weights, chunk_changed, reach in steps:
            n_changed += chunk_changed
            if bounds is not None:
                bounds.reach = max(bounds.reach, reach)
            sums += chunk_sums
            weight_sums += chunk_weights
        _relocate_empty_clusters(rows, centers, sums, weight_sums, self.labels)
        centers_new = _average_centers(sums, weight_sums, centers, rows.dtype)
        # squared total center shift, compared with tol as scikit-learn does
        shift = float(np.sum((centers_new.astype(np.float64) - centers) ** 2))
        if self.verbose:
            print(f"Iteration {i}, inertia "
                  f"{_inertia(rows, centers, self.labels, kern, self.n_threads)}.")
        if bounds is not None:
            bounds.moved(centers, centers_new)
        self.centers = centers_new
        self.strict = n_changed == 0
        if self.verbose and self.strict:
            print(f"Converged at iteration {i}: strict convergence.")
        elif self.verbose and shift <= self.tol:
            print(f"Converged at iteration {i}: center shift {shift} within "
                  f"tolerance {self.tol}.")
        return self.strict or shift <= self.tol, shift, n_changed

    def finish(self):
        """The run's inertia, after a final assignment if the centers moved since the last
        one (so that the labels match them)."""
        if not self.strict:
            _assign(self.rows, self.centers, self.labels, self.kern, self.n_threads)
        return _inertia(self.rows, self.centers, self.labels, self.kern, self.n_threads)


def _auto_algorithm(n_features, n_clusters, in_memory):
    """algorithm="auto", by the crossovers measured with benchmarks/algorithms.py
    (benchmarks/RESULTS.md): Hamerly's bounds pay for their upkeep from K = 64 on with
    D >= 4 (0.89-1.70x Lloyd's speed where clusters overlap, 1.3-3.3x where they are
    separated).  With fewer clusters, or D <= 2 where Lloyd computes the exact distances
    directly, and for data read in chunks (whose fit keeps no per-row state but the
    labels), Lloyd.  Elkan never won there on 2 cores; Yinyang, with its open groups in
    GEMMs, beats Hamerly by 3-11% only at D = 16, K = 256 and trails it by up to 25%
    elsewhere.  Both stay available by name."""
    if in_memory and n_clusters >= 64 and n_features >= 4:
        return "hamerly"
    return "lloyd"


def _label_pairs(chunk, n_clusters):
    """The distinct (label1, label2) pairs of a chunk, and each labeling's distinct labels."""
    a, b = chunk.state
    return np.unique(a.astype(np.int64) * n_clusters + b), np.unique(a), np.unique(b)


def _is_same_clustering(rows, labels1, labels2, n_clusters):
    """True if the two labelings are equal up to a permutation of the cluster ids."""
    pairs, one, two = (np.unique(np.concatenate(parts)) for parts in zip(
        *rows.map(_label_pairs, n_clusters, state=(labels1, labels2))))
    return pairs.size == one.size == two.size


def _cluster_sizes(chunk, n_clusters):
    return np.bincount(chunk.state[0], minlength=n_clusters)


def _weighted_draw(rows, random_state):
    """``random_state.choice(n, p=w / w.sum())`` without N-long arrays.  The legacy
    RandomState's algorithm is frozen (NEP 19): cdf = cumsum(p), cdf /= cdf[-1], then
    one uniform draw searched in cdf with side="right"; this replays it chunk by chunk."""
    total = float(rows.n_rows if rows.weights is None else rows.weights.sum())
    pieces = lambda: (rows.weight(a, b) / total for a, b in rows.spans())  # noqa: E731
    u = random_state.random_sample()
    return int(cumulative_search(pieces, [u], side="right", normalize=True)[0])


def _update_closest_chunk(chunk, kern, center):
    _on_rows(chunk.X, kern.kmeanspp_update_closest, kern.kmeanspp_update_closest_csr, center,
             chunk.state[0], chunk.n_threads)


def _potential_of_chunk(chunk):
    return float(chunk.state[0] @ chunk.w)


def _weighted_closest(chunk, unit_weights):
    """w_i D(x_i)^2 of a chunk: the piece of k-means++'s cumulative sum (unit weights:
    the distances as they are, not multiplied by ones)."""
    return chunk.state[0] if unit_weights else chunk.state[0] * chunk.w


def _trial_potentials_chunk(chunk, kern, candidates):
    out = np.empty(candidates.shape[0], dtype=np.float64)
    _on_rows(chunk.X, kern.kmeanspp_trial_potentials, kern.kmeanspp_trial_potentials_csr,
             chunk.w, candidates, chunk.state[0], out, chunk.n_threads)
    return out


def _kmeans_plusplus(rows, n_clusters, random_state, n_local_trials, kern, n_threads):
    """Greedy k-means++ (Arthur & Vassilvitskii 2007, with local trials as in scikit-learn).

    Each new center is the best of ``n_local_trials`` candidates drawn with probability
    proportional to ``w_i * D(x_i)^2``, "best" meaning the lowest resulting potential
    ``sum_i w_i min(D(x_i)^2, ||x_i - candidate||^2)``.  The random draws are made in
    the same order as scikit-learn's, so the same ``random_state`` picks the same
    centers up to floating-point ties.  Potentials and cumulative sums are computed
    chunk by chunk: the only per-row state is the distances D(x_i)^2 (float64).
    """
    n_samples, n_features = rows.shape
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    centers = np.empty((n_clusters, n_features), dtype=rows.dtype)
    indices = np.full(n_clusters, -1, dtype=np.intp)
    first = _weighted_draw(rows, random_state)
    centers[0] = rows.take([first])[0]
    indices[0] = first
    closest = rows.new_state(np.inf, np.float64)

    def update_closest(center):
        for _ in rows.map(_update_closest_chunk, kern, center, state=(closest,),
                          n_threads=n_threads):
            pass

    update_closest(centers[0])
    # sum_i w_i closest_i, chunk by chunk (no N-long weight vector)
    current_pot = sum(rows.map(_potential_of_chunk, state=(closest,)))
    potentials = np.empty(n_local_trials, dtype=np.float64)
    for c in range(1, n_clusters):
        rand_vals = random_state.uniform(size=n_local_trials) * current_pot
        candidate_ids = rows.cumulative_search(_weighted_closest, rand_vals,
                                               rows.weights is None, state=(closest,))
        np.clip(candidate_ids, None, n_samples - 1, out=candidate_ids)
        candidates = rows.take(candidate_ids)
        potentials[:] = 0.0
        for chunk_potentials in rows.map(_trial_potentials_chunk, kern, candidates,
                                         state=(closest,), n_threads=n_threads):
            potentials += chunk_potentials
        best = int(np.argmin(potentials))
        current_pot = float(potentials[best])
        update_closest(candidates[best])
        centers[c] = candidates[best]
        indices[c] = candidate_ids[best]
    return centers, indices


#: k-means|| (Bahmani et al. 2012): rounds of oversampling, and the expected number of
#: rows drawn per round in multiples of n_clusters (the paper's r = 5 and l = 2k, with
#: which it matched k-means++'s quality).
_PARALLEL_ROUNDS = 5
_OVERSAMPLING = 2.0


def _row_uniforms(seed, start, stop):
    """Uniform numbers in [0, 1) for rows [start, stop) of the draw ``seed``: splitmix64
    (Steele et al. 2014) of the row's global index, so that every row gets the same
    number however the rows are cut into chunks or spread over workers."""
    z = np.arange(start, stop, dtype=np.uint64) + np.uint64(1)
    z *= np.uint64(0x9E3779B97F4A7C15)
    z += np.uint64(seed)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53  # the top 53 bits


def _parallel_update_chunk(chunk, kern, new_centers):
    """D(x)^2 of a chunk's rows updated with ``new_centers`` (in ``chunk.state[0]``);
    returns the chunk's share of the potential, sum_i w_i D(x_i)^2."""
    closest = chunk.state[0]
    n = chunk.stop - chunk.start
    dist = np.empty(n)
    _on_rows(chunk.X, kern.assign_labels, kern.assign_labels_csr, new_centers,
             np.empty(n, np.int32), dist, chunk.n_threads)
    np.minimum(closest, np.maximum(dist, 0.0), out=closest)
    return float(closest @ chunk.w)


def _parallel_draw_chunk(chunk, seed, scale):
    """The rows of a chunk that a k-means|| round draws, each independently with
    probability min(1, scale w_i D(x_i)^2) (scale = l / potential)."""
    p = scale * (chunk.w * chunk.state[0])
    return _dense_rows(chunk.X, _row_uniforms(seed, chunk.start, chunk.stop) < p)


def _candidate_weights_chunk(chunk, kern, candidates):
    """The weight of a chunk's rows nearest to each candidate."""
    n = chunk.stop - chunk.start
    labels = np.empty(n, np.int32)
    _on_rows(chunk.X, kern.assign_labels, kern.assign_labels_csr, candidates, labels,
             np.empty(n), chunk.n_threads)
    return np.bincount(labels, weights=chunk.w, minlength=candidates.shape[0])


def _kmeans_parallel(rows, n_clusters, random_state, kern, n_threads, *, tol, max_iter):
    """k-means|| seeding (Bahmani, Moseley, Vattani, Kumar & Vassilvitskii 2012).

    A first center drawn with probability proportional to the weight; then
    ``_PARALLEL_ROUNDS`` rounds, each one pass drawing every row independently with
    probability ``min(1, l w_i D(x_i)^2 / phi)`` (``l = _OVERSAMPLING * n_clusters``,
    ``phi = sum_i w_i D(x_i)^2``) and one pass adding the drawn rows to the candidates
    (updating D and phi).  Each candidate is weighted by the weight of the rows nearest
    to it, and the weighted candidates are clustered into ``n_clusters`` centers:
    weighted k-means++, then weighted Lloyd iterations on them (the re-clustering step
    of the paper, which dask-ml leaves unweighted), at most ``max_iter`` of them with
    the fit's ``tol``.  2 r + 3 passes over the data whatever ``n_clusters`` (the first
    draw takes two), where k-means++ makes three per center.  A row's draw depends on its
    global index only, so the result does not depend on the chunks, the Dask blocks or
    the thread count.  Returns the centers.
    """
    closest = rows.new_state(np.inf, np.float64)
    new = rows.take([_weighted_draw(rows, random_state)])
    drawn = [new]
    ell = _OVERSAMPLING * n_clusters
    for _ in range(_PARALLEL_ROUNDS):
        potential = sum(rows.map(_parallel_update_chunk, kern, new, state=(closest,),
                                 n_threads=n_threads))
        if not potential > 0:
            break  # every row is on a candidate
        seed = int(random_state.randint(0, 2**63 - 1, dtype=np.int64))
        new = np.concatenate(list(rows.map(_parallel_draw_chunk, seed, ell / potential,
                                           state=(closest,))))
        drawn.append(new)
        if new.shape[0] == 0:
            break
    del closest
    candidates = np.ascontiguousarray(np.concatenate(drawn))
    weights = sum(rows.map(_candidate_weights_chunk, kern, candidates, n_threads=n_threads))
    # the weighted re-clustering, on the candidates alone
    weighted = rows_from(candidates, lambda a, name, cp: a, owner="k-means||",
                         sample_weight=weights)
    seeds, _ = _kmeans_plusplus(weighted, n_clusters, random_state, None, kern, n_threads)
    run = _LloydRun(weighted, seeds, None, algorithm="lloyd", tol=tol, verbose=0, kern=kern,
                    n_threads=n_threads)
    for _ in range(max_iter):
        if run.step()[0]:
            break
    return run.centers


def kmeans_plusplus(X: Data, n_clusters: int, *, sample_weight: Weights = None,
                    x_squared_norms: Optional[ArrayLike] = None, random_state: Any = None,
                    n_local_trials: Optional[int] = None, backend: Optional[str] = None,
                    n_threads: Optional[int] = None) -> tuple:
    """Choose initial K-means centers with greedy k-means++ (drop-in for scikit-learn's).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_clusters : int
        Number of centers to choose, 1 <= n_clusters <= n_samples.
    sample_weight : array-like of shape (n_samples,), default=None
        Sampling is proportional to ``sample_weight * D(x)^2``.
    x_squared_norms : ignored
        Accepted for compatibility with scikit-learn; fastem computes distances directly.
    random_state : None, int or numpy RandomState
    n_local_trials : int, default=None
        Candidates tried per center; ``None`` means ``2 + int(log(n_clusters))``.
    backend : {"auto", "numba", "cython", "numpy"}, default=None (the configured default)
    n_threads : int, default=None (every CPU this process may use)

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features), X's dtype (float32 or float64)
    indices : ndarray of shape (n_clusters,)
        Row of X each center was taken from.
    """
    from ._dispatch import get_kernels, resolve_backend
    from ._threads import resolve_n_threads

    validate_params(
        dict(n_clusters=n_clusters, random_state=random_state, n_local_trials=n_local_trials,
             backend=backend, n_threads=n_threads),
        dict(n_clusters=[Interval(numbers.Integral, 1, None)], random_state=["random_state"],
             n_local_trials=[None, Interval(numbers.Integral, 1, None)],
             backend=[None, Options(*BACKENDS)], n_threads=[None, Interval(numbers.Integral, 1, None)]),
        "kmeans_plusplus",
    )
    rows = rows_from(X, lambda a, name, cp: check_array_or_csr(a, name=name,
                                                                owner="kmeans_plusplus"),
                     owner="kmeans_plusplus", sample_weight=sample_weight)
    if rows.n_rows < n_clusters:
        raise ValueError(f"n_samples={rows.n_rows} should be >= n_clusters={n_clusters}.")
    rows.check_magnitude()
    backend = resolve_backend(backend)
    kern = get_kernels(backend, "kmeans")
    with limit_blas_threads():
        return _kmeans_plusplus(rows, n_clusters, check_random_state(random_state),
                                n_local_trials, kern, resolve_n_threads(n_threads))


class _KMeansBase(EMEstimator):
    """What KMeans and MiniBatchKMeans share: the centers' checks, predict, transform,
    score, the output feature names and scikit-learn's tags."""

    _estimator_type = "clusterer"
    _per_row_attributes = ("labels_",)
    _accepts_sparse = True  # CSR (other formats converted), never densified

    def _check_input(self, X, *, owner, copy, name="X"):
        return check_array_or_csr(X, name=name, owner=owner, copy=copy)

    def _check_centers(self, centers, rows, what):
        centers = check_array(centers, name=what, owner=type(self).__name__, dtype=rows.dtype,
                              copy=True)
        if centers.shape != (self.n_clusters, rows.n_features):
            raise ValueError(
                f"The shape of {what} {centers.shape} does not match (n_clusters, n_features) = "
                f"({self.n_clusters}, {rows.n_features}).")
        return centers

    def _predict_input(self, X):
        """Validated X and the centers in X's dtype, for predict / score / transform."""
        self._check_is_fitted()
        X = self._validate_data(X, reset=False)
        centers = np.ascontiguousarray(self.cluster_centers_, dtype=X.dtype)
        check_magnitude(X, None, also=centers, per_row=True)
        return X, centers

    def _labels_inertia(self, X, centers, sample_weight):
        backend, n_threads = self._resolve_runtime()
        kern = self._kernels(backend, "kmeans")
        labels = np.empty(X.shape[0], dtype=np.int32)
        with limit_blas_threads():
            _on_rows(X, kern.assign_labels, kern.assign_labels_csr, centers, labels,
                     np.empty(X.shape[0], np.float64), n_threads)
            inertia = (_on_rows(X, kern.inertia, kern.inertia_csr, sample_weight, centers,
                                labels, n_threads) if sample_weight is not None else None)
        return labels, inertia

    @lazy_on_dask(np.int32)
    def predict(self, X: Data) -> Labels:
        """Index of the closest cluster center for each sample (int32)."""
        X, centers = self._predict_input(X)
        return self._labels_inertia(X, centers, None)[0]

    def score(self, X: Data, y: None = None, sample_weight: Weights = None) -> float:
        """Opposite of the weighted inertia of X under the fitted centers (a Dask array:
        summed over its blocks, which the workers score)."""
        from .dask import is_dask_array, sum_over_blocks

        if is_dask_array(X):
            return sum_over_blocks(self.score, X, sample_weight)
        X, centers = self._predict_input(X)
        sample_weight = check_sample_weight(sample_weight, X.shape[0],
                                            owner=f"{type(self).__name__}.score")
        check_magnitude(X, sample_weight, also=centers)  # the inertia sums over the rows
        return -self._labels_inertia(X, centers, sample_weight)[1]

    @lazy_on_dask("X", lambda est: est.n_clusters)
    def transform(self, X: Data) -> Any:
        """Euclidean distance of every sample to every center, shape (n_samples, n_clusters)
        (a DataFrame after ``set_output(transform="pandas")`` or "polars")."""
        original = X
        X, centers = self._predict_input(X)
        return self._wrap_output(_euclidean_distances(X, centers), original)

    def get_feature_names_out(self, input_features: Optional[ArrayLike] = None) -> NDArray:
        """Output feature names of ``transform``, as scikit-learn's: the class name in lower
        case and the cluster number (``kmeans0``, ``kmeans1``, ...)."""
        self._check_is_fitted()
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(self._n_features_out)], dtype=object)

    def __sklearn_tags__(self):
        from sklearn.utils import TransformerTags

        tags = super().__sklearn_tags__()
        tags.transformer_tags = TransformerTags(preserves_dtype=["float64", "float32"])
        return tags

    def fit_transform(self, X: Data, y: None = None, sample_weight: Weights = None) -> Any:
        """Fit, then return the distances of X to the fitted centers."""
        return self.fit(X, sample_weight=sample_weight).transform(X)


class KMeans(_KMeansBase):
    """K-means clustering (Lloyd's algorithm), a drop-in for ``sklearn.cluster.KMeans``.

    Labels are exact: each sample goes to the center at the smallest float64 distance
    ``sum_j (x_j - c_j)^2`` (ties to the lowest index).  The fast GEMM distances decide
    only where their rounding error bound cannot change the answer, so every backend,
    thread count and ``algorithm`` gives the same labels.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters.
    init : {"k-means++", "k-means||", "random"}, callable or array-like of shape \
            (n_clusters, n_features)
        "k-means++": greedy k-means++ seeding (one pass over the data per center);
        "k-means||": scalable k-means++ (Bahmani et al. 2012), 13 passes whatever
        ``n_clusters``: five rounds each drawing about ``2 n_clusters`` rows in
        proportion to their weighted squared distance to the candidates so far, then the
        candidates, weighted by the rows nearest to them, clustered by weighted k-means++
        and Lloyd; for large K, above all on a Dask cluster, where each pass is a round
        trip; "random": ``n_clusters`` rows drawn with probability proportional to
        ``sample_weight``; a callable ``init(X, n_clusters, random_state)`` returning
        centers; or the initial centers themselves.
    n_init : "auto" or int, default="auto"
        Runs from different seeds; the one with the lowest inertia is kept.  "auto" is 1
        for "k-means++", "k-means||" and an array, 10 for "random" and a callable.
    max_iter : int, default=300
        Maximum Lloyd iterations per run.
    tol : float, default=1e-4
        Stop when the squared total center shift is at most ``tol`` times the mean
        per-feature variance of X (or when no label changes).
    verbose : int, default=0
        Print the inertia at every iteration.
    random_state : None, int or numpy RandomState
        Seeds the initialization; the same seed gives the same result.
    copy_x : bool, default=True
        With False, X (if already C-contiguous float32/float64) is centered in place
        during the fit and restored afterwards, saving a copy.
    algorithm : {"auto", "lloyd", "hamerly", "yinyang", "elkan"}, default="auto"
        How each iteration finds the nearest centers.  Every choice gives the same
        labels and centers at every iteration, bit for bit: they differ only in speed
        and memory.  "lloyd" computes every distance (a GEMM per block of rows, or the
        exact distances directly when there are few features).  The
        others keep, per row, an upper bound on the distance to its center and lower
        bounds on the distances to the others, move them by how far the centers moved,
        and skip the rows the bounds settle: "hamerly" keeps one lower bound (16 bytes a
        row in all), "yinyang" one per group of about 32 centers, "elkan" one per
        center (8 (K + 1) bytes a row).  "auto" picks by the crossovers measured in
        benchmarks/RESULTS.md: "hamerly" from K = 64 with D >= 4 for data in memory,
        else "lloyd".  Bounds win when clusters are well separated or K is large; on
        heavily overlapping clusters Lloyd is as fast.
    backend : {"auto", "numba", "cython", "numpy"}, default=None
        Kernel implementation; None uses ``fastem.config_context`` / ``FASTEM_BACKEND``
        ("auto" unless set): cython, else numba, else numpy (see the README's
        "Backends").
    n_threads : int, default=None
        Threads for the kernels; None means every CPU this process may use.  Results
        are bit-identical for any value.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features), X's float dtype
    labels_ : ndarray of shape (n_samples,), int32
    inertia_ : float
        Weighted sum of squared distances of samples to their closest center.
    n_iter_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of str (only when X had string column names)
    backend_ : str
        Backend that ran the fit.
    """

    _fitted_attributes = ("cluster_centers_", "labels_", "inertia_", "n_iter_", "backend_",
                          "_n_features_out")

    def _check_fitted_state(self):
        super()._check_fitted_state()
        k = self.n_clusters
        self._fitted_array("cluster_centers_", (k, self.n_features_in_))
        if hasattr(self, "labels_"):  # saved with include_labels=False: none
            labels = self._fitted_array("labels_", (None,), kind="i")
            if labels.size and (labels.min() < 0 or labels.max() >= k):
                raise ValueError(f"labels_ must lie in [0, {k})")
        if not (isinstance(self.inertia_, float) and np.isfinite(self.inertia_)
                and self.inertia_ >= 0):
            raise ValueError("inertia_ must be a finite float >= 0")
        if self._n_features_out != k:
            raise ValueError("_n_features_out must equal n_clusters")

    _parameter_constraints = {
        "n_clusters": [Interval(numbers.Integral, 1, None)],
        "init": [Options("k-means++", "k-means||", "random"), "callable", "array-like"],
        "n_init": [Options("auto"), Interval(numbers.Integral, 1, None)],
        "max_iter": [Interval(numbers.Integral, 1, None)],
        "tol": [Interval(numbers.Real, 0, None)],
        "verbose": [Interval(numbers.Integral, 0, None), "boolean"],
        "random_state": ["random_state"],
        "copy_x": ["boolean"],
        "algorithm": [Options("auto", "lloyd", "elkan", "hamerly", "yinyang")],
        "backend": [None, Options(*BACKENDS)],
        "n_threads": [None, Interval(numbers.Integral, 1, None)],
    }

    def __init__(self, n_clusters: int = 8, *,
                 init: Union[str, ArrayLike, Callable[..., Any]] = "k-means++",
                 n_init: Union[int, str] = "auto", max_iter: int = 300, tol: float = 1e-4,
                 verbose: int = 0, random_state: Any = None, copy_x: bool = True,
                 algorithm: str = "auto", backend: Optional[str] = None,
                 n_threads: Optional[int] = None) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state
        self.copy_x = copy_x
        self.algorithm = algorithm
        self.backend = backend
        self.n_threads = n_threads

    # ------------------------------------------------------------------ helpers
    def _resolve_algorithm(self, rows):
        """The algorithm that runs: every choice gives the same result, so "auto" only
        picks the fastest by the crossovers measured in benchmarks/RESULTS.md."""
        if rows.sparse:
            if self.algorithm not in ("auto", "lloyd"):
                raise ValueError(
                    f"algorithm={self.algorithm!r} is not implemented for sparse X; use "
                    "'lloyd' or 'auto' (every algorithm gives the same labels and centers, "
                    "so only the speed differs).")
            return "lloyd"
        if self.algorithm != "auto":
            return self.algorithm
        return _auto_algorithm(rows.n_features, self.n_clusters, rows.in_memory)

    def _resolve_n_init(self):
        init_is_array = not isinstance(self.init, str) and not callable(self.init)
        if self.n_init == "auto":
            n_init = 10 if (self.init == "random" if isinstance(self.init, str) else
                            callable(self.init)) else 1
        else:
            n_init = self.n_init
        if init_is_array and n_init != 1:
            warnings.warn(
                "Explicit initial center position passed: performing only one init in "
                f"{type(self).__name__} instead of n_init={n_init}.", RuntimeWarning, stacklevel=3)
            n_init = 1
        return n_init

    def _init_centroids(self, rows, init, random_state, kern, n_threads):
        if isinstance(init, str) and init == "k-means++":
            centers, _ = _kmeans_plusplus(rows, self.n_clusters, random_state, None, kern,
                                          n_threads)
        elif isinstance(init, str) and init == "k-means||":
            centers = _kmeans_parallel(rows, self.n_clusters, random_state, kern, n_threads,
                                       tol=self._fit_state["tol"], max_iter=self.max_iter)
        elif isinstance(init, str) and init == "random":
            w = rows.weight_vector()
            seeds = random_state.choice(rows.n_rows, size=self.n_clusters, replace=False,
                                        p=w / w.sum())
            centers = rows.take(seeds)
        elif callable(init):
            if rows.array is None:
                raise TypeError("a callable init needs the data as an array; with Chunks or a "
                                "Dask array, pass the initial centers or use 'k-means++', "
                                "'k-means||' or 'random'.")
            X = rows.array if rows.shift is None else rows.array - rows.shift
            centers = self._check_centers(init(X, self.n_clusters, random_state=random_state),
                                          rows, "the centers returned by the init callable")
        else:
            centers = init
        return np.ascontiguousarray(centers, dtype=rows.dtype)

    # ------------------------------------------------------------------ API
    def fit(self, X: Data, y: None = None, sample_weight: Weights = None, *,
            callback: Callback = None, checkpoint: Optional[str] = None, checkpoint_every: int = 10,
            checkpoint_seconds: Optional[float] = None) -> Self:
        """Compute K-means clustering.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), memory map or ``fastem.Chunks``
            float32 stays float32; other numeric types become float64.  A memory map
            (``np.load(path, mmap_mode="r")``) or ``Chunks`` (data in pieces) is read
            one chunk at a time and never copied: the fit holds the chunk being read,
            ``labels_`` (4 bytes a row), the bounds of a bounded ``algorithm`` (none for
            "lloyd", which "auto" picks for such data) and, while seeding k-means++, two
            or three float64 vectors per row; the result equals the in-memory fit bit
            for bit.
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; an integer weight acts as that many repeated rows.
            Not used by a callable or array ``init``.
        callback : callable, default=None
            Called after every Lloyd iteration with a dict: ``init``, ``iteration``,
            ``center_shift`` (squared, as compared with tol), ``n_changed`` (labels that
            changed), ``converged``, ``elapsed`` (seconds).  A true return value stops
            the fit there (the best run so far is kept).
        checkpoint, checkpoint_every, checkpoint_seconds
            As in the mixtures' ``fit``: the state of the fit is written to
            ``checkpoint`` as it goes, a restarted fit resumes from it and ends with the
            same model as an uninterrupted one, and the file is removed at the end.

        Returns
        -------
        self
        """
        self._validate_params()
        rows = self._validate_rows(X, sample_weight, reset=True, copy=self.copy_x)
        if checkpoint is not None and rows.distributed:
            raise ValueError("checkpoint is not supported for a KMeans fit on a Dask array "
                             "(its labels stay on the workers); fit without it.")
        return self._fit_rows(rows, callback, (checkpoint, checkpoint_every, checkpoint_seconds))

    def _fit_rows(self, rows, callback=None, checkpointing=(None, 10, None)):
        """``fit`` on validated rows (an in-memory array is centered in place)."""
        check_enough_samples(rows.n_rows, rows.n_rows if rows.weights is None else
                             int(np.count_nonzero(rows.weights)), self.n_clusters)
        rows.check_magnitude()
        n_init = self._resolve_n_init()
        init = self.init
        if not isinstance(init, str) and not callable(init):
            init = self._check_centers(init, rows, "the initial centers (init)")
            rows.check_magnitude(name="init", also=init)
        backend, n_threads = self._resolve_runtime()
        from ._checkpoint import Checkpointer

        ckpt = Checkpointer(self, rows, *checkpointing)
        # Center the data: the expansion ||x||^2 - 2 x.c + ||c||^2 loses precision far
        # from the origin.  An array in memory is centered in place (with copy_x=False
        # this is the caller's array: restore it); streamed chunks as they are read.  A
        # sparse matrix is not (it would no longer be sparse), as in scikit-learn.
        if rows.sparse:
            X_mean = np.zeros(rows.n_features, dtype=rows.dtype)
        else:
            X_mean = _mean(rows).astype(rows.dtype)
            if rows.in_memory:
                if not rows.array.flags.writeable:
                    rows.array = rows.array.copy()
                rows.array -= X_mean
            else:
                rows.shift = X_mean
        if not isinstance(init, str) and not callable(init):
            init = init - X_mean
        # what the engine's hooks below read
        self._fit_state = dict(init=init, kern=self._kernels(backend, "kmeans"),
                               n_threads=n_threads, tol=_tolerance(rows, self.tol),
                               algorithm=self._resolve_algorithm(rows))
        try:
            with limit_blas_threads():
                best, _ = self._run_em(rows, n_init=n_init, initialize=True,
                                       random_state=check_random_state(self.random_state),
                                       callback=callback, ckpt=ckpt)
        finally:
            if rows.in_memory and not rows.sparse and not self.copy_x:
                rows.array += X_mean
            rows.shift = None
            for name in ("_fit_state", "_start", "_run"):  # nothing of the data stays
                self.__dict__.pop(name, None)
        centers, labels = best.params
        sizes = sum(rows.map(_cluster_sizes, self.n_clusters, state=(labels,)))
        distinct = int(np.count_nonzero(sizes))
        if distinct < self.n_clusters:
            warnings.warn(
                f"Number of distinct clusters ({distinct}) found smaller than n_clusters "
                f"({self.n_clusters}). Possibly due to duplicate points in X.",
                ConvergenceWarning, stacklevel=2)
        self.cluster_centers_ = centers + X_mean
        self.labels_ = rows.gather(labels)
        self.inertia_ = float(-best.score)
        self.n_iter_ = int(best.n_iter)
        self.backend_ = backend
        self._n_features_out = self.n_clusters
        ckpt.finish()
        return self

    # ------------------------------------------------------------------ the engine's hooks
    # Parameters: (centers, labels), X centered; the labels are per-row state of the rows.
    def _em_initialize(self, rows, random_state):
        s = self._fit_state
        self._start = (self._init_centroids(rows, s["init"], random_state, s["kern"],
                                            s["n_threads"]), None)
        if self.verbose:
            print("Initialization complete")

    def _em_begin(self, rows, init, n_done):
        s = self._fit_state
        self._run = _LloydRun(rows, *self._start, n_done, algorithm=s["algorithm"],
                              tol=s["tol"], verbose=self.verbose, kern=s["kern"],
                              n_threads=s["n_threads"])

    def _em_iterate(self, rows):
        converged, shift, n_changed = self._run.step()
        return Iteration(None, converged, report=dict(center_shift=shift, n_changed=n_changed))

    def _em_end(self, rows, bound, converged):
        return -self._run.finish()  # the score of a run: its inertia, negated

    def _em_improves(self, rows, run, best):
        # as scikit-learn: a lower inertia, unless it is the same clustering
        return run.score > best.score and not _is_same_clustering(
            rows, run.params[1], best.params[1], self.n_clusters)

    def _get_parameters(self):
        return self._run.centers, self._run.labels

    def _set_parameters(self, params):
        self._start = params  # a run begins from them (_em_begin)

    def fit_predict(self, X: Data, y: None = None, sample_weight: Weights = None) -> Labels:
        """Fit, then return ``labels_`` (equal to ``fit(X).predict(X)``)."""
        return self.fit(X, sample_weight=sample_weight).labels_


def kmeans_labels(rows, n_clusters, random_state, backend, n_threads):
    """The labels of one K-means fit (k-means++ seeding) of validated ``rows``, as per-row
    state of ``rows``: how the mixtures' init_params="kmeans" starts."""
    km = KMeans(n_clusters=n_clusters, n_init=1, random_state=random_state, backend=backend,
                n_threads=n_threads)
    return rows.state_from(km._fit_rows(rows.copy()).labels_)


def _euclidean_distances(X, centers):
    """Distances in float64 by the expansion (clipped at 0), returned in X's dtype (X an
    array or a CSR matrix, never densified)."""
    out = np.empty((X.shape[0], centers.shape[0]), dtype=X.dtype)
    c64 = centers.astype(np.float64)
    c_sq = np.einsum("ij,ij->i", c64, c64)
    for start in range(0, X.shape[0], _RELOCATION_CHUNK):
        xb = X[start:start + _RELOCATION_CHUNK]
        if isinstance(xb, np.ndarray):
            xb = xb.astype(np.float64)
            x_sq = np.einsum("ij,ij->i", xb, xb)
        else:
            row, v = _csr_row_parts(xb)
            x_sq = np.bincount(row, v * v, xb.shape[0])
            xb = xb.astype(np.float64)
        d2 = x_sq[:, None] - 2.0 * np.asarray(xb @ c64.T) + c_sq[None, :]
        np.sqrt(np.maximum(d2, 0.0), out=d2)
        out[start:start + _RELOCATION_CHUNK] = d2
    return out
