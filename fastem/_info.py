"""Environment report (``fastem info``) and cache warm-up (``fastem warmup``)."""

import importlib
import platform
import sys

import numpy as np

from ._dispatch import KERNEL_BACKENDS, _FAMILIES, available_backends, get_kernels
from ._threads import available_cpus


def _version(module):
    try:
        return importlib.import_module(module).__version__
    except Exception:  # noqa: BLE001
        return None


def _exercise_kmeans(kern, dtype, n_threads=1):
    """Run every K-means kernel once on tiny data of ``dtype`` (compiles / loads the cache)."""
    X = np.arange(24, dtype=dtype).reshape(8, 3)
    centers = np.ascontiguousarray(X[:2])
    w = np.ones(8)
    labels = np.empty(8, np.int32)
    dist = np.empty(8)
    kern.assign_labels(X, centers, labels, dist, n_threads)
    kern.lloyd_step(X, w, centers, labels, np.empty((2, 3)), np.empty(2), n_threads)
    kern.inertia(X, w, centers, labels, n_threads)
    kern.kmeanspp_trial_potentials(X, w, centers, dist, np.empty(2), n_threads)
    kern.kmeanspp_update_closest(X, centers[0], dist, n_threads)
    # the bounded algorithms' step ("auto" runs Hamerly from K = 64): one group of both
    # centers, building the bounds and then using them
    groups = np.zeros(2, np.int64), np.array([0, 2], np.int64), np.arange(2, dtype=np.int64)
    upper, lower = np.zeros(8), np.zeros((8, 1))
    for full in (True, False):
        kern.bounded_step(X, w, centers, np.zeros(2), np.ones(2), *groups, labels, upper, lower,
                          full, np.empty((2, 3)), np.empty(2), np.zeros(3), n_threads)


def _exercise_gaussian_mixture(kern, dtype, n_threads=1):
    """The same for the twelve Gaussian-mixture kernels."""
    X = np.arange(24, dtype=dtype).reshape(8, 3) / 10
    means = np.ascontiguousarray(X[:2])
    consts = np.zeros(2)
    w = np.ones(8)
    chols = {"full": np.stack([np.eye(3, dtype=dtype)] * 2), "tied": np.eye(3, dtype=dtype),
             "diag": np.ones((2, 3), dtype=dtype), "spherical": np.ones(2, dtype=dtype)}
    xx = {"full": (2, 3, 3), "tied": (3, 3), "diag": (2, 3), "spherical": (2,)}
    for cov, pc in chols.items():
        getattr(kern, f"estimate_log_prob_{cov}")(X, means, pc, consts, np.empty((8, 2)),
                                                  n_threads)
        getattr(kern, f"estimate_log_norm_{cov}")(X, means, pc, consts, np.empty(8),
                                                  np.empty(8, np.int32), n_threads)
        getattr(kern, f"accumulate_stats_{cov}")(X, w, means, pc, consts, means, np.empty(2),
                                                 np.empty((2, 3)), np.empty(xx[cov]), n_threads)


def _exercise_discrete_mixture(kern, dtype, n_threads=1):
    """The same for the dense and CSR discrete-mixture kernels (int32 and int64 indices)."""
    X = (np.arange(24).reshape(8, 3) % 2).astype(dtype)
    coef, offset, w = np.zeros((3, 2)), np.zeros(2), np.ones(8)
    kern.estimate_log_prob_dense(X, coef, coef, offset, True, np.empty((8, 2)), n_threads)
    kern.estimate_log_norm_dense(X, coef, coef, offset, True, np.empty(8), np.empty(8, np.int32),
                                 n_threads)
    kern.accumulate_stats_dense(X, w, coef, coef, offset, True, np.empty(2), np.empty((3, 2)),
                                np.empty((3, 2)), n_threads)
    for index in (np.int32, np.int64):
        csr = (X.ravel(), np.tile(np.arange(3, dtype=index), 8), np.arange(0, 25, 3, dtype=index))
        kern.estimate_log_prob_csr(*csr, coef, offset, np.empty((8, 2)), n_threads)
        kern.estimate_log_norm_csr(*csr, coef, offset, np.empty(8), np.empty(8, np.int32),
                                   n_threads)
        kern.accumulate_stats_csr(*csr, w, coef, offset, np.empty(2), np.empty((3, 2)), n_threads)


_EXERCISE = {"kmeans": _exercise_kmeans, "gaussian_mixture": _exercise_gaussian_mixture,
             "discrete_mixture": _exercise_discrete_mixture}


def warmup(backends=("numba",)):
    """Compile every numba kernel for float32 and float64 into numba's on-disk cache.

    Run once in a job prologue or an image build so that later processes load the
    compiled kernels instead of compiling them.  Returns the backends warmed.
    """
    done = []
    status = available_backends()
    for backend in backends:
        if status.get(backend) is not None:
            continue
        for family in _FAMILIES:
            kern = get_kernels(backend, family)
            for dtype in (np.float32, np.float64):
                _EXERCISE[family](kern, dtype)
        done.append(backend)
    return done


def info():
    """Dict describing versions, backends (and why any is unavailable) and threading."""
    status = available_backends()
    out = {
        "fastem": _version("fastem"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "numba": _version("numba"),
        "llvmlite": _version("llvmlite"),
        "scipy": _version("scipy"),
        "threadpoolctl": _version("threadpoolctl"),
        "backends": {b: ("available" if status[b] is None else f"unavailable: {status[b]}")
                     for b in KERNEL_BACKENDS},
        "available_cpus": available_cpus(),
    }
    if status["numba"] is None:
        import numba

        _exercise_kmeans(get_kernels("numba", "kmeans"), np.float64)
        out["numba_threading_layer"] = numba.threading_layer()
        out["numba_num_threads"] = numba.config.NUMBA_NUM_THREADS
        out["numba_cache_dir"] = numba.config.CACHE_DIR or "(next to the package, or user cache)"
    if status["cython"] is None:
        out["cython_openmp"] = bool(get_kernels("cython", "kmeans").OPENMP)
    try:
        from threadpoolctl import threadpool_info

        out["blas"] = [f"{d.get('internal_api')} {d.get('version')} "
                       f"({d.get('num_threads')} threads)" for d in threadpool_info()
                       if d.get("user_api") == "blas"]
    except Exception:  # noqa: BLE001
        pass
    return out
