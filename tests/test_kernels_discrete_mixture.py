"""Discrete-mixture kernels: the reference against an explicit per-sample loop, every
backend (dense, dense with missing entries, CSR with int32 and int64 indices) against
the reference, and thread-count invariance."""

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import FAST_BACKENDS

from fastem._dispatch import backend_unavailable_reason, get_kernels

REF = get_kernels("numpy", "discrete_mixture")
FAST = [b for b in FAST_BACKENDS if backend_unavailable_reason(b, "discrete_mixture") is None]


def problem(n, d, k, *, seed=0, missing=False, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 4, (n, d)).astype(dtype)
    if missing:
        X[rng.random((n, d)) < 0.2] = np.nan
    coef = rng.normal(0, 1, (d, k))
    obs_coef = rng.normal(0, 1, (d, k))
    offset = rng.normal(0, 1, k)
    w = rng.uniform(0, 2, n)
    w[::5] = 0.0
    return X, coef, obs_coef, offset, w


def run_dense(kern, X, coef, obs_coef, offset, w, missing, n_threads):
    n, (d, k) = X.shape[0], coef.shape
    out = {"log_prob": np.empty((n, k)), "log_norm": np.empty(n),
           "labels": np.empty(n, np.int32), "nk": np.empty(k), "sum_x": np.empty((d, k)),
           "sum_obs": np.empty((d, k))}
    kern.estimate_log_prob_dense(X, coef, obs_coef, offset, missing, out["log_prob"], n_threads)
    kern.estimate_log_norm_dense(X, coef, obs_coef, offset, missing, out["log_norm"],
                                 out["labels"], n_threads)
    out["ll"] = np.array(kern.accumulate_stats_dense(X, w, coef, obs_coef, offset, missing,
                                                     out["nk"], out["sum_x"], out["sum_obs"],
                                                     n_threads))
    return out


def run_csr(kern, A, coef, offset, w, n_threads):
    n, (d, k) = A.shape[0], coef.shape
    out = {"log_prob": np.empty((n, k)), "log_norm": np.empty(n),
           "labels": np.empty(n, np.int32), "nk": np.empty(k), "sum_x": np.empty((d, k))}
    args = (A.data, A.indices, A.indptr)
    kern.estimate_log_prob_csr(*args, coef, offset, out["log_prob"], n_threads)
    kern.estimate_log_norm_csr(*args, coef, offset, out["log_norm"], out["labels"], n_threads)
    out["ll"] = np.array(kern.accumulate_stats_csr(*args, w, coef, offset, out["nk"],
                                                   out["sum_x"], n_threads))
    return out


@pytest.mark.parametrize("missing", [False, True])
def test_reference_dense_matches_explicit_loop(missing):
    X, coef, obs_coef, offset, w = problem(40, 3, 2, missing=missing)
    got = run_dense(REF, X, coef, obs_coef, offset, w, missing, 1)
    lp = np.empty((40, 2))
    for i in range(40):
        for k in range(2):
            lp[i, k] = offset[k]
            for j in range(3):
                if np.isnan(X[i, j]):
                    continue  # a missing entry contributes nothing
                lp[i, k] += X[i, j] * coef[j, k] + (obs_coef[j, k] if missing else 0.0)
    np.testing.assert_allclose(got["log_prob"], lp, rtol=1e-13)
    norm = np.log(np.exp(lp).sum(axis=1))
    resp = np.exp(lp - norm[:, None]) * w[:, None]
    np.testing.assert_allclose(got["log_norm"], norm, rtol=1e-13)
    np.testing.assert_allclose(got["ll"], w @ norm, rtol=1e-13)
    np.testing.assert_allclose(got["nk"], resp.sum(axis=0), rtol=1e-13)
    x0 = np.nan_to_num(X)
    np.testing.assert_allclose(got["sum_x"], x0.T @ resp, rtol=1e-13)
    np.testing.assert_allclose(got["sum_obs"], (~np.isnan(X)).T @ resp, rtol=1e-13)


def test_reference_csr_equals_reference_dense():
    X, coef, obs_coef, offset, w = problem(60, 5, 3, seed=1)
    dense = run_dense(REF, X, coef, obs_coef, offset, w, False, 1)
    csr = run_csr(REF, sp.csr_matrix(X), coef, offset, w, 1)
    for key in csr:
        np.testing.assert_allclose(csr[key], dense[key], rtol=1e-13, err_msg=key)


SHAPES = [(1, 3, 1), (255, 2, 3), (257, 4, 2), (3000, 5, 4)]


def _compare(got, ref, tol):
    for key in ref:
        if key == "labels":
            continue
        np.testing.assert_allclose(got[key], ref[key], rtol=tol, atol=tol, err_msg=key)
    top2 = np.sort(ref["log_prob"], axis=1)
    clear = (top2[:, -1] - top2[:, -2] > 1e-3) if top2.shape[1] > 1 else slice(None)
    np.testing.assert_array_equal(got["labels"][clear], ref["labels"][clear])


@pytest.mark.parametrize("backend_name", FAST)
@pytest.mark.parametrize("missing", [False, True], ids=["complete", "missing"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_dense_backend_matches_reference(backend_name, missing, shape, dtype):
    n, d, k = shape
    X, coef, obs_coef, offset, w = problem(n, d, k, seed=n + k, missing=missing, dtype=dtype)
    kern = get_kernels(backend_name, "discrete_mixture")
    _compare(run_dense(kern, X, coef, obs_coef, offset, w, missing, 2),
             run_dense(REF, X, coef, obs_coef, offset, w, missing, 1), 1e-10)


@pytest.mark.parametrize("backend_name", FAST)
@pytest.mark.parametrize("index", [np.int32, np.int64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_csr_backend_matches_reference(backend_name, index, shape, dtype):
    n, d, k = shape
    X, coef, _, offset, w = problem(n, d * 10, k, seed=n, dtype=dtype)
    X[np.random.default_rng(n).random(X.shape) < 0.7] = 0  # sparse, with some empty rows
    A = sp.csr_matrix(X)
    A = sp.csr_matrix((A.data, A.indices.astype(index), A.indptr.astype(index)), shape=A.shape)
    kern = get_kernels(backend_name, "discrete_mixture")
    _compare(run_csr(kern, A, coef, offset, w, 2), run_csr(REF, A, coef, offset, w, 1), 1e-10)


@pytest.mark.parametrize("backend_name", FAST)
def test_kernels_bit_identical_for_any_thread_count(backend_name):
    X, coef, obs_coef, offset, w = problem(20_000 + 77, 6, 5, seed=3, missing=True)
    A = sp.csr_matrix(np.nan_to_num(X))
    kern = get_kernels(backend_name, "discrete_mixture")
    for run in (lambda t: run_dense(kern, X, coef, obs_coef, offset, w, True, t),
                lambda t: run_csr(kern, A, coef, offset, w, t)):
        results = [run(t) for t in (1, 2, 3)]
        for other in results[1:]:
            for key, value in results[0].items():
                assert np.array_equal(value, other[key]), key
