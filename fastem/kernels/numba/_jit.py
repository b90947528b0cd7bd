"""The one place numba kernels are compiled: shared flags and the on-disk cache.

FASTMATH is the single set of fast-math flags every kernel uses.  It allows
reassociation (so reductions over features vectorise) but never ``nnan``/``ninf``:
with those LLVM may assume NaN and inf cannot occur and delete the very checks
(``-inf`` log-likelihoods, empty clusters) that keep results correct.

Caching: numba stores compiled kernels next to the source (``__pycache__``) or, when
that is not writable, in the user's cache directory.  When neither is writable (a
read-only install with a read-only home), numba refuses to decorate the function; we
then point it at a per-user temporary directory, and if even that fails we compile
without a cache: slower start-up, never a crash.
"""

import functools
import os
import tempfile
import warnings

import numba
from numba.core import config as numba_config

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})


def _fallback_cache_dir():
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return os.path.join(tempfile.gettempdir(), f"fastem-numba-cache-{uid}")


def _compile(func, parallel, fastmath=FASTMATH):
    """``njit`` ``func`` with fastem's flags and the cache fallbacks described above."""
    options = dict(parallel=parallel, fastmath=set(fastmath) or False, nogil=True,
                   error_model="numpy")
    try:
        return numba.njit(cache=True, **options)(func)
    except RuntimeError as exc:  # "cannot cache function ...: no locator available"
        if "cache" not in str(exc):
            raise
    if not numba_config.CACHE_DIR:
        numba_config.CACHE_DIR = _fallback_cache_dir()
        try:
            return numba.njit(cache=True, **options)(func)
        except RuntimeError:
            pass
    warnings.warn(
        f"fastem: no writable numba cache location for {func.__name__}; kernels will be "
        "recompiled in every process. Set NUMBA_CACHE_DIR to a writable directory.",
        RuntimeWarning,
        stacklevel=2,
    )
    return numba.njit(cache=False, **options)(func)


def kernel(func):
    """Compile a parallel kernel whose last argument is ``n_threads``.

    The public kernel is a thin Python wrapper that sets numba's thread count for the
    call and restores it in ``finally``.  (Calling ``set_num_threads`` inside jitted
    code would make numba refuse to cache the kernel.)  A request above numba's pool
    size (``NUMBA_NUM_THREADS``) is clamped to it.
    """
    jitted = _compile(func, parallel=True)

    @functools.wraps(func)
    def run(*args):
        n_threads = max(1, min(int(args[-1]), numba_config.NUMBA_NUM_THREADS))
        old = numba.get_num_threads()
        numba.set_num_threads(n_threads)
        try:
            return jitted(*args)
        finally:
            numba.set_num_threads(old)

    run.jitted = jitted
    return run


def helper(func):
    """A small single-thread helper called from kernels (same flags, cached)."""
    return _compile(func, parallel=False)


def strict_helper(func):
    """A helper compiled without fast-math: its float operations run in source order,
    each rounded, with no fused multiply-add.  Used where every backend must produce the
    same bits (the exact distance that breaks near-ties in the K-means assignment).  The
    flags live on the instructions, so they survive inlining into fast-math callers."""
    return _compile(func, parallel=False, fastmath=frozenset())
