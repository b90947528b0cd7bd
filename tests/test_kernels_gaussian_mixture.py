"""Gaussian mixture kernels: the reference against scipy's densities and a brute-force
E/M step, every backend against the reference, and thread-count invariance."""

import numpy as np
import pytest
from conftest import FAST_BACKENDS, blobs

from fastem._dispatch import backend_unavailable_reason, get_kernels
from fastem.kernels._covariance import COVARIANCE_TYPES, canonical, expanded_form

REF = get_kernels("numpy", "gaussian_mixture")
COVS = ["full", "tied", "diag", "spherical"]
GMM_FAST = [b for b in FAST_BACKENDS if backend_unavailable_reason(b, "gaussian_mixture") is None]
XX_SHAPE = {"full": lambda k, d: (k, d, d), "tied": lambda k, d: (d, d),
            "diag": lambda k, d: (k, d), "spherical": lambda k, d: (k,)}


def random_params(cov, k, d, dtype, seed=0):
    """Means, covariances (scikit-learn shapes) and the matching upper precision factors."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(-3, 3, (k, d))
    if cov in ("full", "tied"):
        n = k if cov == "full" else 1
        a = rng.standard_normal((n, d, d)) * 0.4
        covs = a @ np.transpose(a, (0, 2, 1)) + np.eye(d)
        chol = np.stack([np.linalg.inv(np.linalg.cholesky(c)).T for c in covs])
        if cov == "tied":
            covs, chol = covs[0], chol[0]
    elif cov == "diag":
        covs = rng.uniform(0.3, 2.0, (k, d))
        chol = 1 / np.sqrt(covs)
    else:
        covs = rng.uniform(0.3, 2.0, k)
        chol = 1 / np.sqrt(covs)
    return means.astype(dtype), covs, chol.astype(dtype)


def log_consts_for(weights, chol, cov, d):
    if cov == "full":
        logdet = np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(1)
    elif cov == "tied":
        logdet = np.log(np.diag(chol)).sum()
    elif cov == "diag":
        logdet = np.log(chol).sum(1)
    else:
        logdet = d * np.log(chol)
    return np.log(weights) + logdet.astype(np.float64) - 0.5 * d * np.log(2 * np.pi)


@pytest.mark.parametrize("cov", COVS)
def test_reference_log_prob_matches_scipy(cov):
    from scipy.stats import multivariate_normal

    k, d = 3, 4
    X, _ = blobs(200, d, k, seed=1, spread=1.5)
    means, covs, chol = random_params(cov, k, d, np.float64)
    weights = np.array([0.2, 0.3, 0.5])
    out = np.empty((200, k))
    REF.__dict__[f"estimate_log_prob_{cov}"](X, means, chol, log_consts_for(weights, chol, cov, d),
                                             out, 1)
    for j in range(k):
        c = {"full": lambda: covs[j], "tied": lambda: covs, "diag": lambda: np.diag(covs[j]),
             "spherical": lambda: covs[j] * np.eye(d)}[cov]()
        expected = np.log(weights[j]) + multivariate_normal(means[j], c).logpdf(X)
        np.testing.assert_allclose(out[:, j], expected, rtol=1e-10)


def test_reference_stats_match_a_brute_force_em_step():
    # one E-step and M-step by hand, for full covariance with sample weights
    from scipy.stats import multivariate_normal

    k, d = 2, 2
    X, _ = blobs(50, d, k, seed=2, spread=2.0)
    w = np.random.default_rng(3).uniform(0, 2, 50)
    means, covs, chol = random_params("full", k, d, np.float64, seed=4)
    weights = np.array([0.4, 0.6])
    dens = np.column_stack([weights[j] * multivariate_normal(means[j], covs[j]).pdf(X)
                            for j in range(k)])
    resp = dens / dens.sum(1, keepdims=True)
    shift = means + 0.25
    nk, sx, sxx = np.empty(k), np.empty((k, d)), np.empty((k, d, d))
    ll = REF.accumulate_stats_full(X, w, means, chol, log_consts_for(weights, chol, "full", d),
                                   shift, nk, sx, sxx, 1)
    assert ll == pytest.approx(np.sum(w * np.log(dens.sum(1))), rel=1e-12)
    for j in range(k):
        wr = w * resp[:, j]
        y = X - shift[j]
        assert nk[j] == pytest.approx(wr.sum(), rel=1e-12)
        np.testing.assert_allclose(sx[j], wr @ y, rtol=1e-12)
        np.testing.assert_allclose(sxx[j], np.einsum("i,ij,ik->jk", wr, y, y), rtol=1e-12)


def test_reference_logsumexp_all_minus_inf_is_minus_inf():
    from fastem.kernels.reference.gaussian_mixture import logsumexp_rows

    out = logsumexp_rows(np.array([[-np.inf, -np.inf], [0.0, -np.inf]]))
    assert out[0] == -np.inf and out[1] == 0.0


def _run_all(kern, cov, X, w, means, chol, consts, n_threads):
    n, (k, d) = X.shape[0], means.shape
    out = {"log_prob": np.empty((n, k)), "log_norm": np.empty(n), "labels": np.empty(n, np.int32),
           "nk": np.empty(k), "sum_x": np.empty((k, d)), "sum_xx": np.empty(XX_SHAPE[cov](k, d))}
    getattr(kern, f"estimate_log_prob_{cov}")(X, means, chol, consts, out["log_prob"], n_threads)
    getattr(kern, f"estimate_log_norm_{cov}")(X, means, chol, consts, out["log_norm"],
                                              out["labels"], n_threads)
    shift = (means + 0.1).astype(X.dtype)
    out["ll"] = np.array(getattr(kern, f"accumulate_stats_{cov}")(
        X, w, means, chol, consts, shift, out["nk"], out["sum_x"], out["sum_xx"], n_threads))
    return out


SHAPES = [(1, 3, 1), (255, 2, 3), (256, 2, 3), (257, 4, 2), (3000, 1, 4), (2000, 5, 6)]


@pytest.mark.parametrize("backend_name", GMM_FAST)
@pytest.mark.parametrize("cov", COVS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_backend_matches_reference(backend_name, cov, shape, dtype):
    n, d, k = shape
    X, _ = blobs(n, d, k, seed=n + k, spread=1.0, scale=3.0, dtype=dtype)
    means, _, chol = random_params(cov, k, d, dtype, seed=k)
    w = np.random.default_rng(0).uniform(0, 2, n)
    w[::7] = 0.0
    consts = log_consts_for(np.full(k, 1.0 / k), chol, cov, d)
    got = _run_all(get_kernels(backend_name, "gaussian_mixture"), cov, X, w, means, chol, consts, 2)
    ref = _run_all(REF, cov, X, w, means, chol, consts, 1)
    tol = 1e-9 if dtype == np.float64 else 2e-4
    for key in ("log_prob", "log_norm", "nk", "sum_x", "sum_xx", "ll"):
        np.testing.assert_allclose(got[key], ref[key], rtol=tol, atol=tol * 10, err_msg=key)
    confident = np.sort(ref["log_prob"], axis=1)
    clear = (confident[:, -1] - confident[:, -2] > 1e-3) if k > 1 else np.ones(n, bool)
    np.testing.assert_array_equal(got["labels"][clear], ref["labels"][clear])


def _expanded(cov, means, chol, consts, shift):
    kind = COVARIANCE_TYPES.index(cov)
    k, d = means.shape
    return expanded_form(kind, means, canonical(kind, np.asarray(chol), k, d), consts, shift)


@pytest.mark.parametrize("cov", ["diag", "spherical"])
def test_expanded_form_reproduces_log_densities(cov):
    """[y, y^2] @ B + offset (y = x - c) is the log joint density, by algebra alone."""
    k, d = 4, 3
    X, _ = blobs(500, d, k, seed=3, spread=1.0, scale=3.0)
    means, _, chol = random_params(cov, k, d, np.float64, seed=2)
    consts = log_consts_for(np.full(k, 1.0 / k), chol, cov, d)
    ok, c, B, offset = _expanded(cov, means, chol, consts, means + 0.1)
    assert ok  # a few standard deviations apart: the kernels take this form
    expected = np.empty((500, k))
    getattr(REF, f"estimate_log_prob_{cov}")(X, means, chol, consts, expected, 1)
    y = X - c
    np.testing.assert_allclose(np.hstack([y, y * y]) @ B + offset, expected, rtol=1e-12)


@pytest.mark.parametrize("cov", ["full", "tied"])
def test_expanded_form_only_for_diag_and_spherical(cov):
    means, _, chol = random_params(cov, 3, 2, np.float64)
    assert not _expanded(cov, means, chol, np.zeros(3), means)[0]


@pytest.mark.parametrize("backend_name", GMM_FAST)
@pytest.mark.parametrize("cov", ["diag", "spherical"])
def test_far_separated_components_keep_exact_statistics(backend_name, cov):
    """Components 1e7 standard deviations apart: the expanded form would lose about
    eps * 1e14 ~ 1e-2 of the variances' precision, so the kernels must refuse it and
    match the reference (direct form) to round-off, for any thread count."""
    rng = np.random.default_rng(4)
    d, k = 3, 2
    means = np.array([[0.0] * d, [1e7] * d])
    X = np.concatenate([means[j] + rng.standard_normal((300, d)) for j in range(k)])
    chol = np.ones((k, d)) if cov == "diag" else np.ones(k)
    consts = log_consts_for(np.full(k, 0.5), chol, cov, d)
    assert not _expanded(cov, means, chol, consts, means + 0.1)[0]
    w = rng.uniform(0, 2, X.shape[0])
    kern = get_kernels(backend_name, "gaussian_mixture")
    got = [_run_all(kern, cov, X, w, means, chol, consts, t) for t in (1, 2)]
    ref = _run_all(REF, cov, X, w, means, chol, consts, 1)
    for key in ("log_prob", "log_norm", "nk", "sum_x", "sum_xx", "ll"):
        np.testing.assert_allclose(got[0][key], ref[key], rtol=1e-12, atol=1e-9, err_msg=key)
        assert np.array_equal(got[0][key], got[1][key]), key


@pytest.mark.parametrize("backend_name", GMM_FAST)
@pytest.mark.parametrize("cov", COVS)
def test_kernels_bit_identical_for_any_thread_count(backend_name, cov):
    X, _ = blobs(20_000 + 33, 5, 6, seed=5, spread=2.0, scale=3.0)
    means, _, chol = random_params(cov, 6, 5, np.float64, seed=6)
    w = np.random.default_rng(1).uniform(0, 2, X.shape[0])
    consts = log_consts_for(np.full(6, 1 / 6), chol, cov, 5)
    kern = get_kernels(backend_name, "gaussian_mixture")
    runs = [_run_all(kern, cov, X, w, means, chol, consts, t) for t in (1, 2, 3)]
    for other in runs[1:]:
        for key, value in runs[0].items():
            assert np.array_equal(value, other[key]), key
