"""The determinism constants of every backend: the one source (plain Python, so reading
it imports no backend).

Samples are cut into fixed blocks of ``BLOCK_SIZE``; a reduction maps contiguous runs of
blocks onto at most ``MAX_SLOTS`` partial-result slots whose total size stays within
``SLOT_BUDGET_BYTES``, a number that depends on the problem size only; the slots are
added in slot order.  Nothing depends on the thread count, so results are bit-identical
for any ``n_threads``.  The numba kernels read these values; the Cython kernels compile
them from ``cython/_common.pxd``, and the contract tests check that every kernel module
of every backend exposes the same three values.
"""

#: Samples per block. Blocks are fixed by the data size alone, never by the thread count.
BLOCK_SIZE = 256
#: At most this many partial-result slots per reduction (the parallelism of reductions).
MAX_SLOTS = 64
#: Memory budget for all slots of one reduction, in bytes.
SLOT_BUDGET_BYTES = 64 * 2**20
