"""Covariance types, and the per-type kernel names every Gaussian-mixture backend exports.

Each backend implements three generic kernels that take the covariance kind first;
``export_kernels`` defines the twelve public kernels (``estimate_log_prob_full``,
``accumulate_stats_diag``, ...) in the backend's module from them, so the public
names and signatures are identical in every backend by construction.

With ``canonical=True`` the precision factors and the second-moment buffer are
passed on as these 3-D views (no copies), so one compiled kernel serves every type:

=========== ============= =============== ==================
kind        prec_chol     sum_xx          native shape
=========== ============= =============== ==================
full        (K, D, D)     (K, D, D)       (K, D, D)
tied        (1, D, D)     (1, D, D)       (D, D)
diag        (K, 1, D)     (K, 1, D)       (K, D)
spherical   (K, 1, 1)     (K, 1, 1)       (K,)
=========== ============= =============== ==================
"""

import numpy as np

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
FULL, TIED, DIAG, SPHERICAL = range(4)

#: Diag and spherical kernels may use the expanded ("GEMM") form of the Mahalanobis
#: distance, sum_j y_j^2 p_kj^2 - 2 y_j m_kj p_kj^2 + m_kj^2 p_kj^2 with y = x - c and
#: m_k = mu_k - c around a common centre c, and take the statistics as GEMMs around c.
#: Both lose about eps * S^2 relative precision, where S = max_kj |mu_kj - c_j| p_kj is the
#: largest separation of a component (or shift) from c in its own standard deviations.
#: The backends use the expanded form only while S^2 <= EXPANSION_MAX_SEPARATION2, which
#: bounds the loss at about 2e-10 relative; beyond it (tiny variances far from the rest)
#: they use the exact direct form.
EXPANSION_MAX_SEPARATION2 = 2.0**20


def canonical(kind, arr, n_components, n_features):
    """View ``arr`` (a prec_chol or a second-moment buffer) in the canonical 3-D shape."""
    shape = {FULL: (n_components, n_features, n_features), TIED: (1, n_features, n_features),
             DIAG: (n_components, 1, n_features), SPHERICAL: (n_components, 1, 1)}[kind]
    return arr.reshape(shape)


def expanded_form(kind, means, prec_chol, log_consts, shift):
    """Operands of the expanded diag/spherical form, for canonical ``prec_chol``.

    Returns ``(ok, c, B, offset)``, all float64: c (D,) the mean of the means; B (2D, K)
    with ``B[j, k] = m_kj p_kj^2`` and ``B[D + j, k] = -p_kj^2 / 2`` where
    ``m_k = mu_k - c``; and ``offset_k = log_consts[k] - sum_j m_kj^2 p_kj^2 / 2``; so that
    ``log p(x, z=k) = [y, y^2] @ B[:, k] + offset_k`` with ``y = x - c``.  ``ok`` is False
    for full and tied, and when a mean or a shift lies more than
    sqrt(EXPANSION_MAX_SEPARATION2) of its own standard deviations from c.
    """
    mu = np.asarray(means, dtype=np.float64)
    n_components, n_features = mu.shape
    if kind not in (DIAG, SPHERICAL) or n_components == 0 or n_features == 0:
        return False, np.zeros(n_features), np.zeros((2 * n_features, n_components)), \
            np.zeros(n_components)
    p2 = np.broadcast_to(np.square(np.asarray(prec_chol, dtype=np.float64)[:, 0, :]),
                         mu.shape)
    c = mu.mean(axis=0)
    m = mu - c
    s = np.asarray(shift, dtype=np.float64) - c
    with np.errstate(over="ignore", invalid="ignore"):
        mm = m * m * p2
        sep2 = max(mm.max(), (s * s * p2).max())
        B = np.ascontiguousarray(np.concatenate([(m * p2).T, -0.5 * p2.T]))
        offset = np.asarray(log_consts, dtype=np.float64) - 0.5 * mm.sum(axis=1)
    # a NaN separation compares False: the direct form
    return bool(sep2 <= EXPANSION_MAX_SEPARATION2), c, B, offset


def export_kernels(namespace, log_prob, log_norm, stats, *, canonical_shapes):
    """Define ``estimate_log_prob_<cov>``, ``estimate_log_norm_<cov>`` and
    ``accumulate_stats_<cov>`` for every covariance type in ``namespace``.

    ``log_prob(kind, X, means, prec_chol, log_consts, out, n_threads)``,
    ``log_norm(kind, X, means, prec_chol, log_consts, log_norm, labels, n_threads)`` and
    ``stats(kind, X, sample_weight, means, prec_chol, log_consts, shift, nk, sum_x,
    sum_xx, n_threads)`` are the backend's generic implementations.  With
    ``canonical_shapes`` (the compiled backends) they also take the four operands of
    ``expanded_form`` right after ``log_consts`` (for ``stats``: after ``shift``).
    """
    for kind, cov in enumerate(COVARIANCE_TYPES):
        namespace.update(_public_kernels(kind, cov, log_prob, log_norm, stats, canonical_shapes))


def _public_kernels(kind, cov, log_prob, log_norm, stats, canonical_shapes):
    def shaped(arr, means):
        return canonical(kind, arr, *means.shape) if canonical_shapes else arr

    def expanded(pc, means, log_consts, shift):
        return expanded_form(kind, means, pc, log_consts, shift) if canonical_shapes else ()

    def estimate_log_prob(X, means, prec_chol, log_consts, out, n_threads):
        pc = shaped(prec_chol, means)
        log_prob(kind, X, means, pc, log_consts, *expanded(pc, means, log_consts, means), out,
                 n_threads)

    def estimate_log_norm(X, means, prec_chol, log_consts, log_norm_out, labels, n_threads):
        pc = shaped(prec_chol, means)
        log_norm(kind, X, means, pc, log_consts, *expanded(pc, means, log_consts, means),
                 log_norm_out, labels, n_threads)

    def accumulate_stats(X, sample_weight, means, prec_chol, log_consts, shift, nk, sum_x,
                         sum_xx, n_threads):
        pc = shaped(prec_chol, means)
        # shaped(sum_xx) is a view, so the backend writes the caller's buffer in place
        return stats(kind, X, sample_weight, means, pc, log_consts, shift,
                     *expanded(pc, means, log_consts, shift), nk, sum_x,
                     shaped(sum_xx, means), n_threads)

    out = {}
    for f, name in ((estimate_log_prob, "estimate_log_prob"),
                    (estimate_log_norm, "estimate_log_norm"),
                    (accumulate_stats, "accumulate_stats")):
        f.__name__ = f.__qualname__ = f"{name}_{cov}"
        f.__doc__ = f"``{name}_<cov>`` for ``cov={cov!r}``; see reference/gaussian_mixture.py."
        out[f.__name__] = f
    return out
