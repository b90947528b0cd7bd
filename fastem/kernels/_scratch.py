"""Work arrays a caller lends to kernels for the length of a fit.

An HMM iteration's kernels need arrays as large as their input (the shifted emissions,
the backward variables, ...).  Allocated afresh at every call, glibc returns their
pages to the system when they are freed (they sit at the top of the heap, above its
trim threshold) and the next call faults every page in again: on one sequence of
200,000 steps and 8 states that was about 7 of an iteration's 25 ms.  A ``Scratch``
keeps one buffer per name, grown to the largest size asked for, and hands out views of
it; the caller drops the ``Scratch`` when its fit (or prediction) ends.
"""

import numpy as np


class Scratch:
    """Named reusable work arrays (see the module docstring)."""

    def __init__(self):
        self._buffers = {}

    def empty(self, name, shape, dtype=np.float64):
        """An uninitialised C-contiguous array of ``shape`` and ``dtype``: a view of the
        buffer kept under ``name``, valid until the next ``empty`` of the same name."""
        dtype = np.dtype(dtype)
        size = int(np.prod(shape, dtype=np.int64))
        buf = self._buffers.get((name, dtype))
        if buf is None or buf.shape[0] < size:
            buf = self._buffers[(name, dtype)] = np.empty(max(size, 1), dtype=dtype)
        return buf[:size].reshape(shape)


def scratch_of(scratch):
    """``scratch``, or a new ``Scratch`` (whose buffers live as long as one call)."""
    return Scratch() if scratch is None else scratch
