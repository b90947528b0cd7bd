"""Model files: ``est.save(path)`` and ``fastem.load(path)``.

One safe, versioned format, never pickle: a ``.npz`` (zip) archive holding

* ``__meta__``: UTF-8 JSON, stored as a uint8 array: the format name and version, the
  fastem version, the model class, its JSON-representable constructor parameters, its
  scalar fitted attributes, and a SHA-256 checksum of every array in the archive and of
  the rest of the metadata;
* ``a__<name>``: each array-valued fitted attribute; ``p__<name>``: each array-valued
  constructor parameter (e.g. ``init``, ``means_init``).

Loading reads with ``allow_pickle=False`` (so no code from the file is ever executed),
verifies the checksum, rebuilds the estimator from its class's own list of persisted
attributes, and runs the class's validation of the fitted state (shapes, dtypes,
finiteness, probabilities summing to one, positive-definite factors).  A truncated,
corrupted, modified or incompatible file raises ``ValueError`` and says which.

Writes to a path are atomic: the archive is written to a temporary file in the target
directory (with the mode ``open`` would give it), flushed to disk and renamed over the
target, and the directory is flushed, so a crash leaves either the old file or the new
one, never a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import tempfile
import zipfile
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from typing import Any

    from ._typing import PathOrFile

FORMAT = "fastem-model"
#: 2: the checksum covers the metadata as well as the arrays (1: the arrays only)
FORMAT_VERSION = 2
_READS = (1, 2)
_META = "__meta__"


def _new_file_mode(path):
    """The mode a file written to ``path`` gets: the existing file's, else 0o666 less the
    umask (as ``open`` would give; ``mkstemp`` alone makes every file 0600)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        pass
    try:
        with open("/proc/self/status") as fh:  # the umask without changing it (Linux)
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_directory(directory):
    """Make a rename in ``directory`` durable (POSIX; a no-op where directories cannot be
    opened, e.g. on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write):
    """Call ``write(fileobj)`` on a temporary file next to ``path``, then rename it over
    ``path`` (after fsync of the file, and of the directory after the rename).  The file
    gets the mode ``open`` would give it (an existing file keeps its mode).  On any error
    the temporary file is removed and ``path`` is left as it was."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=".fastem-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), mode)
            else:
                os.chmod(tmp, mode)
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def _checksum(arrays, meta=None):
    """SHA-256 of every array and (format 2 on) of the metadata but the checksum itself,
    as canonical JSON, so an edited parameter or attribute fails the check too."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    if meta is not None:
        rest = {k: v for k, v in meta.items() if k != "checksum"}
        h.update(b"meta|" + json.dumps(rest, sort_keys=True).encode("utf-8"))
    return h.hexdigest()


def _jsonable(value):
    """value as JSON (python scalars, str, None, lists of them), or raise TypeError."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)) and all(
            v is None or isinstance(v, (bool, str, numbers.Real)) for v in value):
        return [_jsonable(v) for v in value]
    raise TypeError(type(value).__name__)


def save(est, path, include_labels=True):
    """Write the fitted estimator ``est`` to ``path`` (a path: atomically; or a binary
    file object, written as is); without ``include_labels``, the per-row ``labels_``
    (4 bytes a row) are left out.  Returns ``path``."""
    from . import __version__

    est._check_is_fitted()
    arrays, attrs, params, not_saved = {}, {}, {}, []
    for name in est._persisted_attributes():
        if not hasattr(est, name) or (name in est._per_row_attributes and not include_labels):
            continue
        value = getattr(est, name)
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf" and name != "feature_names_in_":
                raise TypeError(f"cannot save attribute {name} of dtype {value.dtype}")
            arrays["a__" + name] = value.astype(str) if name == "feature_names_in_" else value
        else:
            attrs[name] = _jsonable(value)
    for name, value in est.get_params().items():
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            arrays["p__" + name] = value
            continue
        try:
            params[name] = _jsonable(value)
        except TypeError:
            not_saved.append(name)  # e.g. a RandomState: the loaded model gets None
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "fastem_version": __version__,
            "model": type(est).__name__, "params": params, "params_not_saved": not_saved,
            "attributes": attrs}
    meta["checksum"] = _checksum(arrays, meta)
    payload = dict(arrays)
    payload[_META] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    if hasattr(path, "write"):
        np.savez(path, **payload)
    else:
        atomic_write(path, lambda fh: np.savez(fh, **payload))
    return path


def _model_classes():
    from ._families import estimator_classes

    return {c.__name__: c for c in estimator_classes().values()}


def load(path: PathOrFile) -> Any:
    """Read a model written by ``save``; validate it; return the fitted estimator.

    Parameters
    ----------
    path : str, os.PathLike or binary file object
        The model file (a ``.npz`` written by ``est.save``).  Nothing in it is
        unpickled; a truncated, corrupted, modified or invalid file raises
        ``ValueError`` saying which.

    Returns
    -------
    estimator : the fastem estimator saved, fitted
    """
    source = path
    if hasattr(path, "read"):
        path = getattr(path, "name", "<file object>")
        path = path if isinstance(path, str) else "<file object>"
    else:
        source = path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no model file at {path!r}")
    try:
        with np.load(source, allow_pickle=False) as archive:
            files = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path!r} is not a readable fastem model file (truncated or "
                         f"corrupted?): {exc}") from exc
    if _META not in files:
        raise ValueError(f"{path!r} is not a fastem model file (no metadata).")
    try:
        meta = json.loads(files.pop(_META).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path!r}: the model metadata is corrupted: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a fastem model file.")
    version = meta.get("format_version")
    if version not in _READS:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise ValueError(
            f"{path!r} has model format version {version!r}; this fastem reads version "
            f"{FORMAT_VERSION}" + (" (the file was written by a newer fastem: upgrade)."
                                   if newer else "."))
    if meta.get("checksum") != _checksum(files, meta if version >= 2 else None):
        raise ValueError(f"{path!r}: checksum mismatch: the file was corrupted or modified "
                         "after it was written.")
    classes = _model_classes()
    cls = classes.get(meta.get("model"))
    if cls is None:
        raise ValueError(f"{path!r} holds an unknown model type {meta.get('model')!r}; "
                         f"known: {sorted(classes)}.")
    try:
        params = dict(meta["params"])
        params.update({k[3:]: v for k, v in files.items() if k.startswith("p__")})
        est = cls(**params)
        for name, value in meta["attributes"].items():
            setattr(est, name, value)
        for key, value in files.items():
            if key.startswith("a__"):
                setattr(est, key[3:], value)
    except (TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"{path!r}: the model's contents are inconsistent: {exc}") from exc
    missing = [n for n in est._required_attributes() if not hasattr(est, n)]
    if missing:
        raise ValueError(f"{path!r}: the model file lacks {missing}.")
    try:
        est._validate_params()
        est._check_fitted_state()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path!r}: invalid model: {exc}") from exc
    est._restore_fitted_state()
    return est
