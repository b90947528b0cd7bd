"""How many threads to use, and keeping libraries from oversubscribing the CPUs."""

import os
import threading
from contextlib import contextmanager


def _cgroup_cpu_quota():
    """CPUs allowed by a cgroup CPU quota (v2 ``cpu.max`` or v1 ``cfs_quota_us``), or None."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            return max(1, int(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as fh:
            quota = int(fh.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as fh:
            period = int(fh.read())
        if quota > 0 and period > 0:
            return max(1, quota // period)
    except (OSError, ValueError):
        pass
    return None


def available_cpus():
    """CPUs this process may really use: affinity mask and cgroup quota, not ``os.cpu_count()``."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        n = min(n, quota)
    return max(1, n)


def resolve_n_threads(n_threads):
    """Turn the ``n_threads`` parameter (None or a validated int >= 1) into a thread count.

    ``None`` means the configured default, else every CPU this process may use.
    """
    if n_threads is None:
        from ._config import get_config

        n_threads = get_config()["n_threads"]
    if n_threads is None:
        n_threads = available_cpus()
    return int(n_threads)


_blas_limit = threading.local()


def _load_kernel_blas():
    """Load the BLAS our kernels call, so that threadpoolctl can see (and limit) it.

    numba's ``np.dot`` and the Cython kernels call scipy's BLAS
    (``scipy.linalg.cython_blas``), a different library from numpy's.  It is loaded
    lazily, at the first kernel call: a limit set before then misses it, and its
    threads then oversubscribe the CPUs under ours (measured: the GMM statistics pass
    3-5x slower and noisy).  Both kernel backends need the import anyway.
    """
    try:
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError:  # scipy is a dependency; the numpy backend works without it
        pass


@contextmanager
def limit_blas_threads():
    """Keep BLAS at one thread while our own kernels run their threads over it.

    The numba and Cython kernels call single-block GEMMs from each worker thread; a
    multithreaded BLAS underneath would oversubscribe the CPUs.  Re-entering is free:
    threadpoolctl inspects the loaded libraries (milliseconds) only at the outermost
    level, so a fit can wrap its whole loop and each kernel call can wrap itself.
    """
    depth = getattr(_blas_limit, "depth", 0)
    if depth:
        _blas_limit.depth = depth + 1
        try:
            yield
        finally:
            _blas_limit.depth = depth
        return
    _load_kernel_blas()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl is a dependency, but never fail a fit over it
        limiter = None
    else:
        limiter = threadpool_limits(limits=1, user_api="blas")
    _blas_limit.depth = 1
    try:
        yield
    finally:
        _blas_limit.depth = 0
        if limiter is not None:
            limiter.restore_original_limits()
