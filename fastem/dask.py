"""Dask arrays as a source of chunks: fit on a cluster, the same model as in memory.

A fit reads its data only through ``Rows.map`` (``fastem/_stream.py``): "run this
function on every chunk, hand me the small results in chunk order".  ``DaskRows`` is
that interface over the blocks of a ``dask.array.Array``: each pass becomes one task
per block, run on the workers with fastem's own kernels, and the client adds the
returned statistics in block order and runs the M-step.  Only parameters go out and
only statistics (K x D, not N-sized) come back.  Per-row state that a fit keeps
between passes (K-means' labels and bounds, k-means++'s distances) stays on the
workers as persisted blocks.

Bit-for-bit equality with the in-memory fit
    The blocks are re-chunked, when they are not already, to fastem's fixed chunk
    boundaries (``chunk_rows`` rows: ``fastem.config_context(chunk_bytes=...)``), and
    the client adds the per-block results in block order, exactly as the in-memory
    loop adds its chunks.  The fitted model is therefore the in-memory fit of the same
    data under the same ``chunk_bytes``, bit for bit, for any number of workers.
    Sequential steps stay sequential: k-means++'s cumulative sums are a chain of
    tasks, one per block, each continuing its predecessor's running sum.

Workers
    Each task runs the kernels with ``available CPUs / threads of the workers on its
    host`` threads (results do not depend on it), BLAS at one thread, and behind a lock
    under numba's workqueue threading layer (which must not be entered from two
    threads at once).  Before the first fit on a distributed cluster, the workers load
    the kernels one at a time, so that numba compiles them into its cache once instead
    of in every worker process at the same time.

Sample weights are kept by the client (8 bytes a row) and shipped once per fit.
This module imports dask; ``import fastem`` does not import it.
"""

import sys
import threading

import numpy as np

from ._stream import Chunk, Rows, search_step
from ._threads import available_cpus, limit_blas_threads


def is_dask_array(X):
    """True for a ``dask.array.Array``, without importing dask when it is not loaded."""
    module = sys.modules.get("dask.array")
    return module is not None and isinstance(X, module.Array)


# ------------------------------------------------------------------ on the workers
_kernel_lock = threading.Lock()


def _needs_lock():
    """numba's workqueue layer aborts when two threads enter parallel code at once;
    before the first parallel call the layer is not known yet, so that call locks."""
    numba = sys.modules.get("numba")
    if numba is None:
        return False
    try:
        return numba.threading_layer() == "workqueue"
    except ValueError:  # not initialised yet
        return True


def _task_threads(host_threads):
    """Kernel threads for a task: this host's CPUs shared by the worker threads on it."""
    try:
        from distributed import get_worker

        host = get_worker().address.rsplit(":", 1)[0]
    except (ImportError, ValueError):
        return 1  # a local scheduler: its threads share this process's CPUs
    return max(1, available_cpus() // max(1, host_threads.get(host, 1)))


def _chunk_of(start, stop, block, w, state, shift, dtype, host_threads):
    X = np.require(np.asarray(block), dtype=dtype, requirements="C")
    if shift is not None:
        X = X - shift
    w = np.ones(stop - start) if w is None else w
    state = tuple(np.array(s, copy=True) for s in state)  # inputs are never changed
    return Chunk(start, stop, X, w, state, _task_threads(host_threads))


def _call(fn, chunk, args):
    if _needs_lock():
        with _kernel_lock, limit_blas_threads():
            return fn(chunk, *args)
    with limit_blas_threads():
        return fn(chunk, *args)


def _run_chunk(fn, args, start, stop, block, w, state, shift, dtype, host_threads):
    """One task of ``DaskRows.map``: the result, or (the new state, the result)."""
    chunk = _chunk_of(start, stop, block, w, state, shift, dtype, host_threads)
    result = _call(fn, chunk, args)
    return (chunk.state, result) if state else result


def _search_chunk(previous, fn, args, targets, side, start, stop, block, w, state, shift,
                  dtype, host_threads):
    """One link of the cumulative-search chain: continue the running sum over this
    block's piece ``fn(chunk, *args)``."""
    carry, out = previous
    chunk = _chunk_of(start, stop, block, w, state, shift, dtype, host_threads)
    piece = _call(fn, chunk, args)
    out = out.copy()
    carry = search_step(piece, carry, targets, out, start, side)
    return carry, out


def _check_block(check, name, block):
    """The model's validation of one block: (rows, dtype, max |x|)."""
    from ._stream import _span

    checked = check(np.asarray(block), name, False)
    return checked.shape[0], checked.dtype.str, _span(checked)


def _take_rows(block, local):
    return np.asarray(block)[local]


def _warm(backend):
    from ._info import warmup

    warmup((backend,))
    return True


_warmed = set()


def _warm_workers(client, backend):
    """Load (compile, the first time) every kernel on one worker, then on the others."""
    if backend != "numba":
        return
    workers = sorted(client.scheduler_info()["workers"])
    todo = [w for w in workers if (w, backend) not in _warmed]
    for worker in todo:  # one at a time: the first compiles into the cache, the rest load
        client.run(_warm, backend, workers=[worker])
        _warmed.add((worker, backend))


# ------------------------------------------------------------------ on the client
def _client():
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


class BlockState:
    """Per-row state of a Dask fit: one (persisted) block per chunk, on the workers."""

    def __init__(self, blocks, dtype, width):
        self.blocks, self.dtype, self.width = list(blocks), np.dtype(dtype), width


class DaskRows(Rows):
    """``Rows`` whose chunks are the blocks of a Dask array (see the module docstring)."""

    def __init__(self, X, *, n_rows, n_features, dtype, span, weights, backend):
        import dask

        super().__init__(array=None, in_memory=False, n_rows=n_rows, n_features=n_features,
                         dtype=dtype, span=span, weights=weights)
        if X.chunks[0] != tuple(b - a for a, b in self.spans()) or len(X.chunks[1]) != 1:
            X = X.rechunk((self.chunk_rows, n_features))
        self.dask_array = X
        self._blocks = list(X.to_delayed().ravel())
        delayed = dask.delayed
        self._w_blocks = ([None] * len(self._blocks) if weights is None else
                          list(dask.persist(*[delayed(np.ascontiguousarray)(weights[a:b])
                                              for a, b in self.spans()])))
        client = _client()
        self._host_threads = {}
        if client is not None:
            _warm_workers(client, backend)
            for addr, info in client.scheduler_info()["workers"].items():
                host = addr.rsplit(":", 1)[0]
                self._host_threads[host] = self._host_threads.get(host, 0) + info["nthreads"]

    def chunks(self):
        raise TypeError("this step of the fit reads every row in the client process, which a "
                        "fit on a Dask array does not do; use another option (see the error "
                        "raised before this one) or compute the array first")

    def _task_args(self, i, state):
        a, b = self.chunk_bounds(i)
        return (a, b, self._blocks[i], self._w_blocks[i], tuple(s.blocks[i] for s in state),
                self.shift, self.dtype, self._host_threads)

    def chunk_bounds(self, i):
        a = i * self.chunk_rows
        return a, min(a + self.chunk_rows, self.n_rows)

    def map(self, fn, *args, state=(), n_threads=1):
        import dask

        task = dask.delayed(_run_chunk, pure=False)
        tasks = [task(fn, args, *self._task_args(i, state)) for i in range(len(self._blocks))]
        if not state:
            return list(dask.compute(*tasks))
        persisted = dask.persist(*tasks)
        results = dask.compute(*[p[1] for p in persisted])
        for j, s in enumerate(state):
            s.blocks = [p[0][j] for p in persisted]
        return list(results)

    def cumulative_search(self, fn, targets, *args, state=(), side="left"):
        import dask

        targets = np.asarray(targets, dtype=np.float64)
        link = dask.delayed(_search_chunk, pure=False)
        node = (0.0, np.full(targets.shape, -1, dtype=np.intp))
        for i in range(len(self._blocks)):
            node = link(node, fn, args, targets, side, *self._task_args(i, state))
        _, out = dask.compute(node)[0]
        out[out < 0] = self.n_rows
        return out

    def new_state(self, fill, dtype, width=None):
        import dask

        shape = () if width is None else (width,)
        full = dask.delayed(np.full, pure=True)
        return BlockState([full((b - a, *shape), fill, dtype) for a, b in self.spans()],
                          dtype, width)

    def gather(self, state):
        """The state as a lazy Dask array (it stays on the workers)."""
        import dask.array as da

        shape = () if state.width is None else (state.width,)
        return da.concatenate([da.from_delayed(blk, shape=(b - a, *shape), dtype=state.dtype)
                               for blk, (a, b) in zip(state.blocks, self.spans())])

    def state_from(self, array):
        spans = tuple(b - a for a, b in self.spans())
        if array.chunks[0] != spans:
            array = array.rechunk({0: spans})
        width = None if array.ndim == 1 else array.shape[1]
        return BlockState(array.to_delayed().ravel(), array.dtype, width)

    def take(self, indices):
        import dask

        indices = np.asarray(indices, dtype=np.intp)
        out = np.empty((indices.size, self.n_features), dtype=self.dtype)
        block_of = indices // self.chunk_rows
        wanted = np.unique(block_of)
        pick = dask.delayed(_take_rows, pure=True)
        parts = dask.compute(*[pick(self._blocks[i], indices[block_of == i] - i * self.chunk_rows)
                               for i in wanted])
        for i, rows in zip(wanted, parts):
            out[block_of == i] = rows
        return out if self.shift is None else out - self.shift

    def weight_vector(self):
        return np.ones(self.n_rows) if self.weights is None else self.weights


def dask_rows(X, check, *, owner, sample_weight, backend):
    """Validate a Dask array X into ``DaskRows``: ``check(block, name, copy)`` (the
    model's check of one array) runs on every block on the workers, in one pass."""
    import dask

    from ._stream import _weights

    if X.ndim != 2:
        raise ValueError(f"{owner} expects a 2-D Dask array (n_samples, n_features); got "
                         f"{X.ndim} dimensions.")
    if any(np.isnan(c) for c in X.shape):
        raise ValueError(f"{owner} needs a Dask array of known shape; call "
                         "X.compute_chunk_sizes() first.")
    if len(X.chunks[1]) != 1:
        X = X.rechunk({1: -1})
    blocks = X.to_delayed().ravel()
    named = dask.delayed(_check_block, pure=True)
    results = dask.compute(*[named(check, f"block {i} of X", blk)
                             for i, blk in enumerate(blocks)])
    n_rows = sum(r[0] for r in results)
    dtype = np.result_type(*[np.dtype(r[1]) for r in results])
    span = max(r[2] for r in results)
    if isinstance(sample_weight, tuple(_dask_array_types())):
        sample_weight = sample_weight.compute()
    weights = _weights(sample_weight, n_rows, owner)
    return DaskRows(X, n_rows=n_rows, n_features=X.shape[1], dtype=dtype, span=span,
                    weights=weights, backend=backend)


def _dask_array_types():
    module = sys.modules.get("dask.array")
    return () if module is None else (module.Array,)


def map_blocks(method, X, dtype, n_columns=None):
    """``method`` applied lazily to every block of X (a Dask array): one label or value
    per row (``n_columns`` None) or ``n_columns`` per row."""
    if len(X.chunks[1]) != 1:
        X = X.rechunk({1: -1})
    if n_columns is None:
        return X.map_blocks(method, drop_axis=1, dtype=dtype)
    return X.map_blocks(method, chunks=(X.chunks[0], (n_columns,)), dtype=dtype)
