"""K-means kernels, numpy reference implementation (the specification).

Shapes: ``X`` is (n_samples, n_features), float32 or float64, C-contiguous;
``centers`` / ``candidates`` are (n_clusters, n_features) of X's dtype;
``sample_weight`` is (n_samples,) float64 and non-negative; ``labels`` is int32.
Sums, potentials and inertia are float64.  Output buffers are overwritten, never
accumulated into.  ``n_threads`` is accepted for signature parity and ignored.

The assignment is *defined* here: sample i goes to the center k with the smallest
``exact`` squared distance, ``sum_j (x_j - c_kj)**2`` computed in float64 in feature
order with every operation rounded (no fused multiply-add), ties to the lowest index.
The fast backends find the same labels bit for bit: they take the nearest center from
a fast computation only when its margin over the runner-up exceeds that computation's
rounding error bound, and fall back to this exact distance otherwise.  Every K-means
algorithm (lloyd and the bounded ones) therefore gives the same labels.
"""

import numpy as np


def _sq_distances_to(X, point):
    """float64 squared Euclidean distance of every row of X to one point."""
    diff = X.astype(np.float64) - point.astype(np.float64)
    return np.einsum("ij,ij->i", diff, diff)


def _sq_distances(X, centers):
    """(n_samples, n_clusters) exact squared distances: a float64 running sum over the
    features in order, one rounded square and one rounded add per feature."""
    out = np.zeros((X.shape[0], centers.shape[0]), dtype=np.float64)
    c64 = centers.astype(np.float64)
    for j in range(X.shape[1]):
        diff = X[:, j, None].astype(np.float64) - c64[None, :, j]
        out += diff * diff
    return out


def assign_labels(X, centers, labels, min_sq_dist, n_threads):
    """Nearest center of every sample.

    Parameters
    ----------
    X : (n_samples, n_features) float array, read.
    centers : (n_clusters, n_features) array of X's dtype, read.
    labels : (n_samples,) int32, written: index of the nearest center (lowest on ties).
    min_sq_dist : (n_samples,) float64, written: squared distance to that center.
    n_threads : int, ignored.
    """
    d2 = _sq_distances(X, centers)
    labels[:] = np.argmin(d2, axis=1)  # argmin returns the first minimum: lowest index
    min_sq_dist[:] = d2[np.arange(X.shape[0]), labels]


def lloyd_step(X, sample_weight, centers, labels, sums, weight_sums, n_threads):
    """One Lloyd iteration's data pass: assignment fused with the weighted center sums.

    Parameters
    ----------
    X, centers : read (see module docstring).
    sample_weight : (n_samples,) float64, read.
    labels : (n_samples,) int32, read and written: the previous labels on entry (any
        value, e.g. -1, where there are none), the nearest center of each sample under
        ``centers`` on return.
    sums : (n_clusters, n_features) float64, written: ``sum_{i: label_i = k} w_i x_i``.
    weight_sums : (n_clusters,) float64, written: ``sum_{i: label_i = k} w_i``.
    n_threads : int, ignored.

    Returns
    -------
    n_changed : int, the number of samples whose label differs from the one on entry.
    """
    old = labels.copy()
    min_sq_dist = np.empty(X.shape[0], dtype=np.float64)
    assign_labels(X, centers, labels, min_sq_dist, n_threads)
    X64 = X.astype(np.float64)
    for k in range(centers.shape[0]):
        members = labels == k
        w = sample_weight[members]
        weight_sums[k] = w.sum()
        sums[k] = (w[:, None] * X64[members]).sum(axis=0)
    return int(np.count_nonzero(labels != old))


def inertia(X, sample_weight, centers, labels, n_threads):
    """Weighted sum of squared distances of samples to their assigned centers.

    Returns ``sum_i w_i * ||x_i - centers[labels_i]||^2`` as a Python float.
    """
    d2 = np.einsum(
        "ij,ij->i",
        X.astype(np.float64) - centers[labels].astype(np.float64),
        X.astype(np.float64) - centers[labels].astype(np.float64),
    )
    return float(np.dot(sample_weight, d2))


def kmeanspp_trial_potentials(X, sample_weight, candidates, closest_sq_dist, potentials, n_threads):
    """Potential of each k-means++ candidate center.

    ``potentials[t] = sum_i w_i * min(closest_sq_dist_i, ||x_i - candidates_t||^2)``: the
    weighted inertia the current centers plus candidate t would have.

    Parameters
    ----------
    candidates : (n_trials, n_features) array of X's dtype, read.
    closest_sq_dist : (n_samples,) float64, read: squared distance to the nearest chosen center.
    potentials : (n_trials,) float64, written.
    """
    for t in range(candidates.shape[0]):
        d2 = np.minimum(closest_sq_dist, _sq_distances_to(X, candidates[t]))
        potentials[t] = np.dot(sample_weight, d2)


def kmeanspp_update_closest(X, center, closest_sq_dist, n_threads):
    """Add a chosen center: ``closest_sq_dist_i = min(closest_sq_dist_i, ||x_i - center||^2)``.

    Parameters
    ----------
    center : (n_features,) array of X's dtype, read.
    closest_sq_dist : (n_samples,) float64, read and written in place.
    """
    np.minimum(closest_sq_dist, _sq_distances_to(X, center), out=closest_sq_dist)


def bounded_step(X, sample_weight, centers, drift, half_sep, group_of, group_start,
                 group_members, labels, upper, lower, full, sums, weight_sums, stats,
                 n_threads):
    """``lloyd_step`` that also keeps distance bounds (for Hamerly, Yinyang and Elkan).

    The centers are split into groups: ``group_members[group_start[g]:group_start[g+1]]``
    are group g's centers and ``group_of[k]`` is center k's group.  Per row,
    ``upper[i]`` bounds the exact Euclidean distance to center ``labels[i]`` from above
    and ``lower[i, g]`` the distance to every other center of group g from below.  On
    entry (unless ``full``) the bounds hold for the centers of the previous call, which
    have since moved by at most ``drift[k]`` (float64, K); ``half_sep[k]`` is at most
    half the distance from center k to its nearest other center.  With ``full`` the
    bounds and the labels on entry are not trusted (only compared with for ``stats``).

    Written: ``labels`` (exactly ``lloyd_step``'s), ``sums`` and ``weight_sums`` (as
    ``lloyd_step``), ``upper`` and ``lower`` (valid bounds for ``centers``: a fast
    backend keeps them as loose as its pruning allows), ``stats`` (float64, 3): labels
    changed, the largest upper bound written, point-center distances computed.

    This reference computes every distance and builds the bounds from scratch.
    """
    n_changed = lloyd_step(X, sample_weight, centers, labels, sums, weight_sums, n_threads)
    d2 = _sq_distances(X, centers)
    rel = (X.shape[1] + 8) * 2.0 ** -53  # bound on the exact distance's relative error
    rows = np.arange(X.shape[0])
    upper[:] = np.sqrt(d2[rows, labels] * (1.0 + rel))
    d2[rows, labels] = np.inf
    for g in range(group_start.shape[0] - 1):
        members = group_members[group_start[g]:group_start[g + 1]]
        low = d2[:, members].min(axis=1)
        lower[:, g] = np.where(np.isinf(low), 1e300, np.sqrt(low * (1.0 - rel)))
    stats[0] = n_changed
    stats[1] = upper.max(initial=0.0)
    stats[2] = d2.size


# ---------------------------------------------------------------- CSR rows
# The CSR kernels take a matrix's ``data, indices, indptr`` (canonical: sorted indices,
# no duplicates) in place of X and are *defined* as the dense kernels of its dense form:
# the same labels and sums bit for bit in every backend (inertia and the k-means++
# distances: within rounding, the fast backends computing them from the stored entries).
# Here the rows are densified to run the dense reference on them.

def _dense(data, indices, indptr, n_features):
    n = indptr.shape[0] - 1
    out = np.zeros((n, n_features), dtype=data.dtype)
    rows = np.repeat(np.arange(n), np.diff(indptr))
    out[rows, indices[indptr[0]:indptr[n]]] = data[indptr[0]:indptr[n]]
    return out


def assign_labels_csr(data, indices, indptr, centers, labels, min_sq_dist, n_threads):
    assign_labels(_dense(data, indices, indptr, centers.shape[1]), centers, labels,
                  min_sq_dist, n_threads)


def lloyd_step_csr(data, indices, indptr, sample_weight, centers, labels, sums, weight_sums,
                   n_threads):
    return lloyd_step(_dense(data, indices, indptr, centers.shape[1]), sample_weight, centers,
                      labels, sums, weight_sums, n_threads)


def inertia_csr(data, indices, indptr, sample_weight, centers, labels, n_threads):
    return inertia(_dense(data, indices, indptr, centers.shape[1]), sample_weight, centers,
                   labels, n_threads)


def kmeanspp_trial_potentials_csr(data, indices, indptr, sample_weight, candidates,
                                  closest_sq_dist, potentials, n_threads):
    kmeanspp_trial_potentials(_dense(data, indices, indptr, candidates.shape[1]),
                              sample_weight, candidates, closest_sq_dist, potentials, n_threads)


def kmeanspp_update_closest_csr(data, indices, indptr, center, closest_sq_dist, n_threads):
    kmeanspp_update_closest(_dense(data, indices, indptr, center.shape[0]), center,
                            closest_sq_dist, n_threads)
