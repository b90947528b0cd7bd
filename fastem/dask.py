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
Hidden Markov models take a Dask array of sequences the same way (``DaskSequences``, at
the end: its blocks are runs of whole sequences, or chains of blocks of a long one).
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


#: Marks a state block held inside another task's result: (_HELD, result, path), the
#: block being ``_pick(result, path)``.
_HELD = "fastem-held-state"


def _pick(result, path):
    for i in path:
        result = result[i]
    return result


def _state_block(s):
    return _pick(s[1], s[2]) if isinstance(s, tuple) and s and s[0] == _HELD else s


_ones = np.ones(0)


def _unit_weights(n):
    """n unit weights, as a read-only view of one vector the worker keeps (a fresh one
    per task cost milliseconds on million-row blocks)."""
    global _ones
    if _ones.shape[0] < n:
        _ones = np.ones(n)
        _ones.flags.writeable = False
    return _ones[:n]


def _chunk_of(start, stop, block, w, state, shift, dtype, host_threads):
    X = np.require(np.asarray(block), dtype=dtype, requirements="C")
    if shift is not None:
        X = X - shift
    w = _unit_weights(stop - start) if w is None else w
    state = tuple(np.array(_state_block(s), copy=True) for s in state)  # inputs stay as they are
    return Chunk(start, stop, X, w, state, _task_threads(host_threads))


def _shifted_block(block, shift, dtype):
    """A block minus ``shift`` in the data's dtype (``Rows.shift``), made once per fit."""
    return np.require(np.asarray(block), dtype=dtype, requirements="C") - shift


def _locked(fn, *args):
    """``fn(*args)`` with BLAS at one thread, behind the kernel lock where numba needs it."""
    if _needs_lock():
        with _kernel_lock, limit_blas_threads():
            return fn(*args)
    with limit_blas_threads():
        return fn(*args)


def _call(fn, chunk, args):
    return _locked(fn, chunk, *args)


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
#: dask's names of its local schedulers: set in dask's config, they win over a client
_LOCAL = {"sync", "synchronous", "single-threaded", "threads", "threading", "processes",
          "multiprocessing"}


def _client():
    """The distributed client the fit runs on, or None for dask's local schedulers."""
    import dask

    if dask.config.get("scheduler", None) in _LOCAL:
        return None
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def _run_group(calls):
    """The tasks of the blocks one worker holds, as one task, in block order: a task
    costs the scheduler milliseconds here, a block's kernels about as much.  BLAS is
    limited once for them all (0.75 ms a time on a worker here)."""
    with limit_blas_threads():
        return [f(*a) for f, *a in calls]


def _results_of(pairs):
    return [p[1] for p in pairs]


class _Local:
    """Runs the tasks with dask's local scheduler (threads, processes or synchronous): the
    per-row state then lives in this process, as plain arrays."""

    def __init__(self, blocks):
        self.blocks = blocks

    def run(self, calls):
        import dask

        return list(dask.compute(*[dask.delayed(f, pure=False)(*a) for f, *a in calls]))

    run_blocks = run

    def shifted(self, shift, dtype):
        return None  # the tasks shift their block as they read it

    def run_stateful(self, calls, n_state):
        pairs = self.run(calls)
        return [p[1] for p in pairs], [[p[0][j] for p in pairs] for j in range(n_state)]

    def chain(self, fn, first, calls):
        import dask

        node = first
        for args in calls:
            node = dask.delayed(fn, pure=False)(node, *args)
        return dask.compute(node)[0]

    def full(self, shape, fill, dtype):
        return np.full(shape, fill, dtype=dtype)

    def to_array(self, parts, shapes, dtype):
        import dask.array as da

        return da.concatenate([da.from_array(p, chunks=p.shape) for p in parts])

    def from_array(self, array):
        import dask

        return list(dask.compute(*array.to_delayed().ravel()))


class _Distributed:
    """Runs the tasks on a ``distributed`` cluster as futures: the data's blocks and the
    per-row state stay on the workers, held for as long as the fit holds the futures."""

    def __init__(self, client, blocks):
        from distributed import wait

        self.client = client
        self.blocks = client.compute(list(blocks))  # X's blocks kept on the workers
        wait(self.blocks)
        # where each block is: a block's tasks run there (X is their largest input)
        where = client.who_has(self.blocks)
        self.home = [(where.get(b.key) or [None])[0] for b in self.blocks]

    def run(self, calls):
        return self.client.gather([self.client.submit(f, *a, pure=False) for f, *a in calls])

    def shifted(self, shift, dtype):
        """X's blocks minus ``shift``, kept on the workers that hold the blocks: made once
        instead of in every task (a copy of the block each pass, half of a K-means
        task's time)."""
        from distributed import wait

        out = [self._on(home, _shifted_block, b, shift, dtype)
               for b, home in zip(self.blocks, self.home)]
        wait(out)
        return out

    def _on(self, home, f, *args):
        """A task placed where its blocks are (by hint only: were a block elsewhere, it
        would be fetched, never waited for)."""
        return self.client.submit(f, *args, pure=False, allow_other_workers=True,
                                  workers=None if home is None else [home])

    def _by_worker(self, calls):
        """One task per worker for ``calls`` (one per block): [(home, block indices,
        the future of their results)]."""
        groups = {}
        for i, home in enumerate(self.home):
            groups.setdefault(home, []).append(i)
        return [(home, idx, self._on(home, _run_group, [calls[i] for i in idx]))
                for home, idx in groups.items()]

    def _gather_groups(self, groups, n):
        results = [None] * n
        for (_, idx, _), part in zip(groups, self.client.gather([f for *_, f in groups])):
            for i, r in zip(idx, part):
                results[i] = r
        return results

    def run_blocks(self, calls):
        return self._gather_groups(self._by_worker(calls), len(calls))

    def run_stateful(self, calls, n_state):
        # The new state stays inside each worker's task result, on that worker, where
        # the next pass reads it; one small task per worker brings back the results.
        groups = self._by_worker(calls)
        held = [None] * len(calls)
        for _, idx, f in groups:
            for pos, i in enumerate(idx):
                held[i] = (f, pos)
        collect = [(home, idx, self._on(home, _results_of, f)) for home, idx, f in groups]
        return (self._gather_groups(collect, len(calls)),
                [[(_HELD, f, (pos, 0, j)) for f, pos in held] for j in range(n_state)])

    def chain(self, fn, first, calls):
        node = first
        for args in calls:
            node = self.client.submit(fn, node, *args, pure=False)
        return node.result()

    def full(self, shape, fill, dtype):
        return self.client.submit(np.full, shape, fill, dtype, pure=False)

    def to_array(self, parts, shapes, dtype):
        import dask
        import dask.array as da

        def lazy(p):
            return (dask.delayed(_pick)(p[1], p[2]) if isinstance(p, tuple) else
                    dask.delayed(p))

        return da.concatenate([da.from_delayed(lazy(p), shape=s, dtype=dtype)
                               for p, s in zip(parts, shapes)])

    def from_array(self, array):
        return self.client.compute(list(array.to_delayed().ravel()))


def _runner(blocks, backend):
    """(the runner of tasks on ``blocks``: ``_Local`` or ``_Distributed``, the worker
    threads of each host), on the current client if there is one."""
    client = _client()
    if client is None:
        return _Local(list(blocks)), {}
    _warm_workers(client, backend)
    host_threads = {}
    for addr, info in client.scheduler_info()["workers"].items():
        host = addr.rsplit(":", 1)[0]
        host_threads[host] = host_threads.get(host, 0) + info["nthreads"]
    return _Distributed(client, blocks), host_threads


class BlockState:
    """Per-row state of a Dask fit: one block per chunk (futures on the workers, or arrays
    here under a local scheduler)."""

    def __init__(self, blocks, dtype, width):
        self.blocks, self.dtype, self.width = list(blocks), np.dtype(dtype), width


class DaskRows(Rows):
    """``Rows`` whose chunks are the blocks of a Dask array (see the module docstring)."""

    distributed = True
    _run = None

    def __init__(self, X, *, n_rows, n_features, dtype, span, weights, backend):
        super().__init__(array=None, in_memory=False, n_rows=n_rows, n_features=n_features,
                         dtype=dtype, span=span, weights=weights)
        if X.chunks[0] != tuple(b - a for a, b in self.spans()) or len(X.chunks[1]) != 1:
            X = X.rechunk((self.chunk_rows, n_features))
        self.dask_array = X
        blocks = X.to_delayed().ravel()
        self._run, self._host_threads = _runner(blocks, backend)
        self._blocks = self._run.blocks
        self._w_blocks = ([None] * len(blocks) if weights is None else
                          [np.ascontiguousarray(weights[a:b]) for a, b in self.spans()])
        if weights is not None and isinstance(self._run, _Distributed):
            self._w_blocks = self._run.client.scatter(self._w_blocks)

    def chunks(self):
        raise TypeError("this step of the fit reads every row in the client process, which a "
                        "fit on a Dask array does not do; use another option (see the error "
                        "raised before this one) or compute the array first")

    @property
    def shift(self):
        return self._shift

    @shift.setter
    def shift(self, shift):
        """Set: the blocks minus ``shift`` are made on the workers once, when the scheduler
        can hold them (else each task shifts its block); None: the data's own blocks."""
        self._shift, self._task_shift = shift, shift
        if self._run is None:
            return
        self._blocks = self._run.blocks
        if shift is not None:
            shifted = self._run.shifted(shift, self.dtype)
            if shifted is not None:
                self._blocks, self._task_shift = shifted, None

    def _task_args(self, i, state):
        a, b = self.chunk_bounds(i)
        return (a, b, self._blocks[i], self._w_blocks[i], tuple(s.blocks[i] for s in state),
                self._task_shift, self.dtype, self._host_threads)

    def chunk_bounds(self, i):
        a = i * self.chunk_rows
        return a, min(a + self.chunk_rows, self.n_rows)

    def map(self, fn, *args, state=(), n_threads=1):
        calls = [(_run_chunk, fn, args, *self._task_args(i, state))
                 for i in range(len(self._blocks))]
        if not state:
            return self._run.run_blocks(calls)
        results, blocks = self._run.run_stateful(calls, len(state))
        for s, b in zip(state, blocks):
            s.blocks = b
        return results

    def cumulative_search(self, fn, targets, *args, state=(), side="left"):
        targets = np.asarray(targets, dtype=np.float64)
        first = (0.0, np.full(targets.shape, -1, dtype=np.intp))
        calls = [(fn, args, targets, side, *self._task_args(i, state))
                 for i in range(len(self._blocks))]
        _, out = self._run.chain(_search_chunk, first, calls)
        out[out < 0] = self.n_rows
        return out

    def new_state(self, fill, dtype, width=None):
        shape = () if width is None else (width,)
        return BlockState([self._run.full((b - a, *shape), fill, dtype) for a, b in self.spans()],
                          dtype, width)

    def gather(self, state):
        """The state as a lazy Dask array (on the workers, when they hold it)."""
        shape = () if state.width is None else (state.width,)
        return self._run.to_array(state.blocks, [(b - a, *shape) for a, b in self.spans()],
                                  state.dtype)

    def state_from(self, array):
        spans = tuple(b - a for a, b in self.spans())
        if array.chunks[0] != spans:
            array = array.rechunk({0: spans})
        width = None if array.ndim == 1 else array.shape[1]
        return BlockState(self._run.from_array(array), array.dtype, width)

    def take(self, indices):
        indices = np.asarray(indices, dtype=np.intp)
        out = np.empty((indices.size, self.n_features), dtype=self.dtype)
        block_of = indices // self.chunk_rows
        wanted = np.unique(block_of)
        parts = self._run.run([(_take_rows, self._blocks[i],
                                indices[block_of == i] - i * self.chunk_rows) for i in wanted])
        for i, rows in zip(wanted, parts):
            out[block_of == i] = np.asarray(rows, dtype=self.dtype)
        return out if self._task_shift is None else out - self._task_shift


def dask_rows(X, check, *, owner, sample_weight, backend):
    """Validate a Dask array X into ``DaskRows``: ``check(block, name, copy)`` (the
    model's check of one array) runs on every block on the workers, in one pass."""
    from ._stream import _weights

    X, results = _checked_blocks(X, check, owner)
    n_rows = sum(r[0] for r in results)
    dtype = np.result_type(*[np.dtype(r[1]) for r in results])
    span = max(r[2] for r in results)
    if is_dask_array(sample_weight):
        sample_weight = sample_weight.compute()
    weights = _weights(sample_weight, n_rows, owner)
    return DaskRows(X, n_rows=n_rows, n_features=X.shape[1], dtype=dtype, span=span,
                    weights=weights, backend=backend)


def _checked_blocks(X, check, owner, summary=_check_block):
    """(X with every row in one block, ``summary(check, name, block)`` of each block:
    ``_check_block`` by default), the checks run on the workers in one pass."""
    import dask

    if X.ndim != 2:
        raise ValueError(f"{owner} expects a 2-D Dask array (n_samples, n_features); got "
                         f"{X.ndim} dimensions.")
    if any(np.isnan(c) for c in X.shape):
        raise ValueError(f"{owner} needs a Dask array of known shape; call "
                         "X.compute_chunk_sizes() first.")
    X = _whole_rows(X)
    named = dask.delayed(summary, pure=True)
    return X, dask.compute(*[named(check, f"block {i} of X", blk)
                             for i, blk in enumerate(X.to_delayed().ravel())])


def _whole_rows(X):
    """X with every row in one block (a block spans all the columns)."""
    return X if len(X.chunks[1]) == 1 else X.rechunk({1: -1})


def _blocks_and_weights(X, sample_weight):
    """(block, its rows' sample weights or None) over the row blocks of X, in order: the
    blocks as delayed arrays, the weights as slices of ``sample_weight``."""
    X = _whole_rows(X)
    if sample_weight is not None and not is_dask_array(sample_weight):
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        if sample_weight.shape != (X.shape[0],):
            raise ValueError(f"sample_weight has shape {sample_weight.shape}, expected "
                             f"({X.shape[0]},).")
    bounds = np.cumsum((0,) + X.chunks[0])
    for block, lo, hi in zip(X.to_delayed().ravel(), bounds[:-1], bounds[1:]):
        yield block, None if sample_weight is None else sample_weight[lo:hi]


def map_blocks(method, X, dtype, n_columns=None):
    """``method`` applied lazily to every block of X (a Dask array): one label or value
    per row (``n_columns`` None) or ``n_columns`` per row."""
    X = _whole_rows(X)
    if n_columns is None:
        return X.map_blocks(method, drop_axis=1, dtype=dtype)
    return X.map_blocks(method, chunks=(X.chunks[0], (n_columns,)), dtype=dtype)


def sum_over_blocks(method, X, sample_weight=None):
    """``method(block[, sample_weight=w])`` (a float per block) summed over the blocks of
    X in block order, each computed on the workers."""
    import dask

    parts = [dask.delayed(method)(b) if w is None else dask.delayed(method)(b, sample_weight=w)
             for b, w in _blocks_and_weights(X, sample_weight)]
    return float(sum(dask.compute(*parts)))


def partial_fit_blocks(est, X, sample_weight=None):
    """``est.partial_fit`` on every row block of the Dask array X, in order: each block is
    one batch, computed when its turn comes (one block in this process at a time)."""
    for block, w in _blocks_and_weights(X, sample_weight):
        if is_dask_array(w):
            w = w.compute()
        est.partial_fit(np.asarray(block.compute()), sample_weight=w)
    return est


# ------------------------------------------------------------------ hidden Markov models
# An HMM fit's unit of work is a piece of its sequences (``fastem._hmm.Sequences``): a
# run of whole sequences, or one block of a sequence too long to take whole.  The Dask
# array is re-chunked to those pieces, so each block is one piece: the runs are summarized
# as independent tasks, a long sequence's blocks as two chains of tasks (the forward pass
# over them, then the backward pass, last block first), each link carrying the K-vector
# across the boundary.  The client adds the shares in the order the in-memory loop does.

def _hmm_task(method, model, dtype, host_threads, block, *args):
    """``model.<method>(block, *args)`` on a worker, with this host's share of threads (a
    shallow copy of the model carries them: tasks of a local scheduler share it)."""
    import copy

    model = copy.copy(model)
    model._runtime = (model._runtime[0], _task_threads(host_threads))
    X = np.require(np.asarray(block), dtype=dtype, requirements="C")
    return _locked(getattr(model, method), X, *args)


def _forward_link(carry, model, dtype, host_threads, block):
    """One block of the forward chain: carry = (log P so far, the blocks' starts, the
    next start)."""
    log_p, starts, log_start = carry
    lp, following_start = _hmm_task("_block_forward", model, dtype, host_threads, block,
                                    log_start)
    return log_p + lp, starts + [log_start], following_start


def _backward_link(carry, model, dtype, host_threads, block, log_start, first):
    """One block of the backward chain: carry = (the next block's ``following``, the
    shares so far, last block first)."""
    following, shares = carry
    share, following = _hmm_task("_block_summary", model, dtype, host_threads, block,
                                 log_start, following, first)
    return following, shares + [share]


class DaskStackedRows:
    """The rows of a Dask array as one read-only array: rows [a:b] computed into this
    process.  The passes of an HMM fit outside its EM iterations (the start's
    statistics, a re-seed's search, inference) read X through it, a block of rows at a
    time."""

    ndim = 2

    def __init__(self, X, n_rows, dtype):
        self.dask_array, self.shape, self.dtype = X, (int(n_rows), X.shape[1]), np.dtype(dtype)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        a, b, _ = key.indices(self.shape[0])
        block = self.dask_array[a:max(a, b)].compute()
        return np.require(np.asarray(block), dtype=self.dtype, requirements="C")


def dask_sequences(model, X, lengths, reset):
    """Validate a Dask array X of sequences for the HMM ``model`` into ``DaskSequences``:
    the model's check runs on every block on the workers, in one pass."""
    owner = type(model).__name__

    def check(a, name, copy):
        return model._check_input(a, owner=owner, copy=copy, name=name)

    X, results = _checked_blocks(X, check, owner)
    dtype = np.result_type(*[np.dtype(r[1]) for r in results])
    model._check_streamed_features(X.shape[1], reset)
    from ._dispatch import resolve_backend

    return DaskSequences(X, lengths, model._row_width, dtype, sum(r[0] for r in results),
                         resolve_backend(model.backend, model._kernel_family))


class DaskSequences:
    """``fastem._hmm.Sequences`` of a Dask array, whose EM iterations run on the workers
    (``summaries``); everything else reads the rows through ``DaskStackedRows``."""

    distributed = True

    def __init__(self, X, lengths, n_states, dtype, n_rows, backend):
        from ._hmm import Sequences

        self._seq = Sequences(DaskStackedRows(X, n_rows, dtype), lengths, n_states)
        self._dask, self._backend, self._run = X, backend, None

    def __getattr__(self, name):  # X, offsets, n_rows, pieces(), fingerprint(), ...
        if name.startswith("__") or name == "_seq":
            raise AttributeError(name)
        return getattr(self._seq, name)

    def _start(self):
        """Re-chunk X to the pieces and start the runner, at the first pass that needs
        the workers (inference reads through the client and never does)."""
        self._layout, sizes = [], []
        for lo, hi, offsets, blocks in self._seq.layout():
            if blocks is None:
                self._layout.append((len(sizes), offsets))
                sizes.append(hi - lo)
            else:
                self._layout.append(list(range(len(sizes), len(sizes) + len(blocks))))
                sizes.extend(b - a for a, b in blocks)
        X = self._dask
        if X.chunks[0] != tuple(sizes):
            X = X.rechunk({0: tuple(sizes)})
        self._run, self._host_threads = _runner(X.to_delayed().ravel(), self._backend)

    def summaries(self, model):
        """The shares of ``BaseHMM._summarize`` of every piece, in the in-memory order."""
        if self._run is None:
            self._start()
        run, blocks, common = self._run, self._run.blocks, (model, self.dtype, self._host_threads)
        runs = [(i, item) for i, item in enumerate(self._layout) if isinstance(item, tuple)]
        done = dict(zip([i for i, _ in runs], run.run(
            [(_hmm_task, "_group_summary", *common, blocks[b], offsets) for _, (b, offsets)
             in runs])))
        out = []
        for i, item in enumerate(self._layout):
            if i in done:
                out.append(done[i])
                continue
            log_p, starts, _ = run.chain(_forward_link, (0.0, [], model._log_start_trans()[0]),
                                         [(*common, blocks[b]) for b in item])
            order = list(range(len(item) - 1, -1, -1))
            _, shares = run.chain(_backward_link, (None, []),
                                  [(*common, blocks[item[j]], starts[j], j == 0) for j in order])
            out.extend((log_p if j == 0 else 0.0, *share[1:]) for j, share in zip(order, shares))
        return out


# ------------------------------------------------------------------ topic models
# A topic model's unit of work is a chunk of documents (``fastem._topics.Corpus``): the
# Dask array is re-chunked to those chunks, so each block is one chunk, kept on the
# workers for the fit; a pass is one task per block, the model and the pass's arguments
# (the topics) sent once, and the client adds the results in block order, one at a
# time, as the in-memory loop does.

def _document_block(check, name, block):
    """The model's validation of one block of documents: (documents, dtype)."""
    checked = check(block, name, False)
    return checked.shape[0], checked.dtype.str


def _corpus_task(model, method, args, block, start, dtype, host_threads, *extra):
    """``model.<method>(chunk, *args, *extra)`` on a worker for the block of documents
    starting at ``start``, with this host's share of threads."""
    import copy

    from ._topics import doc_chunk

    model = copy.copy(model)
    model._runtime = (model._runtime[0], _task_threads(host_threads))
    return _locked(getattr(model, method), doc_chunk(start, block, dtype), *args, *extra)


def dask_corpus(model, X, reset):
    """Validate a Dask array X of documents for the topic ``model`` into a
    ``DaskCorpus``: the model's check runs on every block on the workers, in one pass."""
    from ._dispatch import resolve_backend

    owner = type(model).__name__

    def check(a, name, copy):
        return model._check_input(a, owner=owner, copy=copy, name=name)

    X, results = _checked_blocks(X, check, owner, summary=_document_block)
    model._check_streamed_features(X.shape[1], reset)
    dtype = model._corpus_dtype(np.result_type(*[np.dtype(r[1]) for r in results]), reset)
    return DaskCorpus(X, check, n_docs=sum(r[0] for r in results), dtype=dtype,
                      step=model._chunk_docs(),
                      backend=resolve_backend(model.backend, model._kernel_family))


class DaskCorpus:
    """``fastem._topics.Corpus`` of a Dask array: passes (``map``) run on the workers,
    one task per chunk; mini-batches (``batches``) and a read of every chunk
    (``chunks``) bring the blocks to the client one at a time."""

    distributed = True

    def __init__(self, X, check, *, n_docs, dtype, step, backend):
        from ._topics import Corpus

        self._local = Corpus(self._blocks_here, n_docs=n_docs, n_words=X.shape[1],
                             dtype=dtype, step=step)
        sizes = tuple(b - a for a, b in self._local.spans())
        self._dask = X if X.chunks[0] == sizes else X.rechunk({0: sizes})
        self._check, self._backend, self._run = check, backend, None

    def __getattr__(self, name):  # n_docs, n_words, dtype, step, shape, spans(), ...
        if name.startswith("__") or name == "_local":
            raise AttributeError(name)
        return getattr(self._local, name)

    def _blocks_here(self):
        for i, block in enumerate(self._dask.to_delayed().ravel()):
            yield self._check(block.compute(), f"block {i} of X", False)

    def chunks(self):
        return self._local.chunks()

    def batches(self, size):
        return self._local.batches(size)

    def map(self, model, method, args=(), per_chunk=None):
        """``Corpus.map`` on the workers: the results in chunk order, one at a time."""
        if self._run is None:  # the blocks go to the workers at the first pass
            self._run, self._host_threads = _runner(self._dask.to_delayed().ravel(),
                                                    self._backend)
        spans = list(self._local.spans())
        extra = [per_chunk(i, a, b) if per_chunk else () for i, (a, b) in enumerate(spans)]
        common = (model, method, args)
        if isinstance(self._run, _Distributed):
            client = self._run.client
            model_f, args_f = client.scatter([model, args], broadcast=True, hash=False)
            futures = [self._run._on(home, _corpus_task, model_f, method, args_f, block, a,
                                     self.dtype, self._host_threads, *x)
                       for home, block, (a, _), x in zip(self._run.home, self._run.blocks,
                                                        spans, extra)]
            for i in range(len(futures)):
                result, futures[i] = futures[i].result(), None  # held until added
                yield result
            return
        import dask

        wave = max(2, available_cpus())  # local threads: a few chunks' results at a time
        for lo in range(0, len(spans), wave):
            yield from dask.compute(*[
                dask.delayed(_corpus_task, pure=False)(*common, self._run.blocks[i],
                                                       spans[i][0], self.dtype, {}, *extra[i])
                for i in range(lo, min(lo + wave, len(spans)))])
