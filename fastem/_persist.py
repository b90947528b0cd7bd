"""Model files: ``est.save(path)`` and ``fastem.load(path)``.

One safe, versioned format, never pickle: a ``.npz`` (zip) archive holding

* ``__meta__``: UTF-8 JSON, stored as a uint8 array: the format name and version, the
  fastem version, the model class, its JSON-representable constructor parameters, its
  scalar fitted attributes, and a SHA-256 checksum of every array in the archive;
* ``a__<name>``: each array-valued fitted attribute; ``p__<name>``: each array-valued
  constructor parameter (e.g. ``init``, ``means_init``).

Loading reads with ``allow_pickle=False`` (so no code from the file is ever executed),
verifies the checksum, rebuilds the estimator from its class's own list of persisted
attributes, and runs the class's validation of the fitted state (shapes, dtypes,
finiteness, probabilities summing to one, positive-definite factors).  A truncated,
corrupted, modified or incompatible file raises ``ValueError`` and says which.

Writes are atomic: the archive is written to a temporary file in the target directory,
flushed to disk and renamed over the target, so a crash leaves either the old file or
the new one, never a half-written one.
"""

import hashlib
import json
import numbers
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "fastem-model"
FORMAT_VERSION = 1
_META = "__meta__"


def atomic_write(path, write):
    """Call ``write(fileobj)`` on a temporary file next to ``path``, then rename it over
    ``path`` (after fsync).  On any error the temporary file is removed and ``path`` is
    left as it was."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastem-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
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


def _checksum(arrays):
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
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


def save(est, path):
    """Write the fitted estimator ``est`` to ``path`` (atomically); returns ``path``."""
    from . import __version__

    est._check_is_fitted()
    arrays, attrs, params, not_saved = {}, {}, {}, []
    for name in est._persisted_attributes():
        if not hasattr(est, name):
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
            "attributes": attrs, "checksum": _checksum(arrays)}
    payload = dict(arrays)
    payload[_META] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    atomic_write(path, lambda fh: np.savez(fh, **payload))
    return path


def _model_classes():
    from ._families import estimator_classes

    return {c.__name__: c for c in estimator_classes().values()}


def load(path):
    """Read a model written by ``save``; validate it; return the fitted estimator."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as archive:
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
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise ValueError(
            f"{path!r} has model format version {version!r}; this fastem reads version "
            f"{FORMAT_VERSION}" + (" (the file was written by a newer fastem: upgrade)."
                                   if newer else "."))
    if meta.get("checksum") != _checksum(files):
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
