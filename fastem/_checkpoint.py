"""Checkpoints of a mixture fit: resume a killed job where it stopped.

A checkpoint is written (atomically, in the model-file format's style: arrays in a
``.npz`` plus JSON metadata, no pickle) after an EM iteration's M-step, every
``checkpoint_every`` iterations and/or every ``checkpoint_seconds`` seconds.  It holds
everything the rest of the fit depends on: the current parameters, the iteration and
initialization counters, the lower-bound history, the best run so far (with several
initializations) and the random state that the remaining initializations will draw
from.  The kernels are deterministic, so a fit resumed from it ends with exactly the
model an uninterrupted fit gives.

A checkpoint records the model class, its parameters and a fingerprint of the data
(shape, the sample weights, and a sample of about a thousand evenly spaced rows); a
restart with anything different refuses to resume rather than mix two fits.  The
file is removed when the fit completes.
"""

import hashlib
import json
import os
import time

import numpy as np

from ._persist import _jsonable, atomic_write

KIND = "fastem-checkpoint"
VERSION = 1


def data_fingerprint(arrays, n_samples, sample_weight):
    """Shape, weights and ~1,000 evenly spaced rows of each array, hashed."""
    h = hashlib.sha256()
    step = max(1, n_samples // 1024)
    for a in arrays:
        h.update(np.ascontiguousarray(a[::step]).tobytes())
    h.update(np.ascontiguousarray(sample_weight).tobytes())
    return f"{n_samples}:{h.hexdigest()}"


def _params(est):
    out = {}
    for name, value in est.get_params().items():
        try:
            out[name] = _jsonable(value)
        except TypeError:
            out[name] = repr(type(value))
    return out


class Interrupted(BaseException):
    """A fit stopped on request after writing its checkpoint (``request_stop``): rerun it
    with the same checkpoint path to resume.  A BaseException, like KeyboardInterrupt,
    so that no ``except Exception`` swallows it."""


_stop_requested = False


def request_stop():
    """Ask the running fit to write its checkpoint at the end of this iteration and stop
    with ``Interrupted`` (safe to call from a signal handler: it only sets a flag)."""
    global _stop_requested
    _stop_requested = True


def _clear_stop():
    global _stop_requested
    _stop_requested = False


class Checkpointer:
    """Writes and reads the checkpoint of one fit (a no-op without a path)."""

    def __init__(self, est, data, path, every=10, seconds=None):
        self.path = None if path is None else os.fspath(path)
        if self.path is None:
            return
        if not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"checkpoint_every must be an int >= 1; got {every!r}")
        if seconds is not None and not seconds > 0:
            raise ValueError(f"checkpoint_seconds must be None or > 0; got {seconds!r}")
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
            raise ValueError(f"cannot write checkpoints to {self.path!r}: {directory!r} is not "
                             "a writable directory")
        self.est, self.every, self.seconds = est, int(every), seconds
        self.fingerprint = est._data_fingerprint(data)
        self.last = time.monotonic()

    def resume(self, random_state):
        """(state dict, arrays dict) of an existing checkpoint of this fit, with
        ``random_state`` restored to where it was; None when there is none."""
        if self.path is None or not os.path.exists(self.path):
            return None
        try:
            with np.load(self.path, allow_pickle=False) as z:
                files = {k: z[k] for k in z.files}
            meta = json.loads(files.pop("__meta__").tobytes().decode("utf-8"))
        except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
            raise ValueError(f"checkpoint {self.path!r} is unreadable ({exc}); delete it to "
                             "start the fit afresh") from exc
        expected = {"kind": KIND, "version": VERSION, "model": type(self.est).__name__,
                    "params": _params(self.est), "data": self.fingerprint}
        for key, value in expected.items():
            if meta.get(key) != value:
                raise ValueError(
                    f"checkpoint {self.path!r} was written by a different fit (its {key} "
                    "differs): delete it, or give this fit another checkpoint path")
        rs = meta["random_state"]
        random_state.set_state((rs["name"], files.pop("__rng_keys__"), rs["pos"],
                                rs["has_gauss"], rs["cached_gaussian"]))
        return meta["state"], files

    def maybe_save(self, n_iter, state, arrays, random_state):
        """Write ``state`` (JSON-able) and ``arrays`` if a checkpoint is due after
        iteration ``n_iter``.  ``arrays`` may be a function returning them (called only
        when a checkpoint is written)."""
        if self.path is None:
            return
        due = _stop_requested or n_iter % self.every == 0 or (
            self.seconds is not None and time.monotonic() - self.last >= self.seconds)
        if not due:
            return
        arrays = dict(arrays() if callable(arrays) else arrays)
        name, keys, pos, has_gauss, cached = random_state.get_state()
        arrays["__rng_keys__"] = keys
        meta = {"kind": KIND, "version": VERSION, "model": type(self.est).__name__,
                "params": _params(self.est), "data": self.fingerprint, "state": state,
                "random_state": {"name": name, "pos": int(pos), "has_gauss": int(has_gauss),
                                 "cached_gaussian": float(cached)}}
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        atomic_write(self.path, lambda fh: np.savez(fh, **arrays))
        self.last = time.monotonic()
        if _stop_requested:
            _clear_stop()  # served: a later fit in this process runs normally
            raise Interrupted(f"stopped after iteration {n_iter}; checkpoint {self.path!r}")

    def finish(self):
        """The fit completed: the checkpoint has served its purpose."""
        if self.path is not None and os.path.exists(self.path):
            os.remove(self.path)
