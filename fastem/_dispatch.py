"""Backend registry: which kernel backends exist here, and lazy access to their kernels.

Estimators never import a backend module directly; they call :func:`get_kernels`,
which imports ``fastem.kernels.<backend>.<family>`` on first use. ``import fastem``
therefore imports neither numba nor any compiled extension.
"""

from __future__ import annotations

import importlib
import warnings

from ._config import BACKENDS, get_config
from ._families import NAMES as _FAMILIES

KERNEL_BACKENDS = ("numba", "cython", "numpy")
#: backend="auto": the Cython kernels when they were built (compiled at install time, they
#: start at once, where numba compiles a family's kernels on first use, 10-30 s, and loads
#: cached parallel kernels in about 0.4 s a process; their speed is within 0.9-1.2x of
#: numba's, benchmarks/RESULTS.md), else numba, else the numpy reference.  The choice
#: depends on what is installed only, never on numba's cache or the size of the fit: the
#: backends agree on K-means labels and centers but not on the last bits of every float
#: statistic, so switching by cache state would make a job's results depend on which
#: jobs ran before it.
_AUTO_ORDER = ("cython", "numba", "numpy")

_status = {}  # backend -> None (usable) or a string saying why not
_warned_fallback = False


class BackendFallbackWarning(UserWarning):
    """backend="auto" fell back to the slow numpy reference implementation."""


def _module_name(backend, family):
    pkg = "reference" if backend == "numpy" else backend
    return f"fastem.kernels.{pkg}.{family}"


def backend_unavailable_reason(backend, family=None):
    """Return None if ``backend`` can be used here (for ``family``, else for every family),
    else a one-line reason."""
    for fam in (_FAMILIES if family is None else (family,)):
        key = (backend, fam)
        if key not in _status:
            try:
                importlib.import_module(_module_name(backend, fam))
                _status[key] = None
            except Exception as exc:  # noqa: BLE001 - any import failure makes it unavailable
                _status[key] = f"{type(exc).__name__}: {exc}"
        if _status[key] is not None:
            return _status[key]
    return None


def available_backends() -> dict:
    """Dict of backend name -> None if usable for every model, else the reason it is not."""
    return {b: backend_unavailable_reason(b) for b in KERNEL_BACKENDS}


def resolve_backend(backend, family="kmeans"):
    """Turn the ``backend`` parameter into a concrete, usable backend name for ``family``.

    ``None`` means the configured default (``fastem.config_context`` or FASTEM_BACKEND).
    ``"auto"`` picks cython, else numba, else numpy with a one-time warning.
    """
    global _warned_fallback
    from ._validation import check_backend_name

    if backend is None:
        backend = check_backend_name(get_config()["backend"], "FASTEM_BACKEND / config backend")
    if backend == "auto":
        for candidate in _AUTO_ORDER:
            if backend_unavailable_reason(candidate, family) is None:
                if candidate == "numpy" and not _warned_fallback:
                    _warned_fallback = True
                    reasons = "; ".join(
                        f"{b}: {backend_unavailable_reason(b, family)}" for b in ("numba", "cython")
                    )
                    warnings.warn(
                        "fastem is running on the slow numpy reference backend because no fast "
                        f"backend is available ({reasons}). Install numba, or build fastem with "
                        "a C compiler for the cython backend.",
                        BackendFallbackWarning,
                        stacklevel=3,
                    )
                return candidate
        raise RuntimeError("no fastem backend is usable; numpy reference kernels failed to import")
    reason = backend_unavailable_reason(backend, family)
    if reason is not None:
        usable = [b for b in KERNEL_BACKENDS if backend_unavailable_reason(b, family) is None]
        raise ValueError(
            f"backend={backend!r} is not available here ({reason}). Use backend='auto' or one of "
            f"{usable}."
        )
    return backend


def get_kernels(backend, family):
    """Return the kernel module of ``family`` (e.g. "kmeans") for a concrete backend."""
    if backend not in KERNEL_BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    return importlib.import_module(_module_name(backend, family))
