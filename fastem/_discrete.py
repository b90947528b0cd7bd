"""What the mixtures of discrete distributions share (Bernoulli, multinomial, categorical).

Each model's log joint density is linear in an encoding of the sample (see
``kernels/reference/discrete_mixture.py``): dense values with an observed-entry
indicator, or a CSR matrix.  This module holds that encoding (``Encoded``), the EM
plumbing on top of ``BaseMixture`` and the smoothing, which every model applies the
same way: a symmetric Dirichlet (Beta) prior with pseudo-count ``alpha`` on every
probability vector, so the M-step is the MAP estimate

    theta_c = (S_c + alpha) / (sum_c' S_c' + C alpha)

(S_c the expected counts, C the number of outcomes) and no probability is ever 0 or 1.
Probabilities are kept as float64 logarithms computed from the counts,
``log(S_c + alpha) - log(N + C alpha)``, which stay finite and exact even where theta
itself rounds to 0 or 1.

EM with a MAP M-step increases the log posterior, not the log-likelihood alone, so
the monitored lower bound is ``(sum_i w_i log p(x_i) + alpha sum log theta) / sum_i w_i``
(the prior's log density up to a constant); it never decreases, and it equals the mean
log-likelihood ``score(X)`` up to that (small, for small alpha) prior term.
"""

import numbers

import numpy as np

from ._threads import limit_blas_threads
from ._validation import Interval, Options, row_blocks
from ._stream import Chunk
from .base import MIXTURE_CONSTRAINTS, ONLINE_CONSTRAINTS, BaseMixture, floored_counts


class Encoded:
    """Validated data in the form the kernels take.

    ``dense``: ``X`` (N, D) float32/float64, NaN for missing entries iff ``missing``.
    ``csr``: ``data``, ``indices``, ``indptr`` with ``n_features`` columns.
    ``log_base``: the per-sample term of log p(x) that no component changes (binomial
    or multinomial coefficients), (N,) float64, or None when it is 0.  ``totals``: the
    row totals (multinomial), or None.
    """

    def __init__(self, *, X=None, missing=False, csr=None, n_features=None, log_base=None,
                 totals=None):
        self.X = X
        self.totals = totals
        self.missing = bool(missing)
        self.csr = csr
        self.n_features = X.shape[1] if X is not None else int(n_features)
        self.log_base = log_base

    @property
    def dense(self):
        return self.X is not None

    @property
    def shape(self):
        n = self.X.shape[0] if self.dense else self.csr.shape[0]
        return (n, self.n_features)

    def rows(self, start, stop, missing):
        """The encoding of rows [start, stop) (views; ``missing``: whether they have a
        missing entry)."""
        cut = lambda a: None if a is None else a[start:stop]  # noqa: E731
        if self.dense:
            return Encoded(X=self.X[start:stop], missing=missing, log_base=cut(self.log_base),
                           totals=cut(self.totals))
        return Encoded(csr=_CSRRows(self.csr, start, stop), n_features=self.n_features,
                       log_base=cut(self.log_base), totals=cut(self.totals))

    def chunks(self):
        """(start, stop, block) over the rows: a dense float64 block with NaN as 0 and
        its observed-entry indicator, or a CSR slice (and None)."""
        n = self.shape[0]
        # blocks of about 2^16 entries: dense ones, or a CSR matrix's stored ones (by
        # columns, 20,000-word documents would make blocks of 3 rows)
        width = self.shape[1] if self.dense else self.csr.nnz // max(1, n) + 1
        for start, stop in row_blocks(n, width):
            if self.dense:
                block = self.X[start:stop].astype(np.float64)
                observed = ~np.isnan(block)
                block[~observed] = 0.0
                yield start, stop, block, observed
            else:
                # a scipy matrix for the product (a copy of these rows: keep blocks small)
                yield start, stop, _CSRRows(self.csr, start, stop).tocsr(), None

    def weighted_sums(self, resp_blocks):
        """(nk, sum_x, sum_obs) as the kernels define them, for weighted responsibilities
        given chunk by chunk, in order, by ``resp_blocks(start, stop)`` -> (stop - start,
        K) array of w_i r_ik.  sum_obs is None for CSR data."""
        nk = sum_x = sum_obs = 0.0
        for start, stop, block, observed in self.chunks():
            wr = resp_blocks(start, stop)
            nk = nk + wr.sum(axis=0)
            sum_x = sum_x + np.asarray(block.T @ wr)
            if observed is not None:
                sum_obs = sum_obs + observed.T.astype(np.float64) @ wr
        return nk, sum_x, (sum_obs if self.dense else None)


class _CSRRows:
    """Rows [start, stop) of a CSR matrix as views of its arrays: what the kernels read.
    (scipy's slicing copies them, and so does its constructor given views of a much
    larger array.)"""

    def __init__(self, c, start, stop):
        lo, hi = c.indptr[start], c.indptr[stop]
        self.data, self.indices = c.data[lo:hi], c.indices[lo:hi]
        self.indptr = c.indptr[start:stop + 1] - lo
        self.shape, self.nnz = (stop - start, c.shape[1]), int(hi - lo)

    def tocsr(self):
        import scipy.sparse as sp

        return sp.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape)


class EncodedParts:
    """The data of a fit as encoded chunks, one per chunk of ``rows`` (see
    ``fastem/_stream.py``): slices of one encoding of the whole array when it is in
    memory, or each chunk encoded as it is read when it is streamed.  Both give the same
    chunks (the per-chunk missing-entry flag included), so the fits are identical."""

    def __init__(self, rows, encode, whole=None):
        self.rows, self._encode, self.whole = rows, encode, whole
        self.shape = rows.shape
        self.total_weight = rows.total_weight
        self._missing = None
        if whole is None:  # the encoding's width and layout, from the first row
            first = rows.take([0]) if rows.distributed else next(iter(rows.chunks()))[2][:1]
            whole = encode(first)
        elif whole.dense:
            self._missing = [bool(np.isnan(whole.X[a:b]).any()) for a, b in rows.spans()]
        self.n_features, self.dense = whole.n_features, whole.dense

    def map(self, fn, *args, state=(), n_threads=1):
        """``fn(enc, chunk, *args)`` for every part, in order: ``enc`` the part's
        ``Encoded``, ``chunk`` its rows' ``Chunk`` (``X`` None when the whole array was
        encoded once).  Streamed parts are encoded where they are read, which for a Dask
        array is on the workers (``Rows.map``)."""
        if self.whole is None:
            return self.rows.map(_encoded, self._encode, fn, args, state=state,
                                 n_threads=n_threads)
        return self._map_whole(fn, args, state, n_threads)

    def _map_whole(self, fn, args, state, n_threads):
        for i, (a, b) in enumerate(self.rows.spans()):
            missing = self._missing[i] if self._missing is not None else False
            chunk = Chunk(a, b, None, self.rows.weight(a, b), tuple(s[a:b] for s in state),
                          n_threads)
            yield fn(self.whole.rows(a, b, missing), chunk, *args)

    def has_missing(self):
        """Whether any entry is missing (NaN in dense data): known for an encoding in
        memory; a scan of the chunks, not an encoding of each, when streamed."""
        if self.whole is not None:
            return self.whole.dense and self.whole.missing
        return self.dense and any(self.rows.map(_has_nan))

    def weighted_sums(self, fn, *args, state=()):
        """(nk, sum_x, sum_obs) of the weighted responsibilities that ``fn(chunk, *args)``
        gives block by block (``Encoded.weighted_sums``), summed part by part in order."""
        nk = sum_x = sum_obs = 0.0
        for part in self.map(_part_sums, fn, args, state=state):
            nk, sum_x = nk + part[0], sum_x + part[1]
            sum_obs = None if part[2] is None else sum_obs + part[2]
        return nk, sum_x, sum_obs


def _encoded(chunk, encode, fn, args):
    return fn(encode(chunk.X), chunk, *args)


def _has_nan(chunk):
    return bool(np.isnan(chunk.X).any())


def _part_sums(enc, chunk, fn, args):
    """``Encoded.weighted_sums`` of a part, with ``fn(chunk, start, stop, *args)`` giving
    w_i r_ik of rows [start, stop) of the chunk (local indices)."""
    return enc.weighted_sums(lambda start, stop: fn(chunk, start, stop, *args))


def _random_resp(chunk, start, stop, k, random_state):
    """Normalised uniform responsibilities times the weights: the same stream as one
    uniform(size=(n, k)) call, drawn block by block in row order (in this process)."""
    block = random_state.uniform(size=(stop - start, k))
    return block / block.sum(axis=1)[:, None] * chunk.w[start:stop, None]


def _one_hot_resp(chunk, start, stop, k, chosen):
    """One-hot responsibilities times the weights: rows ``chosen`` (global indices) for
    their components, or each row for its label in ``chunk.state[0]`` (-1: none)."""
    block = np.zeros((stop - start, k))
    if chosen is not None:  # the k chosen rows only
        lo, hi = chunk.start + start, chunk.start + stop
        comp = np.flatnonzero((chosen >= lo) & (chosen < hi))
        hit = chosen[comp] - lo
    else:
        lab = chunk.state[0][start:stop]
        hit = np.flatnonzero(lab >= 0)
        comp = lab[hit]
    block[hit, comp] = chunk.w[start:stop][hit]
    return block


def _part_stats(enc, chunk, est):
    """The E-step and M-step statistics of a part: (kernel log-likelihood, the part's
    sum_i w_i log_base_i or None, (nk, sum_x[, sum_obs]))."""
    k, d = est.n_components, enc.n_features
    part = (np.empty(k), np.empty((d, k)), np.empty((d, k)))[:3 if enc.dense else 2]
    ll = est._call(("accumulate_stats_dense", "accumulate_stats_csr"), enc, chunk.w, *part,
                   n_threads=chunk.n_threads)
    base = None if enc.log_base is None else float(chunk.w @ enc.log_base)
    return ll, base, part


def _part_labels(enc, chunk, est):
    return est._estimate_log_norm(enc, n_threads=chunk.n_threads)[1]


def smoothed_log_probs(counts, totals, n_outcomes, alpha):
    """log of the MAP probabilities (counts + alpha) / (totals + n_outcomes alpha)."""
    return np.log(np.maximum(counts, 0.0) + alpha) - np.log(totals + n_outcomes * alpha)


def check_probability_table(value, shape, name, *, rows_sum_to_one):
    """A user-given table of probabilities (e.g. ``means_init``) as float64."""
    arr = np.array(value, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}.")
    if not np.isfinite(arr).all() or (arr <= 0).any() or (not rows_sum_to_one and (arr >= 1).any()):
        raise ValueError(f"{name} must hold probabilities strictly between 0 and 1.")
    if rows_sum_to_one and not np.allclose(arr.sum(axis=-1), 1.0, rtol=1e-6):
        raise ValueError(f"each row of {name} must sum to 1.")
    return arr


class DiscreteMixture(BaseMixture):
    """EM plumbing for the discrete mixtures; see the module docstring.

    Subclasses define ``_encode(X, sample_weight)`` (validated input -> ``Encoded``),
    ``_set_from_stats(nk, sum_x, sum_obs)`` (the M-step of their tables),
    ``_operands(enc)`` (coef, obs_coef, offset for the kernels), ``_log_prior()``
    (alpha times the sum of every log probability), ``_user_tables(n_features)`` (the
    checked ``means_init``, or None) and the parameter accessors.
    """

    _common_constraints = {
        **MIXTURE_CONSTRAINTS,
        "alpha": [Interval(numbers.Real, 0.0, None, closed="neither")],
        "init_params": [Options("random_from_data", "random", "kmeans")],
        **ONLINE_CONSTRAINTS,
    }

    def _check_log_tables(self, name, table, groups):
        """``table`` (attribute ``name``) holds float64 log probabilities whose rows, cut
        into consecutive groups of the given sizes, each sum (exponentiated) to one."""
        if table.dtype != np.float64 or (table > 0).any():
            raise ValueError(f"{name} must hold float64 log probabilities (<= 0)")
        starts = np.concatenate([[0], np.cumsum(groups)[:-1]]).astype(np.intp)
        sums = np.add.reduceat(np.exp(table), starts, axis=0)
        if not np.allclose(sums, 1.0, rtol=0, atol=1e-9):
            raise ValueError(f"the probabilities in {name} do not sum to one")

    def _set_common(self, n_components, alpha, tol, max_iter, n_init, init_params, weights_init,
                    means_init, random_state, warm_start, verbose, verbose_interval, backend,
                    n_threads, learning_decay, learning_offset):
        self.n_components = n_components
        self.alpha = alpha
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.backend = backend
        self.n_threads = n_threads
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset

    # ------------------------------------------------------------------ data
    def _check_data(self, X):
        return X if isinstance(X, Encoded) else self._encode(X)

    def _fit_data(self, rows):
        """Fits run over ``EncodedParts``: an array in memory is encoded once, streamed
        data chunk by chunk at every pass."""
        if rows.in_memory:
            return EncodedParts(rows, None, whole=self._encode(rows.array))
        return EncodedParts(rows, self._encode)

    def _data_fingerprint(self, parts):
        from ._checkpoint import data_fingerprint

        whole = parts.whole
        if whole is None or whole.dense:
            return parts.rows.fingerprint()
        c = whole.csr
        return data_fingerprint([c.indptr, c.indices, c.data], whole.shape[0],
                                parts.rows.weight_vector())

    def _fit_labels(self, parts):
        return np.concatenate(list(parts.map(_part_labels, self, n_threads=self._runtime[1])))

    # ------------------------------------------------------------------ kernels
    def _kern(self):
        return self._kernels(self._runtime[0], "discrete_mixture")

    def _call(self, kernels, enc, weights, *outputs, n_threads=None):
        """Run the kernel ``kernels`` = (dense name, CSR name) for enc's layout on enc with
        the current parameters (``weights``: the sample weights of ``accumulate_stats``,
        else None)."""
        dense, csr = kernels
        n_threads = self._runtime[1] if n_threads is None else n_threads
        coef, obs_coef, offset = self._operands(enc)
        kern = self._kern()
        w = () if weights is None else (weights,)
        with limit_blas_threads():
            if enc.dense:
                if obs_coef is None:  # no missing entries: the kernels ignore obs_coef
                    obs_coef = coef
                return getattr(kern, dense)(enc.X, *w, coef, obs_coef, offset, enc.missing,
                                            *outputs, n_threads)
            c = enc.csr
            return getattr(kern, csr)(c.data, c.indices, c.indptr, *w, coef, offset, *outputs,
                                      n_threads)

    def _summarize(self, parts):
        """Log posterior per unit weight and the statistics, summed part by part."""
        k, d = self.n_components, parts.n_features
        nk, sum_x = np.zeros(k), np.zeros((d, k))
        sum_obs = np.zeros((d, k)) if parts.dense else None
        ll = 0.0
        for part_ll, base, part in parts.map(_part_stats, self, n_threads=self._runtime[1]):
            ll += part_ll
            nk += part[0]
            sum_x += part[1]
            if sum_obs is not None:
                sum_obs += part[2]
            if base is not None:
                ll += base
        return (ll + self._log_prior()) / parts.total_weight, (nk, sum_x, sum_obs)

    def _estimate_log_norm(self, enc, n_threads=None):
        n = enc.shape[0]
        log_norm, labels = np.empty(n), np.empty(n, dtype=np.int32)
        self._call(("estimate_log_norm_dense", "estimate_log_norm_csr"), enc, None, log_norm,
                   labels, n_threads=n_threads)
        if enc.log_base is not None:
            log_norm += enc.log_base
        return log_norm, labels

    def _estimate_log_prob(self, enc):
        out = np.empty((enc.shape[0], self.n_components))
        self._call(("estimate_log_prob_dense", "estimate_log_prob_csr"), enc, None, out)
        if enc.log_base is not None:
            out += enc.log_base[:, None]
        return out

    # ------------------------------------------------------------------ M-step
    def _from_summaries(self, parts, stats):
        nk, sum_x, sum_obs = stats
        floored = floored_counts(nk, parts.rows)  # as GaussianMixture: no weight is 0
        self.weights_ = floored / floored.sum()
        self._set_from_stats(nk, sum_x, sum_obs)
        return 0  # nothing to re-seed: smoothed probabilities cannot collapse

    # ------------------------------------------------------------------ initialization
    def _initial_stats(self, parts, random_state):
        """(nk, sum_x, sum_obs) of the initial responsibilities, one pass block by block
        in order (so "random" never holds an N x K matrix)."""
        k, rows = self.n_components, parts.rows
        if self.init_params == "random":
            return parts.weighted_sums(_random_resp, k, random_state)
        if self.init_params == "kmeans":
            return parts.weighted_sums(_one_hot_resp, k, None,
                                       state=(self._kmeans_labels(parts, random_state),))
        # random_from_data: k distinct rows of positive weight, one per component
        candidates = np.flatnonzero(rows.weight_vector() > 0)
        if candidates.size < k:
            raise ValueError(
                f"n_components={k} but only {candidates.size} samples have positive "
                "weight; use fewer components.")
        return parts.weighted_sums(_one_hot_resp, k,
                                   random_state.choice(candidates, size=k, replace=False))

    def _kmeans_labels(self, parts, random_state):
        from .kmeans import kmeans_labels

        if not parts.dense or parts.has_missing():
            raise ValueError(
                f"init_params='kmeans' needs dense data without missing entries; use "
                f"init_params='random_from_data' for {type(self).__name__} on this input.")
        return kmeans_labels(parts.rows, self.n_components, random_state, *self._runtime)

    def _em_initialize(self, parts, random_state):
        weights = self._checked_weights_init()
        if weights is None or self.means_init is None:
            # as GaussianMixture: what the user did not give comes from initial
            # responsibilities (a pass over the data, skipped when both are given)
            stats = self._initial_stats(parts, random_state)
            self._from_summaries(parts, stats)
        if weights is not None:
            self.weights_ = weights / weights.sum()
        if self.means_init is not None:
            self._set_user_tables(parts.n_features)

    # ------------------------------------------------------------------ shared API pieces
    def _sample_components(self, n_samples, rng):
        self._check_n_samples(n_samples)
        return np.sort(rng.choice(self.n_components, size=n_samples, p=self.weights_))
