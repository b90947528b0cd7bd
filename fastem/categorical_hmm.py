"""Hidden Markov models with categorical emissions: ``CategoricalHMM``, a drop-in for
hmmlearn's.

X is (n_samples, 1) of symbols 0..n_features-1; state k emits symbol c with probability
``emissionprob_[k, c]``.  The M-step is hmmlearn's, with its Dirichlet prior:

    emissionprob_kc ~ max(emissionprob_prior - 1 + sum_t gamma_t(k) [x_t = c], 0)

normalised over c (a state with no occupancy keeps its row).
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import numpy as np

from ._hmm import BaseHMM, _check_distribution, _normalized_rows, overall_frequencies, row_blocks
from ._validation import Interval

if TYPE_CHECKING:
    from typing import Any, Optional


def check_symbols(X, name="X", owner="CategoricalHMM", allow_missing=False):
    """X as a C-contiguous int64 (n_samples, 1) array of non-negative symbols (and, with
    ``allow_missing``, -1 for a missing observation)."""
    if hasattr(X, "tocsr"):
        raise TypeError(f"{owner} takes a dense (n_samples, 1) array of symbols, not a "
                        "sparse matrix.")
    arr = np.asarray(X)
    if arr.ndim == 1:
        raise ValueError(f"{name} must be 2-D, of shape (n_samples, 1): reshape a 1-D array "
                         "of symbols with X.reshape(-1, 1).")
    if arr.ndim != 2 or arr.shape[1] != 1:
        raise ValueError(f"{name} must have shape (n_samples, 1) (one symbol per step); got "
                         f"shape {arr.shape}.")
    if arr.dtype.kind == "f" and np.isfinite(arr).all() and np.all(arr == np.round(arr)):
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer symbols (0, 1, ...); got dtype {arr.dtype}.")
    lowest = -1 if allow_missing else 0
    if arr.size and arr.min() < lowest:
        raise ValueError(f"{name} must hold non-negative symbols"
                         + (" (or -1 for a missing observation)" if allow_missing else "")
                         + f"; got {arr.min()}.")
    return np.ascontiguousarray(arr, dtype=np.int64)


class CategoricalHMM(BaseHMM):
    """Hidden Markov model with categorical emissions, fitted by Baum-Welch.

    X is an (n_samples, 1) array of symbols 0 .. n_features - 1; a symbol of -1 is a
    missing observation, a step every state explains with probability one (the chain
    runs through it, it counts toward no emission, and ``decode`` gives it a state).

    Parameters
    ----------
    n_components : int, default=1
        Number of states.
    startprob_prior, transmat_prior : float or array, default=1.0
        Dirichlet priors of ``startprob_`` and of each row of ``transmat_`` (1: none).
    emissionprob_prior : float or array, default=1.0
        Dirichlet prior of each row of ``emissionprob_`` (1: none).
    n_features : int or None, default=None
        Number of symbols; None: the largest symbol of the training data plus one (set
        by ``fit``, as hmmlearn does).
    algorithm, random_state, n_iter, tol, verbose, implementation, backend, n_threads
        As ``GaussianHMM``.
    params, init_params : str, default="ste"
        "s" startprob, "t" transmat, "e" emissionprob.

    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    emissionprob_ : ndarray of shape (n_components, n_features)
    monitor_ : ConvergenceMonitor
    """

    _emission_letters = "e"
    _emission_attributes = ("emissionprob_",)
    _parameter_constraints = {
        **BaseHMM._parameter_constraints,
        "emissionprob_prior": [Interval(numbers.Real, 0.0, None), "array-like"],
        "n_features": [None, Interval(numbers.Integral, 1, None)],
    }

    def __init__(self, n_components: int = 1, startprob_prior: Any = 1.0,
                 transmat_prior: Any = 1.0, *, emissionprob_prior: Any = 1.0,
                 n_features: Optional[int] = None, algorithm: str = "viterbi",
                 random_state: Any = None, n_iter: int = 10, tol: float = 1e-2,
                 verbose: bool = False, params: str = "ste", init_params: str = "ste",
                 implementation: str = "log", backend: Optional[str] = None,
                 n_threads: Optional[int] = None) -> None:
        super().__init__(n_components, startprob_prior, transmat_prior, algorithm, random_state,
                         n_iter, tol, verbose, params, init_params, implementation, backend,
                         n_threads)
        self.emissionprob_prior = emissionprob_prior
        self.n_features = n_features

    def _check_input(self, X, *, owner, copy, name="X"):
        return check_symbols(X, name=name, owner=owner, allow_missing=True)

    def _sequences(self, X, lengths, *, reset):
        data = super()._sequences(X, lengths, reset=reset)
        top = self._largest_symbol(data.X)
        if self.n_features is not None and top >= self.n_features:
            raise ValueError(f"Largest symbol is {top} but the model only emits symbols up "
                             f"to {self.n_features - 1} (n_features={self.n_features}).")
        return data

    @staticmethod
    def _largest_symbol(X):
        """max(X), by blocks of rows (-1 for no rows, or only missing ones)."""
        return max((int(block.max()) for _, block in row_blocks(X)), default=-1)

    def _init_emissions(self, X, random_state):
        if self.n_features is None:
            top = self._largest_symbol(X)
            if top < 0:
                raise ValueError("X has no observed symbol (every entry is -1): set "
                                 "n_features, or fit on observed data.")
            self.n_features = top + 1
        if self._needs_init("e", "emissionprob_"):
            table = random_state.rand(self.n_components, self.n_features)
            self.emissionprob_ = table / table.sum(axis=1, keepdims=True)

    def _check_emissions(self):
        f = self.n_features if self.n_features is not None else np.shape(self.emissionprob_)[-1]
        self.emissionprob_ = _check_distribution(np.atleast_2d(self.emissionprob_),
                                                 (self.n_components, f), "emissionprob_")
        self.n_features = f

    def _flat_emission_priors(self):
        return bool(np.all(np.asarray(self.emissionprob_prior) == 1.0))

    def _emission_sizes(self):
        return {"e": self.n_components * (self.n_features - 1)}

    def _emission_log_prob(self, X):
        with np.errstate(divide="ignore"):
            log_table = np.log(self.emissionprob_.T)  # (n_features, K)
        missing = X[:, 0] < 0
        out = self._work().empty("log_emission", (X.shape[0], self.n_components))
        np.take(log_table, np.where(missing, 0, X[:, 0]), axis=0, out=out, mode="clip")
        out[missing] = 0.0  # an unobserved step: probability one under every state
        return out

    def _emission_stats(self, X, post):
        """The expected count of every (state, symbol) pair, (K, n_features); a missing
        step (-1) counts toward no symbol."""
        missing = X[:, 0] < 0
        if missing.any():
            post = np.where(missing[:, None], 0.0, post)
        counts = np.empty((post.shape[1], self.n_features))
        self._hmm_kernels().symbol_counts(np.where(missing, 0, X[:, 0]), post, counts,
                                          self._runtime[1])
        return (counts,)

    def _emission_mstep(self, stats):
        (counts,) = stats
        counts = np.maximum(np.asarray(self.emissionprob_prior) - 1.0 + counts, 0.0)
        if "e" in self.params:
            self.emissionprob_ = _normalized_rows(counts, self.emissionprob_)
        return np.flatnonzero(~(counts.sum(axis=1) > 0))

    def _reseed_emissions(self, data, states, stats):
        """A re-seeded state emits with the data's overall symbol frequencies."""
        self.emissionprob_[states] = overall_frequencies(stats[0])

    def _observed(self, X):
        return X[:, 0] >= 0

    def _generate_sample_from_state(self, state, random_state):
        cdf = np.cumsum(self.emissionprob_[state, :])
        return [(cdf > random_state.rand()).argmax()]
