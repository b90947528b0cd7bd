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


def _exercise(family, kern, dtype, n_threads=1):
    """Run every kernel of ``family`` once on a tiny case of ``dtype`` (compiles the
    numba kernels, or loads them from the cache): the declared calls reach every
    specialization a default fit uses (bounded_step, which "auto" runs from K = 64,
    CSR with int32 and int64 indices, data with and without missing entries)."""
    from ._families import family as declared, run_calls

    calls = declared(family).calls(dtype, 8, 3, 2, np.random.default_rng(0))
    run_calls(kern, calls, n_threads)


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
                _exercise(family, kern, dtype)
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

        _exercise("kmeans", get_kernels("numba", "kmeans"), np.float64)
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
