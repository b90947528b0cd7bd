"""K-means kernels, numpy reference implementation (the specification).

Shapes: ``X`` is (n_samples, n_features), float32 or float64, C-contiguous;
``centers`` / ``candidates`` are (n_clusters, n_features) of X's dtype;
``sample_weight`` is (n_samples,) float64 and non-negative; ``labels`` is int32.
Sums, potentials and inertia are float64.  Output buffers are overwritten, never
accumulated into.  ``n_threads`` is accepted for signature parity and ignored.

Everything here is computed directly in float64 as ``sum_j (x_j - c_j)**2``; ties
go to the lowest cluster index.
"""

import numpy as np


def _sq_distances_to(X, point):
    """float64 squared Euclidean distance of every row of X to one point."""
    diff = X.astype(np.float64) - point.astype(np.float64)
    return np.einsum("ij,ij->i", diff, diff)


def _sq_distances(X, centers):
    """(n_samples, n_clusters) float64 squared distances, one center at a time."""
    out = np.empty((X.shape[0], centers.shape[0]), dtype=np.float64)
    for k in range(centers.shape[0]):
        out[:, k] = _sq_distances_to(X, centers[k])
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
    labels : (n_samples,) int32, written: nearest center of each sample under ``centers``.
    sums : (n_clusters, n_features) float64, written: ``sum_{i: label_i = k} w_i x_i``.
    weight_sums : (n_clusters,) float64, written: ``sum_{i: label_i = k} w_i``.
    n_threads : int, ignored.
    """
    min_sq_dist = np.empty(X.shape[0], dtype=np.float64)
    assign_labels(X, centers, labels, min_sq_dist, n_threads)
    X64 = X.astype(np.float64)
    for k in range(centers.shape[0]):
        members = labels == k
        w = sample_weight[members]
        weight_sums[k] = w.sum()
        sums[k] = (w[:, None] * X64[members]).sum(axis=0)


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
