"""What the topic models share (``lda.py``, ``plsa.py``): documents as word counts,
visited in fixed chunks of CSR rows, wherever they come from.

A fit passes over its documents in chunks of a fixed number of documents
(``_CHUNK_VALUES // n_components``, so that a chunk's documents x topics arrays stay
about 8 MiB), each chunk one call of the ``topics`` kernels, and adds the chunks'
float64 results in chunk order.  The boundaries depend only on the number of documents
and topics, so a fit gives the same model, bit for bit, on

* a dense array or a scipy.sparse matrix in memory (``Corpus``),
* ``fastem.Chunks`` of them: pieces cut anywhere, dense or sparse (``.npy`` or
  ``scipy.sparse.save_npz`` files, arrays, a function yielding them), re-cut into the
  fixed chunks as they are read, one piece and one chunk held at a time,
* a Dask array of dense or scipy.sparse blocks (``fastem.dask.DaskCorpus``): each
  chunk's E-step runs on the workers where its block is, the client adds the results,

and on any number of threads or workers.
"""

from typing import NamedTuple

import numpy as np

#: Values (documents x topics) of the per-document arrays of one chunk of a pass.
_CHUNK_VALUES = 1 << 20


class DocChunk(NamedTuple):
    """One chunk of documents as the kernels take it: CSR arrays, int64 indices."""

    start: int  #: its first document (global index)
    data: np.ndarray  #: the counts, in the corpus' dtype
    indices: np.ndarray  #: their words (int64)
    indptr: np.ndarray  #: row pointers (int64), from 0

    @property
    def n(self):
        return self.indptr.shape[0] - 1


def doc_chunk(start, X, dtype):
    """A ``DocChunk`` of X's rows (dense or any sparse matrix) in ``dtype``: a CSR X's
    entries as they are (no copy when the types agree), a dense X's non-zeros."""
    import scipy.sparse as sp

    X = X.tocsr() if sp.issparse(X) else sp.csr_matrix(np.asarray(X))
    # (the kernels take int64 indices: one compiled version, the one warm-up makes)
    return DocChunk(start, X.data.astype(dtype, copy=False), X.indices.astype(np.int64),
                    X.indptr.astype(np.int64) - X.indptr[0])


def recut(pieces, size):
    """Re-cut a stream of document pieces (CSR matrices) into CSR matrices of exactly
    ``size`` documents (the last may be shorter); a run inside one piece is a view,
    documents that straddle pieces are stacked."""
    import scipy.sparse as sp

    from ._stream import _csr_rows

    held, n_held = [], 0
    for piece in pieces:
        pos, m = 0, piece.shape[0]
        while pos < m:
            take = min(size - n_held, m - pos)
            part = _csr_rows(piece, pos, pos + take)
            pos += take
            if n_held == 0 and take == size:
                yield part
                continue
            held.append(part)
            n_held += take
            if n_held == size:
                yield sp.vstack(held, format="csr")
                held, n_held = [], 0
    if held:
        yield held[0] if len(held) == 1 else sp.vstack(held, format="csr")


class Corpus:
    """A topic model's checked documents: ``n_docs`` x ``n_words`` counts in ``dtype``,
    read in fixed chunks of ``step`` documents.  ``pieces()`` gives fresh iterables of
    checked pieces, in order (a matrix in memory is its only piece)."""

    #: the chunks' work runs on Dask workers (``fastem.dask.DaskCorpus``)
    distributed = False

    def __init__(self, pieces, *, n_docs, n_words, dtype, step, array=None):
        self._pieces, self.array = pieces, array
        self.n_docs, self.n_words, self.dtype = int(n_docs), int(n_words), np.dtype(dtype)
        self.step = int(step)

    @property
    def shape(self):
        return (self.n_docs, self.n_words)

    def spans(self):
        """(first, one past the last) document of every chunk."""
        for a in range(0, self.n_docs, self.step):
            yield a, min(a + self.step, self.n_docs)

    def _csr_pieces(self):
        import scipy.sparse as sp

        for piece in self._pieces():
            yield piece.tocsr() if sp.issparse(piece) else sp.csr_matrix(piece)

    def chunks(self):
        """The ``DocChunk`` of every chunk, in order."""
        import scipy.sparse as sp

        if self.array is not None and not sp.issparse(self.array):
            # a dense array is converted a chunk at a time, never whole
            for a, b in self.spans():
                yield doc_chunk(a, self.array[a:b], self.dtype)
            return
        start = 0
        for block in recut(self._csr_pieces(), self.step):
            yield doc_chunk(start, block, self.dtype)
            start += block.shape[0]
        if start != self.n_docs:
            raise ValueError(f"the data changed while fitting: a pass read {start} documents, "
                             f"the first pass {self.n_docs}")

    def map(self, model, method, args=(), per_chunk=None):
        """``model.<method>(chunk, *args, *per_chunk(i, a, b))`` for every chunk ``i`` (its
        documents [a, b)), in chunk order (a generator: one chunk's result at a time)."""
        fn = getattr(model, method)
        for i, chunk in enumerate(self.chunks()):
            extra = per_chunk(i, chunk.start, chunk.start + chunk.n) if per_chunk else ()
            yield fn(chunk, *args, *extra)

    def batches(self, size):
        """Corpora of ``size`` consecutive documents each (the last may be shorter), in
        memory, in order: the mini-batches of online learning."""
        if self.array is not None:
            for a in range(0, self.n_docs, size):
                yield in_memory(self.array[a:a + size], self.step)
            return
        for block in recut(self._csr_pieces(), size):
            yield in_memory(block.astype(self.dtype, copy=False), self.step)


def in_memory(X, step):
    """The ``Corpus`` of a checked matrix in memory."""
    return Corpus(lambda: (X,), n_docs=X.shape[0], n_words=X.shape[1], dtype=X.dtype,
                  step=step, array=X)


class Documents:
    """X of word counts, documents in rows: dense or any scipy.sparse matrix (taken as
    CSR, never densified), float32 or float64, finite and non-negative; or ``Chunks``
    of such pieces, or a Dask array of dense or sparse blocks."""

    def _check_input(self, X, *, owner, copy, name="X"):
        from ._validation import check_array_or_csr

        X = check_array_or_csr(X, name=name, owner=owner, copy=copy)
        values = X.data if hasattr(X, "indptr") else X
        if values.size and values.min() < 0:
            raise ValueError(f"Negative values in data passed to {owner} ({name} holds word "
                             "counts, which cannot be negative).")
        return X

    def _corpus_dtype(self, dtype, reset):
        """The dtype the counts are read in: X's own when fitting, the topics' after."""
        if not reset and hasattr(self, "components_"):
            return self.components_.dtype
        return dtype

    def _chunk_docs(self):
        return max(1, _CHUNK_VALUES // self.n_components)

    def _corpus(self, X, reset):
        """X (a matrix, ``Chunks`` or a Dask array) checked into a ``Corpus``."""
        from ._stream import Chunks
        from .dask import is_dask_array

        if is_dask_array(X):
            from .dask import dask_corpus

            return dask_corpus(self, X, reset)
        if not isinstance(X, Chunks):
            X = self._validate_data(X, reset=reset)
            dtype = self._corpus_dtype(X.dtype, reset)
            return in_memory(X if X.dtype == dtype else X.astype(dtype), self._chunk_docs())
        from ._stream import survey_pieces

        owner = type(self).__name__

        def check(piece, name, copy):
            return self._check_input(piece, owner=owner, copy=copy, name=name)

        sizes, n_words, dtype = survey_pieces(X, check)  # the first pass: every piece checked
        self._check_streamed_features(n_words, reset)
        dtype = self._corpus_dtype(dtype, reset)

        def pieces():  # each piece as the first pass checked it (no copy unless needed)
            return (check(piece, X.describe(i), False) for i, piece in enumerate(X))

        return Corpus(pieces, n_docs=sum(sizes), n_words=n_words, dtype=dtype,
                      step=self._chunk_docs())

    def _topic_kernels(self):
        return self._kernels(self._runtime[0], "topics")
