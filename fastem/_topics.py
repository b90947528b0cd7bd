"""What the topic models share (``lda.py``, ``plsa.py``): documents as word counts,
visited in fixed chunks of CSR rows."""

import numpy as np

#: Values (documents x topics) of the per-document arrays of one chunk of a pass.
_CHUNK_VALUES = 1 << 20


class Documents:
    """X of word counts, documents in rows: dense or any scipy.sparse matrix (taken as
    CSR, never densified), float32 or float64, finite and non-negative."""

    def _check_input(self, X, *, owner, copy, name="X"):
        from ._validation import check_array_or_csr

        X = check_array_or_csr(X, name=name, owner=owner, copy=copy)
        values = X.data if hasattr(X, "indptr") else X
        if values.size and values.min() < 0:
            raise ValueError(f"Negative values in data passed to {owner} ({name} holds word "
                             "counts, which cannot be negative).")
        return X

    def _documents(self, X, reset):
        X = self._validate_data(X, reset=reset)
        if not reset and hasattr(self, "components_") and X.dtype != self.components_.dtype:
            X = X.astype(self.components_.dtype)
        return X

    def _chunks(self, X):
        """(first document, data, indices, indptr) of X's fixed chunks of documents, as CSR
        rows (a dense chunk converted, the sparse ones sliced without copying entries)."""
        import scipy.sparse as sp

        step = max(1, _CHUNK_VALUES // self.n_components)
        for a in range(0, X.shape[0], step):
            b = min(a + step, X.shape[0])
            if sp.issparse(X):
                lo, hi = X.indptr[a], X.indptr[b]
                data, indices, indptr = X.data[lo:hi], X.indices[lo:hi], X.indptr[a:b + 1] - lo
            else:
                c = sp.csr_matrix(X[a:b])
                data, indices, indptr = c.data, c.indices, c.indptr
            # (the kernels take int64 indices: one compiled version, the one warm-up makes)
            yield a, data, indices.astype(np.int64), indptr.astype(np.int64)

    def _topic_kernels(self):
        return self._kernels(self._runtime[0], "topics")
