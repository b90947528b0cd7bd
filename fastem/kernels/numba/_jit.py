"""The one place numba kernels are compiled: shared flags and the on-disk cache.

FASTMATH is the single set of fast-math flags every kernel uses.  It allows
reassociation (so reductions over features vectorise) but never ``nnan``/``ninf``:
with those LLVM may assume NaN and inf cannot occur and delete the very checks
(``-inf`` log-likelihoods, empty clusters) that keep results correct.

Caching: numba would store compiled kernels next to the source (``__pycache__``), which
for an installed fastem is site-packages: files pip does not own, which outlive an
uninstall and then shadow a later install as a namespace package.  So fastem's kernels
are cached in a per-user directory keyed by fastem's version instead (``_cache_root``:
``$FASTEM_CACHE_DIR``, else ``$XDG_CACHE_HOME/fastem`` or ``~/.cache/fastem``, else
``<tmp>/fastem-<uid>``), created private (0700) and used only if this user owns it and
nobody else can write to it (numba's cache index is a pickle).  ``NUMBA_CACHE_DIR``,
when set, wins (numba's own locator).  When no location is usable, numba's other
locators are tried; when numba then refuses to decorate the function, we point it at a
private temporary directory, and if even that fails we compile without a cache:
slower start-up, never a crash.
"""

import functools
import os
import tempfile
import warnings

import numba
from numba.core import config as numba_config

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})


def _private_dir(path):
    """``path``, created 0700 if missing, if it is a directory this user owns, nobody else
    can write to and this process can write in; else None."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
        if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o022):
            return None
        tempfile.TemporaryFile(dir=path).close()
        return path
    except OSError:
        return None


def _user_id():
    return os.getuid() if hasattr(os, "getuid") else "user"


def _cache_root():
    """The private directory of fastem's compiled kernels for this fastem version, or None."""
    from fastem import __version__

    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    roots = [os.environ["FASTEM_CACHE_DIR"]] if os.environ.get("FASTEM_CACHE_DIR") else [
        os.path.join(home, "fastem"), os.path.join(tempfile.gettempdir(), f"fastem-{_user_id()}")]
    for root in roots:
        if _private_dir(root) is not None:
            path = _private_dir(os.path.join(root, f"numba-{__version__}"))
            if path is not None:
                return path
    return None


def _install_cache_locator():
    """Put fastem's cache locator first in numba's list: it takes fastem's own source
    files only, and steps aside when NUMBA_CACHE_DIR is set or no private root exists."""
    try:
        from numba.core import caching
    except ImportError:  # pragma: no cover - numba without the caching module
        return
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    mixin = getattr(caching, "_SourceFileBackedLocatorMixin", None)
    base = getattr(caching, "_CacheLocator", None)
    if impl is None or mixin is None or base is None:  # pragma: no cover - other numba
        return
    if any(getattr(k, "_fastem", False) for k in impl._locator_classes):
        return
    package = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    root = []  # found on first use: importing fastem touches no directory

    class FastemCacheLocator(mixin, base):
        _fastem = True

        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._cache_path = os.path.join(root[0], self.get_suitable_cache_subpath(py_file))

        def get_cache_path(self):
            return self._cache_path

        @classmethod
        def from_function(cls, py_func, py_file):
            if numba_config.CACHE_DIR or not os.path.abspath(py_file).startswith(
                    package + os.sep):
                return None
            if not root:
                root.append(_cache_root())
            if root[0] is None:
                return None
            return super().from_function(py_func, py_file)

    impl._locator_classes.insert(0, FastemCacheLocator)


def _fallback_cache_dir():
    return _private_dir(os.path.join(tempfile.gettempdir(), f"fastem-numba-cache-{_user_id()}"))


_install_cache_locator()


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
        fallback = _fallback_cache_dir()
        if fallback is not None:
            numba_config.CACHE_DIR = fallback
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
