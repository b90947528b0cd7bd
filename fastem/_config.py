"""Global configuration: default backend, thread count and chunk size.

``config_context`` and ``set_config`` follow scikit-learn's pattern: the settings are
thread-local, so two threads fitting models with different settings do not interfere.
The environment variable ``FASTEM_BACKEND`` gives the process-wide default backend.

``chunk_bytes`` is the size of the row chunks every fit passes over (see
``fastem/_stream.py``).  It fixes where the chunks' sums are added, so two fits agree
bit for bit only under the same value; it also bounds a streamed fit's memory.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ._validation import BACKENDS, check_backend_name, check_chunk_bytes, check_n_threads

if TYPE_CHECKING:
    from typing import Iterator, Optional

__all__ = ["BACKENDS", "config_context", "get_config", "set_config"]

#: 64 MiB of data per chunk: large enough that per-chunk overhead is negligible, small
#: enough that a streamed fit's working set stays a few hundred MiB.
DEFAULT_CHUNK_BYTES = 2**26

_local = threading.local()


def _defaults():
    return {"backend": os.environ.get("FASTEM_BACKEND", "auto").strip().lower() or "auto",
            "n_threads": None, "chunk_bytes": DEFAULT_CHUNK_BYTES}


def _config():
    if not hasattr(_local, "config"):
        _local.config = _defaults()
    return _local.config


def get_config() -> dict:
    """Return a copy of the current configuration as a dict (``backend``, ``n_threads``,
    ``chunk_bytes``)."""
    return dict(_config())


def set_config(backend: Optional[str] = None, n_threads: Optional[int] = None,
               chunk_bytes: Optional[int] = None) -> None:
    """Set the default ``backend`` and/or ``n_threads`` for this thread.

    Parameters
    ----------
    backend : {"auto", "numba", "cython", "numpy"}, optional
        Backend used by estimators whose ``backend`` parameter is ``None``.
    n_threads : int, optional
        Thread count used by estimators whose ``n_threads`` parameter is ``None``.
    chunk_bytes : int, optional
        Bytes of data per row chunk of a fit (default 64 MiB), at least one row.
    """
    cfg = _config()
    if backend is not None:
        cfg["backend"] = check_backend_name(backend, "backend")
    if n_threads is not None:
        cfg["n_threads"] = check_n_threads(n_threads)
    if chunk_bytes is not None:
        cfg["chunk_bytes"] = check_chunk_bytes(chunk_bytes)


@contextmanager
def config_context(*, backend: Optional[str] = None, n_threads: Optional[int] = None,
                   chunk_bytes: Optional[int] = None) -> Iterator[None]:
    """Temporarily change the defaults, e.g. ``with fastem.config_context(backend="numpy"):``.

    Parameters
    ----------
    backend, n_threads, chunk_bytes
        As in ``set_config``; each given value holds inside the ``with`` block, and the
        previous configuration returns when it ends.
    """
    old = get_config()
    set_config(backend=backend, n_threads=n_threads, chunk_bytes=chunk_bytes)
    try:
        yield
    finally:
        _config().clear()
        _config().update(old)
