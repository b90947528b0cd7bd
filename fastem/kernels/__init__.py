"""Kernel backends.

Every backend (``reference`` = numpy, ``numba``, ``cython``) has one module per model
family with the same kernel names and positional signatures: inputs, then output
buffers allocated by the caller, then ``n_threads``.  The numpy reference is the
specification: every other backend is tested against it.
"""
