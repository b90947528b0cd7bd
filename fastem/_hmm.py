"""What every hidden Markov model shares: sequences, Baum-Welch on the EM engine, and
hmmlearn's API (0.3 names, defaults and semantics).

A model has K states; ``startprob_`` (K,) and ``transmat_`` (K, K), rows the "from"
state, and an emission distribution per state that the subclass defines.  ``X`` holds
the sequences one after another and ``lengths`` their lengths (None: one sequence).

One EM iteration (``_summarize``, then ``_from_summaries``) is one pass over chunks of
whole sequences.  Per chunk: the emission log-probabilities (the mixture kernels),
forward-backward over its sequences in parallel (the ``hmm`` kernels: posteriors
``gamma_t(k)`` and, summed over t per sequence, the expected transitions
``xi_ij``), and the emission statistics weighted by ``gamma``; the chunks' additive
float64 statistics are summed in chunk order, so the fit does not depend on the thread
count.  No T x K x K array is ever held.  The M-step is hmmlearn's, priors included:

    startprob_i  ~ max(startprob_prior_i - 1 + sum_seq gamma_0(i), 0)
    transmat_ij  ~ max(transmat_prior_ij - 1 + sum_seq sum_t xi_t(i, j), 0)

each normalised to sum to one, entries that are zero staying zero.  A row with nothing
to normalise (a state no transition left in this iteration: hmmlearn leaves a row of
zeros, hmmlearn #186 and #276) keeps its previous values, so every row always sums to
one.  The lower bound of an iteration is the log-likelihood of all the sequences under
the parameters before its update, as hmmlearn's ``monitor_`` records it.
"""

from __future__ import annotations

import numbers
import string
import threading
import warnings
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from ._config import BACKENDS
from ._threads import limit_blas_threads
from ._validation import Interval, Options, check_random_state
from .base import EMEstimator, Iteration

if TYPE_CHECKING:
    from typing import Any, Optional

    from typing_extensions import Self

    from ._typing import ArrayLike, Floats, Labels

#: Rows of float64 per-step work (log-emissions and posteriors, K each) a chunk holds.
_CHUNK_VALUES = 1 << 21
#: Values (steps x states) of the per-step arrays of one sequence taken whole (256 MiB
#: each): a longer sequence goes in blocks of this size, exactly, at the price of a
#: second pass over its emissions and forward recursion (``BaseHMM._posteriors``).
_SEQUENCE_VALUES = 1 << 25
#: Rows per block of the passes over all of X outside the E-step (checks, the start's
#: mean, covariance and count statistics), so that a memory map or ``Chunks`` is read a
#: block at a time; the blocks are the same for every source, and so are the sums.
_ROW_BLOCK = 1 << 16


def row_blocks(X):
    """(first row, rows) of X's blocks of ``_ROW_BLOCK`` rows."""
    for start in range(0, X.shape[0], _ROW_BLOCK):
        yield start, X[start:start + _ROW_BLOCK]


def rows_where(X, mask):
    """The rows of X where the boolean (n,) ``mask`` holds, in order, read by blocks."""
    if isinstance(X, np.ndarray) and not isinstance(X, np.memmap):
        return X[mask]
    return np.concatenate([block[mask[a:a + block.shape[0]]] for a, block in row_blocks(X)])


class StackedRows:
    """The rows of a ``Chunks`` as one read-only array: ``shape``, ``dtype`` and rows
    ``[a:b]`` (an array, read from the pieces they lie in).

    An HMM's passes read runs of whole sequences, or blocks of one long sequence, and
    either may straddle the pieces.  Pieces given as a list (arrays or ``.npy`` files,
    memory-mapped) are read where they lie; the pieces of a function are read in order,
    and from the first again when a read goes back (the backward pass over the blocks
    of a sequence longer than ``Sequences.block``, last block first).  ``sizes`` are the
    pieces' rows, from the validating pass; a piece whose size changed since is refused.
    """

    ndim = 2

    def __init__(self, chunks, sizes, n_features, dtype):
        self._chunks, self._sizes = chunks, list(sizes)
        self._bounds = np.concatenate([[0], np.cumsum(self._sizes)]).astype(np.int64)
        self.shape = (int(self._bounds[-1]), int(n_features))
        self.dtype = np.dtype(dtype)
        self._cursor = None  # a function's pieces: (iterator, index of its piece, piece)

    def __len__(self):
        return self.shape[0]

    def _piece(self, i):
        items = self._chunks._items
        if items is not None:
            from ._stream import _open_piece

            piece = _open_piece(items[i])
        else:
            if self._cursor is None or self._cursor[1] > i:
                self._cursor = (iter(self._chunks), -1, None)
            it, at, piece = self._cursor
            while at < i:
                piece = next(it, None)
                if piece is None:
                    break
                at += 1
            self._cursor = (it, at, piece)
        if piece is None or np.shape(piece)[0] != self._sizes[i]:
            raise ValueError(f"the data changed while fitting: {self._chunks.describe(i)} "
                             f"no longer has the {self._sizes[i]} rows it had when checked")
        return piece

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("StackedRows reads runs of rows: index it with a slice [a:b]")
        a, b, _ = key.indices(self.shape[0])
        b = max(a, b)
        out = np.empty((b - a, self.shape[1]), dtype=self.dtype)
        i = int(np.searchsorted(self._bounds, a, side="right")) - 1
        pos = a
        while pos < b:
            lo, hi = int(self._bounds[i]), int(self._bounds[i + 1])
            stop = min(b, hi)
            if stop > pos:
                out[pos - a:stop - a] = np.asarray(self._piece(i)[pos - lo:stop - lo])
            pos, i = stop, i + 1
        return out


#: The ``Scratch`` each thread's running fit or prediction lends its passes, by model.
_held = threading.local()


def _lends_scratch(method):
    """Give ``method`` (a public entry point) a ``Scratch`` of work arrays for its passes
    (``BaseHMM._work``), dropped when the outermost such call returns (see
    ``fastem/kernels/_scratch.py``).  Held per thread, so that one model predicting in
    several threads at once gives each call its own arrays."""
    import functools

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        held = _held.__dict__.setdefault("by_model", {})
        if id(self) in held:
            return method(self, *args, **kwargs)
        from .kernels._scratch import Scratch

        held[id(self)] = Scratch()
        try:
            return method(self, *args, **kwargs)
        finally:
            del held[id(self)]
    return run


class ConvergenceMonitor:
    """hmmlearn's convergence monitor: ``history`` (the log-likelihood of every
    iteration), ``iter`` (iterations run), ``converged`` (the last gain was below
    ``tol``, or ``n_iter`` iterations ran, as hmmlearn defines it)."""

    def __init__(self, tol, n_iter, verbose):
        self.tol, self.n_iter, self.verbose = tol, n_iter, verbose
        self.history = deque()
        self.iter = 0

    def __repr__(self):
        return (f"ConvergenceMonitor(history={list(self.history)}, iter={self.iter}, "
                f"n_iter={self.n_iter}, tol={self.tol}, verbose={self.verbose})")

    def _reset(self):
        self.iter = 0
        self.history.clear()

    def report(self, log_prob):
        import sys

        if self.verbose:
            delta = log_prob - self.history[-1] if self.history else np.nan
            print(f"{self.iter + 1:>10d} {log_prob:>16.8f} {delta:>+16.8f}", file=sys.stderr)
        self.history.append(log_prob)
        self.iter += 1

    @property
    def converged(self):
        return (self.iter == self.n_iter or
                (len(self.history) >= 2 and self.history[-1] - self.history[-2] < self.tol))


class Sequences:
    """Validated X and its sequences: ``offsets`` (S + 1,), sequence s being rows
    ``offsets[s]:offsets[s + 1]``, and ``groups``, runs of whole sequences of about
    ``_CHUNK_VALUES / K`` rows each (a longer sequence is a group of its own; one longer
    than ``block = _SEQUENCE_VALUES / K`` steps ``pieces`` cuts into blocks of that
    many)."""

    #: The pieces are summarized on Dask workers (``fastem.dask.DaskSequences``), not here.
    distributed = False

    def __init__(self, X, lengths, n_states):
        n = X.shape[0]
        if lengths is None:
            lengths = np.array([n])
        lengths = np.asarray(lengths)
        if lengths.ndim != 1 or lengths.dtype.kind not in "iu" and not (
                lengths.dtype.kind == "f" and np.all(lengths == np.round(lengths))):
            raise ValueError("lengths must be a 1-D array of non-negative integers (one "
                             f"length per sequence); got {lengths!r}.")
        lengths = lengths.astype(np.int64)
        if (lengths < 0).any():
            raise ValueError("lengths must be non-negative; got a length of "
                             f"{int(lengths.min())}.")
        if int(lengths.sum()) != n:
            raise ValueError(f"lengths must sum to len(X) = {n} (one entry per sequence, "
                             f"in the order the sequences are stacked in X); they sum to "
                             f"{int(lengths.sum())}.")
        self.X = X
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.n_rows, self.n_sequences = n, lengths.shape[0]
        self.total_weight = float(n)
        limit = max(1, _CHUNK_VALUES // max(n_states, 1))
        self.block = max(1, _SEQUENCE_VALUES // max(n_states, 1))
        groups, start = [], 0
        for s in range(1, self.n_sequences + 1):
            if self.offsets[s] - self.offsets[start] > limit and s - 1 > start:
                groups.append((start, s - 1))
                start = s - 1
        groups.append((start, self.n_sequences))
        self.groups = groups

    @property
    def dtype(self):
        return self.X.dtype

    def fingerprint(self):
        """What a checkpoint records of the data: its shape, its sequence lengths and
        ~1,000 evenly spaced rows, hashed."""
        from ._checkpoint import data_fingerprint

        step = max(1, self.n_rows // 1024)
        sample = np.concatenate([block[-a % step::step] for a, block in row_blocks(self.X)]
                                or [np.zeros((0, self.X.shape[1]), self.X.dtype)])
        return data_fingerprint([sample], self.n_rows, self.offsets.astype(np.float64))

    def chunks(self):
        """(rows of X, offsets within them) of each group, in order (whole sequences)."""
        for lo, hi, offsets, _ in self.layout():
            yield self.X[lo:hi], offsets

    def layout(self):
        """(first row, one past the last, offsets within them, blocks) of each group,
        without reading X: blocks is None, or for a sequence longer than ``block`` its
        (start, stop) blocks of ``block`` steps, for the passes across blocks."""
        for a, b in self.groups:
            lo, hi = int(self.offsets[a]), int(self.offsets[b])
            offsets = self.offsets[a:b + 1] - lo
            blocks = None
            if offsets.shape[0] == 2 and hi - lo > self.block:
                blocks = [(t, min(t + self.block, hi - lo)) for t in range(0, hi - lo, self.block)]
            yield lo, hi, offsets, blocks

    def pieces(self):
        """(first row, rows of X, offsets within them, blocks) of each group (``layout``):
        the rows of a sequence taken in blocks are a view, read a block at a time."""
        for lo, hi, offsets, blocks in self.layout():
            yield lo, (self.X[lo:hi] if blocks is None else _Window(self.X, lo, hi)), offsets, \
                blocks


class _Window:
    """Rows [lo, hi) of an array or ``StackedRows``, read only when sliced."""

    def __init__(self, X, lo, hi):
        self._X, self._lo, self.shape = X, lo, (hi - lo, X.shape[1])

    def __getitem__(self, key):
        a, b, _ = key.indices(self.shape[0])
        return self._X[self._lo + a:self._lo + b]


def _reachable(startprob, transmat):
    """Which states some path of non-zero start and transition probabilities reaches."""
    seen = startprob > 0
    while True:
        more = seen | (transmat[seen] > 0).any(axis=0)
        if (more == seen).all():
            return seen
        seen = more


def _make_room(rows, states, allowed, floor):
    """``rows`` (probabilities, each summing to one) with every ``allowed`` entry in the
    columns ``states`` raised to at least ``floor``, and the row's other entries scaled
    so that it still sums to one."""
    rows = rows.copy()
    cols = np.zeros(rows.shape[1], dtype=bool)
    cols[states] = True
    for r in range(rows.shape[0]):
        raise_ = cols & allowed[r]
        if not raise_.any():
            continue
        fixed = np.maximum(rows[r, raise_], floor)
        total = min(fixed.sum(), 1.0)
        others = rows[r, ~raise_]
        rest = others.sum()
        rows[r, raise_] = fixed * (total / fixed.sum())
        rows[r, ~raise_] = others * ((1.0 - total) / rest) if rest > 0 else 0.0
    return rows / rows.sum(axis=1, keepdims=True)


def _normalized_rows(counts, previous):
    """Rows of ``counts`` scaled to sum to one; a row summing to zero keeps its
    ``previous`` values."""
    counts = np.atleast_2d(counts)
    sums = counts.sum(axis=1, keepdims=True)
    empty = ~(sums[:, 0] > 0)
    out = counts / np.where(empty[:, None], 1.0, sums)
    if empty.any():
        out[empty] = np.atleast_2d(previous)[empty]
    return out


def _check_distribution(value, shape, name):
    """A float64 array of ``shape`` whose last axis holds probabilities summing to one."""
    arr = np.array(value, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {arr.shape}.")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{name} must hold finite, non-negative probabilities.")
    sums = arr.sum(axis=-1)
    if not np.allclose(sums, 1.0):
        raise ValueError(f"{name} {'rows ' if arr.ndim > 1 else ''}must sum to 1; got sums "
                         f"{np.round(sums, 6)}.")
    return arr


class BaseHMM(EMEstimator):
    """Baum-Welch for one emission family; see the module docstring.

    Subclasses define the emission model: ``_emission_letters`` (their letters in
    ``params`` / ``init_params``), ``_emission_attributes`` (the fitted arrays, in
    parameter order), ``_init_emissions(X, random_state)``, ``_check_emissions()``,
    ``_emission_log_prob(X)`` ((n, K) float64), ``_emission_stats(X, posteriors)``
    (additive float64 arrays), ``_emission_mstep(stats)`` (the update; returns the
    states it could not update, which keep their values), ``_reseed_emissions(data,
    states, stats)`` (new emissions for those, see ``_renew``), ``_emission_sizes()``
    (free scalars per letter) and ``_generate_sample_from_state(state, random_state)``;
    ``_flat_emission_priors`` says whether the emission update is the likelihood's
    maximizer (otherwise the log-likelihood alone may fall in an iteration), and
    ``_observed(X)`` which rows are observed steps.
    """

    _estimator_type = "hmm"
    _emission_letters = ""
    _emission_attributes = ()
    _fitted_attributes = ("startprob_", "transmat_", "monitor_", "n_features_in_",
                          "backend_")
    _em_counters = ("n_reseeded_",)
    verbose_interval = 1

    _parameter_constraints = {
        "n_components": [Interval(numbers.Integral, 1, None)],
        "startprob_prior": [Interval(numbers.Real, 0.0, None), "array-like"],
        "transmat_prior": [Interval(numbers.Real, 0.0, None), "array-like"],
        "algorithm": [Options("viterbi", "map")],
        "random_state": ["random_state"],
        "n_iter": [Interval(numbers.Integral, 0, None)],
        "tol": [Interval(numbers.Real, None, None)],
        "verbose": ["boolean", Interval(numbers.Integral, 0, None)],
        "params": ["str"],
        "init_params": ["str"],
        "implementation": [Options("log", "scaling")],
        "backend": [None, Options(*BACKENDS)],
        "n_threads": [None, Interval(numbers.Integral, 1, None)],
    }

    def __init__(self, n_components=1, startprob_prior=1.0, transmat_prior=1.0,
                 algorithm="viterbi", random_state=None, n_iter=10, tol=1e-2, verbose=False,
                 params=string.ascii_letters, init_params=string.ascii_letters,
                 implementation="log", backend=None, n_threads=None):
        self.n_components = n_components
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.algorithm = algorithm
        self.random_state = random_state
        self.n_iter = n_iter
        self.tol = tol
        self.verbose = verbose
        self.params = params
        self.init_params = init_params
        self.implementation = implementation
        self.backend = backend
        self.n_threads = n_threads

    @property
    def _kernel_family(self):
        return "hmm"

    def __sklearn_is_fitted__(self):
        return hasattr(self, "monitor_")

    # ------------------------------------------------------------------ model files
    def _persisted_attributes(self):
        return ("n_features_in_", "feature_names_in_", "startprob_", "transmat_",
                *self._emission_attributes, "n_iter_", "n_reseeded_", "backend_",
                "_monitor_record")

    def _required_attributes(self):
        return ("n_features_in_", "startprob_", "transmat_", *self._emission_attributes,
                "monitor_")

    @property
    def _monitor_record(self):
        """``monitor_`` as one array for model files: [iterations run, *history]."""
        return np.array([self.monitor_.iter, *self.monitor_.history], dtype=np.float64)

    @_monitor_record.setter
    def _monitor_record(self, record):
        record = np.asarray(record, dtype=np.float64)
        if record.ndim != 1 or record.shape[0] < 1 or not np.isfinite(record).all():
            raise ValueError("the convergence record is not a finite 1-D array")
        self.monitor_ = ConvergenceMonitor(self.tol, self.n_iter, self.verbose)
        self.monitor_.iter = int(record[0])
        self.monitor_.history.extend(record[1:].tolist())

    def _check_fitted_state(self):
        super()._check_fitted_state()
        self._check_parameters()

    # ------------------------------------------------------------------ data
    def _check_input(self, X, *, owner, copy, name="X"):
        from ._validation import check_array

        return check_array(X, name=name, owner=owner, copy=copy)

    @property
    def _row_width(self):
        """Columns of the per-row arrays the E-step holds (the chunks' size follows)."""
        return self.n_components

    def _sequences(self, X, lengths, *, reset):
        from ._stream import Chunks
        from .dask import is_dask_array

        if is_dask_array(X):
            from .dask import dask_sequences

            return dask_sequences(self, X, lengths, reset)
        X = (self._stacked(X, reset) if isinstance(X, Chunks) else
             self._validate_data(X, reset=reset))
        return Sequences(X, lengths, self._row_width)

    def _stacked(self, chunks, reset):
        """A ``Chunks`` X as ``StackedRows``, its pieces checked one by one (a first pass;
        float32 only when every piece is)."""
        from ._stream import survey_pieces

        owner = type(self).__name__
        sizes, width, dtype = survey_pieces(chunks, lambda a, name, copy: self._check_input(
            a, owner=owner, copy=copy, name=name))
        self._check_streamed_features(width, reset)
        return StackedRows(chunks, sizes, width, dtype)

    def _hmm_kernels(self):
        return self._kernels(self._runtime[0], "hmm")

    def _work(self):
        """The ``Scratch`` of the running fit or prediction (``_lends_scratch``): the
        per-step arrays of every pass reuse its buffers (a new one outside those)."""
        from .kernels._scratch import scratch_of

        return scratch_of(_held.__dict__.get("by_model", {}).get(id(self)))

    # ------------------------------------------------------------------ fit
    @_lends_scratch
    def fit(self, X: ArrayLike, lengths: Optional[ArrayLike] = None, *, callback: Any = None,
            checkpoint: Any = None, checkpoint_every: int = 10,
            checkpoint_seconds: Optional[float] = None) -> Self:
        """Estimate the parameters by Baum-Welch (EM); returns self.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or ``fastem.Chunks``
            The sequences, one after another.  A memory map or ``Chunks`` (pieces cut
            anywhere, even inside a sequence) is read a run of sequences at a time and
            gives the model of the same rows in memory, bit for bit.
        lengths : array-like of int, shape (n_sequences,), default=None
            The length of each sequence in X (they must sum to ``len(X)``); None: X is
            one sequence.
        callback : callable, default=None
            Called after every iteration with a dict (``init``, ``iteration``,
            ``lower_bound``, ``change``, ``converged``, ``elapsed``), as for the mixtures;
            a true return value stops the fit there.
        checkpoint : path, default=None
            Write the fit's state there every ``checkpoint_every`` iterations and/or
            every ``checkpoint_seconds`` seconds; a fit started again with the same file
            (a killed job rerun) resumes from it and ends with the model of an
            uninterrupted fit.  The file is removed when the fit completes.

        What ``init_params`` names is initialized (hmmlearn's draws); what it leaves out
        must have been set by hand before ``fit``.  Then up to ``n_iter`` iterations,
        until the log-likelihood gains less than ``tol``; ``monitor_`` holds the history.
        """
        from ._checkpoint import Checkpointer

        self._validate_params()
        self._check_priors()
        data = self._sequences(X, lengths, reset=True)
        self._runtime = self._resolve_runtime()
        self.monitor_ = ConvergenceMonitor(self.tol, self.n_iter, self.verbose)
        ckpt = Checkpointer(self, data, checkpoint, checkpoint_every, checkpoint_seconds)
        with limit_blas_threads():
            best, _ = self._run_em(data, n_init=1, initialize=True,
                                   random_state=check_random_state(self.random_state),
                                   callback=callback, ckpt=ckpt, max_iter=self.n_iter)
        self.n_iter_ = best.n_iter
        self.backend_ = self._runtime[0]
        ckpt.finish()
        return self

    @_lends_scratch
    def partial_fit(self, X: ArrayLike, lengths: Optional[ArrayLike] = None, *,
                    learning_decay: float = 0.7, learning_offset: float = 10.0) -> Self:
        """One step of stepwise (online) EM on a batch of whole sequences; returns self.

        The model keeps a running average of the sufficient statistics (start and
        transition counts, emission statistics) per step of data,
        ``s <- (1 - eta_t) s + eta_t s(batch)``, ``s(batch)`` being the batch's expected
        statistics under the current parameters, and sets the parameters from ``s``
        (hmmlearn's M-step, priors included).  ``eta_t = (learning_offset + t) **
        -learning_decay`` for the t-th batch after the first (Cappe & Moulines 2009;
        ``learning_decay`` in (0.5, 1]).  The first call initializes what ``init_params``
        names from its batch, as ``fit`` does, unless the model is fitted already, and
        its statistics start the average (so one call is one Baum-Welch iteration).
        ``monitor_.history`` gets each batch's log-likelihood before its update;
        ``n_steps_`` counts the batches.
        """
        from ._validation import check_random_state

        if not 0.5 < learning_decay <= 1.0 or not learning_offset >= 0:
            raise ValueError("partial_fit needs learning_decay in (0.5, 1] and "
                             f"learning_offset >= 0; got {learning_decay!r}, "
                             f"{learning_offset!r}.")
        self._validate_params()
        self._check_priors()
        fitted = self.__sklearn_is_fitted__()
        data = self._sequences(X, lengths, reset=not fitted)
        self._runtime = self._resolve_runtime()
        self.learning_decay, self.learning_offset = learning_decay, learning_offset
        with limit_blas_threads():
            if not fitted:
                self.monitor_ = ConvergenceMonitor(self.tol, self.n_iter, self.verbose)
                self.n_reseeded_ = 0
                self._em_initialize(data, check_random_state(self.random_state))
            else:
                self._check_parameters()
            bound, self.n_steps_ = self._stepwise_em(data)
        self.monitor_.report(bound)
        self.n_iter_ = self.n_steps_
        self.backend_ = self._runtime[0]
        return self

    def _check_priors(self):
        k = self.n_components
        for name, shape in (("startprob_prior", (k,)), ("transmat_prior", (k, k))):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            try:
                np.broadcast_to(value, shape)
            except ValueError:
                raise ValueError(f"{name} must be a scalar or broadcast to shape {shape}; "
                                 f"got shape {value.shape}.") from None
            if not np.isfinite(value).all() or (value < 0).any():
                raise ValueError(f"{name} must be finite and non-negative.")

    def _em_initialize(self, data, random_state):
        k = self.n_components
        if self._needs_init("s", "startprob_"):
            self.startprob_ = random_state.dirichlet(np.full(k, 1.0 / k))
        if self._needs_init("t", "transmat_"):
            self.transmat_ = random_state.dirichlet(np.full(k, 1.0 / k), size=k)
        self._init_emissions(data.X, check_random_state(self.random_state))
        self._check_parameters()

    def _check_parameters(self):
        k = self.n_components
        self.startprob_ = _check_distribution(self.startprob_, (k,), "startprob_")
        self.transmat_ = _check_distribution(self.transmat_, (k, k), "transmat_")
        self._check_emissions()

    def _needs_init(self, letter, name):
        return letter in self.init_params or not hasattr(self, name)

    def _em_begin(self, data, init, n_done):
        if n_done == 0:  # (resuming a checkpoint: _unpack_checkpoint rebuilt the monitor)
            self.monitor_._reset()

    def _unpack_checkpoint(self, saved):
        state = super()._unpack_checkpoint(saved)
        if state is not None:  # the monitor's history is the loop's bounds
            self._monitor_record = [state["n_iter"], *state["bounds"]]
        return state

    def _em_iterate(self, data):
        bound, stats = self._summarize(data)
        reseeded = self._from_summaries(data, stats)
        self.monitor_.report(bound)
        history = self.monitor_.history
        # hmmlearn's rule (a signed gain); a MAP update (informative priors) maximizes
        # the posterior, not the likelihood, which may then fall: no monotonicity check
        flat = self._flat_emission_priors() and self._flat_transition_priors()
        return Iteration(bound, converged=not reseeded and len(history) >= 2 and
                         history[-1] - history[-2] < self.tol, reseeded=bool(reseeded),
                         slack=0.0 if flat else np.inf)

    def _flat_transition_priors(self):
        return bool(np.all(np.asarray(self.startprob_prior) == 1.0)
                    and np.all(np.asarray(self.transmat_prior) == 1.0))

    def _flat_emission_priors(self):
        return True

    def _log_start_trans(self):
        """log startprob_ and log transmat_ (a forbidden start or transition: -inf)."""
        with np.errstate(divide="ignore"):
            return np.log(self.startprob_), np.log(self.transmat_)

    def _forward_backward(self, X, offsets, log_em=None, log_start=None):
        """(log P of each sequence, posteriors (n, K), xi sums (S, K, K)) of one chunk;
        ``log_em``: its emission log-probabilities if already computed; ``log_start``:
        the start distribution, if not ``startprob_``."""
        k, n_seq = self.n_components, offsets.shape[0] - 1
        if log_em is None:
            log_em = self._emission_log_prob(X)
        work = self._work()
        log_prob, post = np.empty(n_seq), work.empty("posteriors", (log_em.shape[0], k))
        xi = np.empty((n_seq, k, k))
        own_start, log_trans = self._log_start_trans()
        log_start = own_start if log_start is None else log_start
        self._hmm_kernels().forward_backward(log_start, log_trans, log_em, offsets,
                                             self.implementation == "scaling", log_prob, post,
                                             xi, self._runtime[1], scratch=work)
        _refuse_impossible(log_prob)
        return log_prob, post, xi

    def _forward(self, X, offsets, log_start=None):
        """(log P of each sequence, its last step's filtered state distribution (S, K)) of
        one chunk, by the forward pass alone; ``log_start`` as ``_forward_backward``."""
        log_prob = np.empty(offsets.shape[0] - 1)
        filtered = np.empty((log_prob.shape[0], self.n_components))
        own_start, log_trans = self._log_start_trans()
        self._hmm_kernels().forward(own_start if log_start is None else log_start, log_trans,
                                    self._emission_log_prob(X), offsets,
                                    self.implementation == "scaling", log_prob, filtered,
                                    self._runtime[1], scratch=self._work())
        _refuse_impossible(log_prob)
        return log_prob, filtered

    def _block_forward(self, X, log_start):
        """(log P(x_b | x_<b), the next block's start) of one block of a sequence taken in
        blocks, from its ``log_start`` (see ``_posteriors``)."""
        lp, filtered = self._forward(X, np.array([0, X.shape[0]], dtype=np.int64), log_start)
        with np.errstate(divide="ignore"):
            return float(lp[0]), np.log(filtered[0] @ self.transmat_)

    def _forward_blocks(self, X, blocks):
        """(each block's start, log P) of one sequence taken in blocks: the forward pass
        over them (see ``_posteriors``)."""
        starts, log_p, log_start = [], 0.0, self._log_start_trans()[0]
        for a, b in blocks:
            starts.append(log_start)
            lp, log_start = self._block_forward(X[a:b], log_start)
            log_p += lp
        return starts, log_p

    def _block_posteriors(self, X, log_start, following, first):
        """(posteriors, transition counts (K, K), start counts (K,), ``following`` for
        the block before) of one block of a sequence taken in blocks, from its start and
        the next block's ``following`` (None for the last block; see ``_posteriors``);
        only the sequence's ``first`` block has start counts (its first posterior)."""
        log_em = self._emission_log_prob(X)
        if following is not None:
            log_em = np.vstack([log_em, following])
        _, post, xi = self._forward_backward(
            X, np.array([0, log_em.shape[0]], dtype=np.int64), log_em, log_start)
        post = post[:X.shape[0]]
        with np.errstate(divide="ignore", invalid="ignore"):
            following = np.where(post[0] > 0, np.log(post[0]) - log_start, -np.inf)
        return post, xi[0], post[0] if first else np.zeros(self.n_components), following

    def _group_posteriors(self, X, offsets):
        """(log P, posteriors, transition counts (K, K), start counts (K,)) of a run of
        whole sequences."""
        log_prob, post, xi = self._forward_backward(X, offsets)
        firsts = offsets[:-1][offsets[1:] > offsets[:-1]]
        return float(np.sum(log_prob)), post, xi.sum(axis=0), post[firsts].sum(axis=0)

    def _log_likelihood(self, data):
        """log P of all of ``data``, by forward passes only."""
        total = 0.0
        for _, X, offsets, blocks in data.pieces():
            total += (float(np.sum(self._forward(X, offsets)[0])) if blocks is None else
                      self._forward_blocks(X, blocks)[1])
        return total

    def _posteriors(self, data):
        """For each piece of the data: (its first row, its rows of X, their log P, their
        posteriors, transition counts (K, K), the start counts (K,)).

        A sequence longer than ``Sequences.block`` steps (``Sequences.pieces``) is taken
        in blocks, never whole, and exactly.  A forward pass over the blocks gives each
        block's start, the predicted distribution ``p_b = alpha_{t-1} A`` of its first
        step given all before it (normalised), and log P as the sum of the blocks' ``log
        P(x_b | x_<b)``.  A backward pass, last block first, runs each block from ``p_b``
        with one extra step at its end whose emission is the next block's
        ``b_t(j) beta_t(j) = gamma_t(j) / p_{b+1}(j)`` (up to a constant): the block's
        posteriors, and the transition counts into the next block, given everything.
        """
        for lo, X, offsets, blocks in data.pieces():
            if blocks is None:
                yield (lo, X, *self._group_posteriors(X, offsets))
                continue
            starts, log_p = self._forward_blocks(X, blocks)
            following = None  # the next block's first-step emission row
            for i in range(len(blocks) - 1, -1, -1):
                a, b = blocks[i]
                post, xi, first, following = self._block_posteriors(X[a:b], starts[i],
                                                                    following, i == 0)
                yield lo + a, X[a:b], log_p if i == 0 else 0.0, post, xi, first

    def _group_summary(self, X, offsets):
        """(log P, start counts, transition counts, emission statistics) of a run of
        whole sequences: its share of ``_summarize``."""
        log_p, post, xi, first = self._group_posteriors(X, offsets)
        return log_p, first, xi, self._emission_stats(X, post)

    def _block_summary(self, X, log_start, following, first):
        """((0, start counts, transition counts, emission statistics), ``following``) of
        one block of a sequence taken in blocks (``first``: the sequence's first block,
        whose first posterior is the start count; log P comes from the forward pass)."""
        post, xi, start, following = self._block_posteriors(X, log_start, following, first)
        return (0.0, start, xi, self._emission_stats(X, post)), following

    def _summaries(self, data):
        """The shares of ``_summarize`` of every piece of the data, in order (a sequence
        taken in blocks: its blocks last first, log P with the first)."""
        for _, X, log_p, post, xi, first in self._posteriors(data):
            yield log_p, first, xi, self._emission_stats(X, post)

    def _summarize(self, data):
        """Log-likelihood of every sequence and the additive statistics: (start counts,
        transition counts, *emission statistics), summed over the pieces in order (on a
        Dask array, the pieces' shares come from the workers: ``fastem.dask``)."""
        k = self.n_components
        start, trans = np.zeros(k), np.zeros((k, k))
        emission, bound = None, 0.0
        for log_p, first, xi, part in (data.summaries(self) if data.distributed else
                                       self._summaries(data)):
            bound += log_p
            start += first
            trans += xi
            emission = part if emission is None else tuple(a + b for a, b in zip(emission, part))
        return bound, (start, trans) + emission

    def _from_summaries(self, data, stats):
        """The M-step; returns the number of states re-seeded (``_renew``)."""
        start, trans, *emission = stats
        old_start, old_trans = self.startprob_, self.transmat_
        if "s" in self.params:
            counts = np.maximum(np.asarray(self.startprob_prior) - 1.0 + start, 0.0)
            counts = np.where(self.startprob_ == 0, 0.0, counts)
            self.startprob_ = _normalized_rows(counts, self.startprob_)[0]
        if "t" in self.params:
            counts = np.maximum(np.asarray(self.transmat_prior) - 1.0 + trans, 0.0)
            counts = np.where(self.transmat_ == 0, 0.0, counts)
            self.transmat_ = _normalized_rows(counts, self.transmat_)
        collapsed = self._emission_mstep(tuple(emission))
        return self._renew(data, collapsed, old_start, old_trans, tuple(emission))

    def _renew(self, data, collapsed, old_start, old_trans, emission):
        """Re-seed the states whose emission update had nothing to stand on (``collapsed``:
        no occupancy, or a covariance that is not positive definite), which the M-step
        left with their previous emission parameters; returns how many.

        A state is re-seeded when a path into it is allowed (by the zeros of
        ``startprob_`` and ``transmat_`` before the update) and ``params`` lets EM change
        its emissions: ``_reseed_emissions`` puts them on the steps the other states
        explain worst (Gaussian families) or on the data's overall frequencies (discrete
        ones), and its start probability and every allowed transition into it get at
        least one step's worth, 1 / n_samples, the other entries of each row scaled to
        make room (an entry EM set to zero would otherwise stay zero for good).  A state
        no path reaches keeps everything, with a warning.  Re-seeded states are counted
        in ``n_reseeded_`` and reported by a ``CollapseWarning``.
        """
        from .gaussian_mixture import CollapseWarning

        collapsed = [int(k) for k in collapsed]
        if not collapsed:
            return 0
        reachable = _reachable(old_start, old_trans)
        can = any(letter in self.params for letter in self._emission_letters)
        renew = [k for k in collapsed if reachable[k] and can]
        kept = [k for k in collapsed if k not in renew]
        if kept:
            why = ("no path of allowed start and transition probabilities reaches them"
                   if can else "params leaves their emissions fixed")
            warnings.warn(f"State(s) {kept} had no occupancy in this iteration; {why}, so "
                          "they keep their parameters (hmmlearn would give NaN).",
                          CollapseWarning, stacklevel=4)
        if not renew:
            return 0
        self._reseed_emissions(data, renew, emission)
        floor = 1.0 / max(data.n_rows, 1)
        if "s" in self.params:
            self.startprob_ = _make_room(self.startprob_[None], renew, old_start[None] > 0,
                                         floor)[0]
        if "t" in self.params:
            self.transmat_ = _make_room(self.transmat_, renew, old_trans > 0, floor)
        self.n_reseeded_ = getattr(self, "n_reseeded_", 0) + len(renew)
        warnings.warn(f"State(s) {renew} had no occupancy in this iteration and were "
                      f"re-seeded (n_reseeded_={self.n_reseeded_}). Consider fewer states.",
                      CollapseWarning, stacklevel=4)
        return len(renew)

    def _worst_explained(self, data, excluded, n):
        """The ``n`` observed steps of X (in float64) whose best log-density under the
        states other than ``excluded`` is lowest (ties: the first), by blocks of rows;
        fewer when X has fewer observed steps."""
        survivors = np.setdiff1d(np.arange(self.n_components), excluded)
        keep_v, keep_i = np.empty(0), np.empty(0, dtype=np.int64)
        keep_x = np.empty((0, data.X.shape[1]))
        for start, block in row_blocks(data.X):
            rows = np.flatnonzero(self._observed(block))
            if survivors.size:
                v = self._emission_log_prob(block[rows])[:, survivors].max(axis=1)
            else:
                v = np.zeros(rows.size)
            v = np.concatenate([keep_v, v])
            i = np.concatenate([keep_i, start + rows])
            x = np.concatenate([keep_x, block[rows].astype(np.float64)])
            order = np.lexsort((i, v))[:n]
            keep_v, keep_i, keep_x = v[order], i[order], x[order]
        return keep_x

    def _observed(self, X):
        """Which rows of X are observed steps (all, unless the family has missing ones)."""
        return np.ones(X.shape[0], dtype=bool)

    def _get_parameters(self):
        return (self.startprob_.copy(), self.transmat_.copy()) + tuple(
            np.array(getattr(self, name)) for name in self._emission_attributes)

    def _set_parameters(self, params):
        self.startprob_, self.transmat_ = params[0], params[1]
        for name, value in zip(self._emission_attributes, params[2:]):
            setattr(self, name, value)

    # ------------------------------------------------------------------ inference
    def _inference_input(self, X, lengths):
        self._check_is_fitted()
        self._check_parameters()
        data = self._sequences(X, lengths, reset=False)
        self._runtime = self._resolve_runtime()
        return data

    @_lends_scratch
    def _score(self, X, lengths, posteriors):
        data = self._inference_input(X, lengths)
        if not posteriors:
            with limit_blas_threads():
                return self._log_likelihood(data), None
        total, parts = 0.0, []
        with limit_blas_threads():
            for lo, _, log_p, post, _, _ in self._posteriors(data):
                total += log_p
                parts.append((lo, post.copy()))  # (post is a view of reused work arrays)
        parts.sort(key=lambda part: part[0])  # (the blocks of a long sequence come last first)
        return total, (np.concatenate([p for _, p in parts]) if parts else
                       np.empty((0, self.n_components)))

    def score(self, X: ArrayLike, lengths: Optional[ArrayLike] = None) -> float:
        """Log-likelihood of X (all its sequences) under the model."""
        return self._score(X, lengths, False)[0]

    def score_samples(self, X: ArrayLike, lengths: Optional[ArrayLike] = None
                      ) -> tuple[float, Floats]:
        """(log-likelihood of X, state posteriors of every sample (n_samples, n_components))."""
        return self._score(X, lengths, True)

    def predict_proba(self, X: ArrayLike, lengths: Optional[ArrayLike] = None) -> Floats:
        """State posteriors ``P(z_t = k | the sequence)``, shape (n_samples, n_components)."""
        return self._score(X, lengths, True)[1]

    @_lends_scratch
    def decode(self, X: ArrayLike, lengths: Optional[ArrayLike] = None,
               algorithm: Optional[str] = None) -> tuple[float, Labels]:
        """(log-probability, states (n_samples,)): the most probable state path of each
        sequence ("viterbi": its joint log-probability, summed over the sequences), or
        each sample's most probable state ("map": then, as hmmlearn, the first value is
        the sum of those states' posterior probabilities)."""
        algorithm = self.algorithm if algorithm is None else algorithm
        if algorithm not in ("viterbi", "map"):
            raise ValueError(f"Unknown decoder {algorithm!r}; use 'viterbi' or 'map'.")
        if algorithm == "map":
            _, post = self._score(X, lengths, True)
            return float(post.max(axis=1).sum()), post.argmax(axis=1).astype(np.int32)
        data = self._inference_input(X, lengths)
        log_start, log_trans = self._log_start_trans()
        total, paths = 0.0, []
        with limit_blas_threads():
            for Xc, offsets in data.chunks():
                log_prob = np.empty(offsets.shape[0] - 1)
                path = np.empty(Xc.shape[0], dtype=np.int32)
                self._hmm_kernels().decode_viterbi(log_start, log_trans,
                                                   self._emission_log_prob(Xc), offsets,
                                                   log_prob, path, self._runtime[1])
                total += float(np.sum(log_prob))
                paths.append(path)
        return total, np.concatenate(paths) if paths else np.empty(0, dtype=np.int32)

    def predict(self, X: ArrayLike, lengths: Optional[ArrayLike] = None) -> Labels:
        """The state of every sample, by ``algorithm``'s decoding."""
        return self.decode(X, lengths)[1]

    def sample(self, n_samples: int = 1, random_state: Any = None,
               currstate: Optional[int] = None) -> tuple[Any, Labels]:
        """(X (n_samples, n_features), states (n_samples,)) drawn from the model, with
        hmmlearn's draws for the same ``random_state`` (None: the model's)."""
        self._check_is_fitted()
        self._check_parameters()
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be an int >= 1; got {n_samples!r}.")
        rs = check_random_state(self.random_state if random_state is None else random_state)
        trans_cdf = np.cumsum(self.transmat_, axis=1)
        if currstate is None:
            currstate = int((np.cumsum(self.startprob_) > rs.rand()).argmax())
        elif not (isinstance(currstate, numbers.Integral) and 0 <= currstate < self.n_components):
            raise ValueError(f"currstate must be a state in [0, {self.n_components}); got "
                             f"{currstate!r}.")
        states = [int(currstate)]
        X = [self._generate_sample_from_state(states[0], rs)]
        for _ in range(n_samples - 1):
            states.append(int((trans_cdf[states[-1]] > rs.rand()).argmax()))
            X.append(self._generate_sample_from_state(states[-1], rs))
        return np.atleast_2d(X), np.array(states, dtype=int)

    def get_stationary_distribution(self) -> Floats:
        """The stationary distribution of the states: the left eigenvector of
        ``transmat_`` for eigenvalue 1, normalised to sum to one."""
        from scipy import linalg

        self._check_is_fitted()
        eigvals, eigvecs = linalg.eig(self.transmat_.T)
        vec = np.real_if_close(eigvecs[:, np.argmax(eigvals)])
        return vec / vec.sum()

    def _n_parameters(self):
        k = self.n_components
        sizes = {"s": k - 1, "t": k * (k - 1), **self._emission_sizes()}
        return sum(v for letter, v in sizes.items() if letter in self.params)

    @_lends_scratch
    def _criterion(self, X, lengths, penalty):
        data = self._inference_input(X, lengths)
        with limit_blas_threads():
            log_l = self._log_likelihood(data)
        return -2 * log_l + self._n_parameters() * penalty(data.n_rows)

    def aic(self, X: ArrayLike, lengths: Optional[ArrayLike] = None) -> float:
        """Akaike information criterion: -2 log L + 2 (free parameters ``params`` fits)."""
        return self._criterion(X, lengths, lambda n: 2.0)

    def bic(self, X: ArrayLike, lengths: Optional[ArrayLike] = None) -> float:
        """Bayesian information criterion: -2 log L + (free parameters) log(n_samples)."""
        return self._criterion(X, lengths, np.log)


def _refuse_impossible(log_prob):
    impossible = np.flatnonzero(~np.isfinite(log_prob))
    if impossible.size:
        raise ValueError(
            f"A sequence (number {int(impossible[0])} of its chunk) has probability zero "
            "under the model: no path of allowed transitions explains it (zeros in "
            "startprob_ or transmat_, or an emission of probability zero).")


def check_counts(X, name="X", owner="this estimator"):
    """X as a C-contiguous float64 array of non-negative integer counts."""
    from ._validation import check_array

    arr = check_array(X, name=name, owner=owner, dtype=np.float64)
    if (arr < 0).any() or not np.all(arr == np.round(arr)):
        raise ValueError(f"{name} must hold non-negative integer counts for {owner}.")
    return arr


def overall_frequencies(counts):
    """The frequencies of the (K, n_symbols) expected ``counts`` summed over the states
    (uniform when there are none): the emissions of a one-state model."""
    total = counts.sum(axis=0)
    return total / total.sum() if total.sum() > 0 else np.full(total.shape, 1.0 / total.size)


def row_sums(X):
    """Each row's sum, (n,), by blocks of rows."""
    return np.concatenate([block.sum(axis=1) for _, block in row_blocks(X)]
                          or [np.zeros(0, dtype=X.dtype)])


def mean_and_variance(X):
    """The mean and variance of all of X's entries, in float64, by blocks of rows (the
    variance about the mean, in a second pass)."""
    n = X.shape[0] * X.shape[1]
    mean = sum(float(block.sum(dtype=np.float64)) for _, block in row_blocks(X)) / max(n, 1)
    scatter = sum(float(np.square(block - mean).sum()) for _, block in row_blocks(X))
    return mean, scatter / max(n, 1)


def count_log_likelihood(X, log_table, row_term):
    """sum_j x_j log table_kj + row_term(x), (n, K): the log-density of count emissions
    (Poisson, multinomial).  A table entry of zero gives log tiny, not -inf, so that a
    zero count times it is 0 (xlogy), not NaN."""
    log_table = np.maximum(log_table, np.log(np.finfo(np.float64).tiny))
    return X @ log_table.T + row_term[:, None]
