"""Global configuration: default backend and thread count.

``config_context`` and ``set_config`` follow scikit-learn's pattern: the settings are
thread-local, so two threads fitting models with different settings do not interfere.
The environment variable ``FASTEM_BACKEND`` gives the process-wide default backend.
"""

import os
import threading
from contextlib import contextmanager

BACKENDS = ("auto", "numba", "cython", "numpy")

_local = threading.local()


def _defaults():
    return {"backend": os.environ.get("FASTEM_BACKEND", "auto").strip().lower() or "auto",
            "n_threads": None}


def _config():
    if not hasattr(_local, "config"):
        _local.config = _defaults()
    return _local.config


def get_config():
    """Return a copy of the current configuration as a dict (``backend``, ``n_threads``)."""
    return dict(_config())


def set_config(backend=None, n_threads=None):
    """Set the default ``backend`` and/or ``n_threads`` for this thread.

    Parameters
    ----------
    backend : {"auto", "numba", "cython", "numpy"}, optional
        Backend used by estimators whose ``backend`` parameter is ``None``.
    n_threads : int, optional
        Thread count used by estimators whose ``n_threads`` parameter is ``None``.
    """
    from ._validation import check_backend_name, check_n_threads

    cfg = _config()
    if backend is not None:
        cfg["backend"] = check_backend_name(backend, "backend")
    if n_threads is not None:
        cfg["n_threads"] = check_n_threads(n_threads)


@contextmanager
def config_context(*, backend=None, n_threads=None):
    """Temporarily change the defaults, e.g. ``with fastem.config_context(backend="numpy"):``."""
    old = get_config()
    set_config(backend=backend, n_threads=n_threads)
    try:
        yield
    finally:
        _config().clear()
        _config().update(old)
