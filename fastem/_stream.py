"""The rows a fit passes over, chunk by chunk: in memory, memory-mapped or streamed.

Every fit visits its data in chunks of a fixed number of rows, ``chunk_rows`` (about
``chunk_bytes`` of data, 64 MiB unless set with ``fastem.config_context``), runs the
kernels on each chunk and adds the chunks' float64 sums in chunk order.  The chunk
boundaries depend only on the number of rows and features, the dtype and
``chunk_bytes`` -- not on where the rows come from -- so a fit gives bit-identical
results on

* an array in memory,
* the same array memory-mapped from a ``.npy`` file (``np.load(path, mmap_mode="r")``),
* ``Chunks(...)``: the same rows arriving as pieces cut anywhere (files of a directory,
  a list of arrays, a function that yields arrays),

and on any thread count.  A data set of one chunk runs as a single kernel call.

Streamed data (a memory map or ``Chunks``) is never copied whole: pieces are re-cut
into fixed chunks through one chunk-sized buffer, and the checks of the in-memory path
(finite values, one width, magnitude, the models' own) run once, in a first pass.  The
discrete mixtures encode each chunk as it is read.  Per-row vectors of the fit itself
remain: K-means' labels (4 bytes a row), k-means++'s distances while seeding (8), and
the transient index draws of "random" / "random_from_data" initializations.
"""

import glob
import os
from typing import NamedTuple

import numpy as np

from ._validation import magnitude_error


class Chunks:
    """Data given in pieces, for fitting data larger than memory.

    ``fit(Chunks(source))`` runs the same algorithm as ``fit`` on the stacked array and
    gives the same model, bit for bit, while holding only a chunk of rows at a time.
    A full-batch fit reads the data once per iteration, so the source must be
    readable again and again.

    Parameters
    ----------
    source : one of
        - a path to a ``.npy`` file (memory-mapped), a directory of ``.npy`` files or a
          glob pattern (the files are read in sorted order);
        - a list or tuple of 2-D arrays (or of ``.npy`` paths), in order;
        - a callable taking no argument that returns a fresh iterable of 2-D arrays
          each time it is called (e.g. reading a database cursor or Parquet row
          groups).

        The topic models (``LatentDirichletAllocation``, ``PLSA``) also take sparse
        pieces: scipy.sparse matrices, or ``.npz`` files written by
        ``scipy.sparse.save_npz`` (a directory's ``.npy`` and ``.npz`` files are read).

        A one-shot iterator (a generator object) cannot be read twice: wrap the code
        that makes it in a function, or use ``partial_fit`` for a true stream.

    Examples
    --------
    >>> import numpy as np, fastem
    >>> parts = [np.random.default_rng(i).normal(size=(500, 3)) for i in range(4)]
    >>> km = fastem.KMeans(3, random_state=0).fit(fastem.Chunks(parts))
    """

    def __init__(self, source):
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if os.path.isdir(path) or (glob.has_magic(path) and not os.path.exists(path)):
                if os.path.isdir(path):
                    files = sorted(glob.glob(os.path.join(path, "*.npy")) +
                                   glob.glob(os.path.join(path, "*.npz")))
                else:
                    files = sorted(glob.glob(path))
                if not files:
                    raise ValueError(f"no .npy or .npz files in {path!r}" if os.path.isdir(path)
                                     else f"no files match {path!r}")
                source = files
            elif not os.path.exists(path):
                raise ValueError(f"data file not found: {path!r}")
            else:
                source = [path]
        if isinstance(source, (list, tuple)):
            if not source:
                raise ValueError("Chunks got an empty list: give at least one array")
            items = list(source)
            self._items = items
            self._open = lambda: (_open_piece(item) for item in items)
            self._paths = [os.fspath(i) if isinstance(i, (str, os.PathLike)) else None
                           for i in items]
        elif callable(source):
            self._open = source
        elif hasattr(source, "__next__"):
            raise TypeError(
                "Chunks needs data it can read more than once (a fit passes over the data "
                "at every iteration), but got a one-shot iterator. Pass a function that "
                "returns a fresh iterator, e.g. Chunks(lambda: read_pieces()), or feed the "
                "pieces to partial_fit.")
        else:
            raise TypeError(
                "Chunks takes a path (.npy file, directory or glob), a list of arrays or a "
                f"function returning an iterable of arrays; got {type(source).__name__}.")

    _paths = ()
    _items = None  #: the list of pieces (None: a function's), which can be read in any order

    def __iter__(self):
        return iter(self._open())

    def describe(self, i):
        """How errors name piece ``i``."""
        path = self._paths[i] if i < len(self._paths) else None
        return f"piece {i} of X" + (f" ({path})" if path else "")


def _open_piece(item):
    """A piece as given, a ``.npy`` file memory-mapped, or a ``.npz`` file of a
    scipy.sparse matrix (``scipy.sparse.save_npz``: the topic models' documents)."""
    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        if path.endswith(".npz"):
            import scipy.sparse as sp

            return sp.load_npz(path)
        return np.load(path, mmap_mode="r", allow_pickle=False)
    return item


def chunk_rows(n_features, dtype, row_bytes=None):
    """Rows per chunk: ``chunk_bytes`` of data (at least one row); ``row_bytes`` overrides
    the dense size of a row (sparse data)."""
    from ._config import get_config

    if row_bytes is None:
        row_bytes = n_features * np.dtype(dtype).itemsize
    return max(1, int(get_config()["chunk_bytes"] // max(row_bytes, 1)))


def _running(v, carry):
    """carry + v[0], (carry + v[0]) + v[1], ...: ``np.cumsum``'s adds, continued."""
    # 0 + v[0] is v[0] itself: no need to prepend a zero carry (and copy v), which
    # took 1.4 of a k-means++ draw's 1.8 ms on 200,000 rows
    return np.cumsum(v) if carry == 0.0 else np.cumsum(np.concatenate([[carry], v]))[1:]


def search_step(v, carry, targets, out, offset, side, total=None):
    """One piece of ``cumulative_search``: the running sum continued over ``v`` (rows
    ``offset`` on), divided by ``total`` if given; every target still unfound (-1 in
    ``out``) that it reaches gets its row index in ``out``.  Returns the new carry."""
    c = _running(v, carry)
    carry = c[-1]
    if total is not None:
        c /= total
    pending = np.flatnonzero(out < 0)
    hit = pending[(c[-1] >= targets[pending]) if side == "left" else
                  (c[-1] > targets[pending])]
    out[hit] = offset + np.searchsorted(c, targets[hit], side=side)
    return carry


def cumulative_search(pieces, targets, side="left", normalize=False):
    """``np.searchsorted(cumsum, targets, side)`` for ``cumsum`` the cumulative sum of the
    concatenated ``pieces()`` (non-negative float64 arrays, in order), bit for bit,
    without an N-long array: each piece's running sum starts from the previous piece's
    last one, which is exactly how ``np.cumsum`` adds.  With ``normalize`` the search is
    over ``cumsum / cumsum[-1]`` (``pieces`` is then called twice)."""
    targets = np.asarray(targets, dtype=np.float64)
    total = None
    if normalize:
        carry = 0.0
        for v in pieces():
            if v.size:
                carry = _running(v, carry)[-1]
        total = carry
    out = np.full(targets.shape, -1, dtype=np.intp)
    carry, offset = 0.0, 0
    for v in pieces():
        if not v.size:
            continue
        carry = search_step(v, carry, targets, out, offset, side, total)
        offset += v.size
    out[out < 0] = offset
    return out


class Chunk(NamedTuple):
    """One chunk of a fit's rows, as ``Rows.map`` hands it to a function."""

    start: int  #: first row (global index)
    stop: int  #: one past the last row
    X: np.ndarray  #: the rows, C-contiguous in the data's dtype, shifted (``Rows.shift``)
    w: np.ndarray  #: their sample weights, float64
    state: tuple  #: slices of the per-row state arrays (may be changed in place)
    n_threads: int  #: threads for the kernels


class Rows:
    """Validated data of a fit, visited in fixed chunks, with the sample weights.

    ``array`` is the data when it is an array (in memory or memory-mapped, then
    ``in_memory`` says which); otherwise the rows come from a ``Chunks``.  ``shift``,
    when set, is subtracted (in the data's dtype) from every streamed chunk as it is
    read: K-means centers in-memory data in place and streamed data this way, with the
    same result.  ``weights`` is None (all ones) or a float64 (n_rows,) array.
    """

    #: The chunks are read on Dask workers (``fastem.dask.DaskRows``), not here.
    distributed = False

    def __init__(self, *, array=None, in_memory=True, pieces=None, n_rows, n_features, dtype,
                 span, weights=None, row_bytes=None):
        self.array, self.in_memory, self._pieces = array, in_memory, pieces
        self.n_rows, self.n_features, self.dtype = int(n_rows), int(n_features), np.dtype(dtype)
        self.span = span
        self.weights = weights
        self.shift = None
        self.chunk_rows = chunk_rows(self.n_features, self.dtype, row_bytes)
        self.total_weight = float(n_rows if weights is None else np.sum(weights))
        self._ones = None
        self._buffer = None

    def copy(self):
        """Rows of the same data that can be centered without touching these: an array in
        memory is copied, anything else is shared (streamed rows shift as they are read)."""
        import copy

        out = copy.copy(self)
        out._buffer = None
        if self.in_memory:
            out.array = self.array.copy()
        return out

    @property
    def shape(self):
        return (self.n_rows, self.n_features)

    @property
    def sparse(self):
        """True when the rows are a CSR matrix in memory (chunks are CSR matrices)."""
        return self.array is not None and not isinstance(self.array, np.ndarray)

    # ------------------------------------------------------------------ reading
    def chunks(self):
        """(start, stop, block) over the rows in fixed chunks; ``block`` is C-contiguous in
        ``dtype`` and must not be kept past the next step (the buffer is reused)."""
        if self.array is not None:
            for start, stop in self.spans():
                yield start, stop, (_csr_rows(self.array, start, stop) if self.sparse else
                                    self._shifted_chunk(self.array[start:stop]))
            return
        start = 0
        for block in _recut(self._read_pieces(), self.chunk_rows, self.n_features, self.dtype):
            stop = start + block.shape[0]
            yield start, stop, self._shifted_chunk(block)
            start = stop
        if start != self.n_rows:
            raise ValueError(f"the data changed while fitting: a pass read {start} rows, the "
                             f"first pass {self.n_rows}")

    def _read_pieces(self):
        for piece in self._pieces:
            yield np.require(np.asarray(piece), dtype=self.dtype, requirements="C")

    def _shifted(self, block):
        return block if self.shift is None else block - self.shift

    def _shifted_chunk(self, block):
        """``_shifted`` into one reused chunk buffer: a fresh 64 MiB array per chunk and
        pass costs more in page faults than the subtraction itself."""
        if self.shift is None:
            return block
        if self._buffer is None:
            self._buffer = np.empty((min(self.chunk_rows, self.n_rows), self.n_features),
                                    dtype=self.dtype)
        return np.subtract(block, self.shift, out=self._buffer[: block.shape[0]])

    def map(self, fn, *args, state=(), n_threads=1):
        """``fn(chunk, *args)`` for every chunk, in chunk order (a generator).

        ``chunk`` is a ``Chunk``: the rows (shifted like ``chunks``), their weights, the
        slices of the per-row ``state`` arrays (made by ``new_state``; ``fn`` may change
        them in place) and the thread count for its kernels.  Every pass of a fit over
        its data goes through here, so that the same ``fn`` runs on the blocks of a Dask
        array on the workers (``fastem/dask.py``); callers add the results in order.
        """
        for a, b, block in self.chunks():
            yield fn(Chunk(a, b, block, self.weight(a, b), tuple(s[a:b] for s in state),
                           n_threads), *args)

    def cumulative_search(self, fn, targets, *args, state=(), side="left"):
        """``cumulative_search`` over the pieces ``fn(chunk, *args)`` (float64 vectors,
        one per chunk): where the running sum of all of them reaches each target."""
        return cumulative_search(lambda: self.map(fn, *args, state=state), targets, side=side)

    def new_state(self, fill, dtype, width=None):
        """A per-row array for ``map`` (``width`` columns, or a vector), set to ``fill``."""
        shape = (self.n_rows,) if width is None else (self.n_rows, width)
        return np.full(shape, fill, dtype=dtype)

    def gather(self, state):
        """A per-row state as one array (in memory it is one already)."""
        return state

    def state_from(self, array):
        """A per-row array (e.g. a fitted ``labels_``) as state for ``map``."""
        return array

    def spans(self):
        """(start, stop) of every chunk, without reading the data."""
        for start in range(0, self.n_rows, self.chunk_rows):
            yield start, min(start + self.chunk_rows, self.n_rows)

    def weight(self, start, stop):
        """The sample weights of rows [start, stop), float64."""
        if self.weights is not None:
            return self.weights[start:stop]
        if self._ones is None or self._ones.shape[0] < stop - start:
            self._ones = np.ones(min(self.chunk_rows, self.n_rows))
        return self._ones[: stop - start]

    def weight_vector(self):
        """All the weights as one (n_rows,) array (a transient for seeding draws)."""
        return np.ones(self.n_rows) if self.weights is None else self.weights

    def take(self, indices):
        """Rows at ``indices`` (any order, repeats allowed), shifted like the chunks."""
        indices = np.asarray(indices, dtype=np.intp)
        if self.sparse:
            return self.array[indices].toarray()  # a few rows of a CSR matrix, as dense rows
        if self.array is not None:
            return np.ascontiguousarray(self._shifted(self.array[indices]))
        out = np.empty((indices.size, self.n_features), dtype=self.dtype)
        order = np.argsort(indices, kind="stable")
        sorted_idx = indices[order]
        for start, stop, block in self.chunks():
            lo, hi = np.searchsorted(sorted_idx, [start, stop])
            out[order[lo:hi]] = block[sorted_idx[lo:hi] - start]
        return out

    def fingerprint(self):
        """What a checkpoint records of the data: its shape, weights and ~1,000 evenly
        spaced rows, hashed (one pass for streamed data)."""
        from ._checkpoint import data_fingerprint

        step = max(1, self.n_rows // 1024)
        sample = self.take(np.arange(0, self.n_rows, step))
        weights = self.weight_vector() if self.weights is not None else np.array([-1.0])
        return data_fingerprint([sample], self.n_rows, weights)

    # ------------------------------------------------------------------ checks
    def check_magnitude(self, name="X", also=None):
        """``check_magnitude`` of the whole data, from the span found when validating."""
        span = self.span
        if also is not None and also.size:
            span = max(span, abs(float(also.max())), abs(float(also.min())))
        total = self.total_weight + (0 if also is None else also.shape[0])
        message = magnitude_error(span, self.n_features, self.dtype, total, name)
        if message:
            raise ValueError(message)


def _csr_rows(X, start, stop):
    """Rows [start, stop) of the CSR matrix X without copying its entries (scipy's row
    slicing copies them): views of data and indices, a rebased copy of indptr."""
    import scipy.sparse as sp

    if start == 0 and stop == X.shape[0]:
        return X
    lo, hi = X.indptr[start], X.indptr[stop]
    return sp.csr_matrix((X.data[lo:hi], X.indices[lo:hi], X.indptr[start:stop + 1] - lo),
                         shape=(stop - start, X.shape[1]))


def _recut(pieces, n, n_features, dtype):
    """Re-cut a stream of row blocks into blocks of exactly ``n`` rows (the last may be
    shorter).  A run of ``n`` rows inside one piece is passed on as a view; rows that
    straddle pieces are gathered in one reused buffer."""
    buf, filled = None, 0
    for piece in pieces:
        pos, m = 0, piece.shape[0]
        while pos < m:
            if filled == 0 and m - pos >= n:
                yield piece[pos:pos + n]
                pos += n
                continue
            if buf is None:
                buf = np.empty((n, n_features), dtype=dtype)
            take = min(n - filled, m - pos)
            buf[filled:filled + take] = piece[pos:pos + take]
            filled, pos = filled + take, pos + take
            if filled == n:
                yield buf
                filled = 0
    if filled:
        yield buf[:filled]


def _span(X):
    """max |x| over X, in blocks (no |X| temporary); a sparse X by its stored values."""
    from ._validation import row_blocks

    if not isinstance(X, np.ndarray):
        X = X.data.reshape(1, -1) if X.data.size else np.zeros((1, 1))
    span = 0.0
    for a, b in row_blocks(*X.shape, elements=2**20):
        block = X[a:b]
        span = max(span, abs(float(block.max())), abs(float(block.min())))
    return span


def rows_from(X, check, *, owner, copy=False, sample_weight=None, mapped=None):
    """Validate X (an array, a memory map or ``Chunks``) into ``Rows``.

    ``check(array, name, copy)`` is the model's check of one array (it returns the array
    in float32/float64).  Streamed pieces are checked one by one in a first pass; the
    data take the common dtype of the checked pieces (float32 only when every piece is).
    ``mapped`` says whether an array X came from a memory map (by default: whether it
    is one), which is then never copied whole.
    """
    if not isinstance(X, Chunks):
        streamed = isinstance(X, np.memmap) if mapped is None else mapped
        arr = check(X, "X", copy and not streamed)
        weights = _weights(sample_weight, arr.shape[0], owner)
        row_bytes = None
        if not isinstance(arr, np.ndarray):  # a CSR matrix: chunks by stored bytes
            row_bytes = (arr.data.nbytes + arr.indices.nbytes) / max(1, arr.shape[0])
        return Rows(array=arr, in_memory=not streamed, n_rows=arr.shape[0],
                    n_features=arr.shape[1], dtype=arr.dtype, span=_span(arr), weights=weights,
                    row_bytes=row_bytes)
    span = 0.0

    def dense(i, piece):
        nonlocal span
        if not isinstance(piece, np.ndarray):
            raise TypeError(f"{X.describe(i)} is a {type(piece).__name__}: Chunks takes dense "
                            "arrays (fit a sparse matrix whole, in memory).")
        span = max(span, _span(piece))

    sizes, n_features, dtype = survey_pieces(X, check, dense)
    n_rows = sum(sizes)
    weights = _weights(sample_weight, n_rows, owner)
    return Rows(pieces=X, in_memory=False, n_rows=n_rows, n_features=n_features,
                dtype=dtype, span=span, weights=weights)


def survey_pieces(chunks, check, each=None):
    """The first pass over ``Chunks``: every piece through ``check(piece, name, copy)``
    (the model's check of one array) and ``each(i, checked piece)``; returns (the
    pieces' row counts, their common width, their common dtype: float32 only when every
    piece is)."""
    sizes, width, dtypes = [], None, set()
    for i, piece in enumerate(chunks):
        piece = check(piece, chunks.describe(i), False)
        if width is None:
            width = piece.shape[1]
        elif piece.shape[1] != width:
            raise ValueError(f"{chunks.describe(i)} has {piece.shape[1]} columns but the first "
                             f"has {width}; every piece needs the same columns.")
        if each is not None:
            each(i, piece)
        sizes.append(piece.shape[0])
        dtypes.add(piece.dtype)
    if width is None:
        raise ValueError("X (Chunks) yielded no data.")
    return sizes, width, np.result_type(*dtypes)


def _weights(sample_weight, n_rows, owner):
    from ._validation import check_sample_weight

    return None if sample_weight is None else check_sample_weight(sample_weight, n_rows,
                                                                  owner=owner)

