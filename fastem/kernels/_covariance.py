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

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
FULL, TIED, DIAG, SPHERICAL = range(4)


def canonical(kind, arr, n_components, n_features):
    """View ``arr`` (a prec_chol or a second-moment buffer) in the canonical 3-D shape."""
    shape = {FULL: (n_components, n_features, n_features), TIED: (1, n_features, n_features),
             DIAG: (n_components, 1, n_features), SPHERICAL: (n_components, 1, 1)}[kind]
    return arr.reshape(shape)


def export_kernels(namespace, log_prob, log_norm, stats, *, canonical_shapes):
    """Define ``estimate_log_prob_<cov>``, ``estimate_log_norm_<cov>`` and
    ``accumulate_stats_<cov>`` for every covariance type in ``namespace``.

    ``log_prob(kind, X, means, prec_chol, log_consts, out, n_threads)``,
    ``log_norm(kind, X, means, prec_chol, log_consts, log_norm, labels, n_threads)`` and
    ``stats(kind, X, sample_weight, means, prec_chol, log_consts, shift, nk, sum_x,
    sum_xx, n_threads)`` are the backend's generic implementations.
    """
    for kind, cov in enumerate(COVARIANCE_TYPES):
        namespace.update(_public_kernels(kind, cov, log_prob, log_norm, stats, canonical_shapes))


def _public_kernels(kind, cov, log_prob, log_norm, stats, canonical_shapes):
    def shaped(arr, means):
        return canonical(kind, arr, *means.shape) if canonical_shapes else arr

    def estimate_log_prob(X, means, prec_chol, log_consts, out, n_threads):
        log_prob(kind, X, means, shaped(prec_chol, means), log_consts, out, n_threads)

    def estimate_log_norm(X, means, prec_chol, log_consts, log_norm_out, labels, n_threads):
        log_norm(kind, X, means, shaped(prec_chol, means), log_consts, log_norm_out, labels,
                 n_threads)

    def accumulate_stats(X, sample_weight, means, prec_chol, log_consts, shift, nk, sum_x,
                         sum_xx, n_threads):
        # shaped(sum_xx) is a view, so the backend writes the caller's buffer in place
        return stats(kind, X, sample_weight, means, shaped(prec_chol, means), log_consts, shift,
                     nk, sum_x, shaped(sum_xx, means), n_threads)

    out = {}
    for f, name in ((estimate_log_prob, "estimate_log_prob"),
                    (estimate_log_norm, "estimate_log_norm"),
                    (accumulate_stats, "accumulate_stats")):
        f.__name__ = f.__qualname__ = f"{name}_{cov}"
        f.__doc__ = f"``{name}_<cov>`` for ``cov={cov!r}``; see reference/gaussian_mixture.py."
        out[f.__name__] = f
    return out
