"""Hidden Markov models with multinomial emissions: ``MultinomialHMM``, a drop-in for
hmmlearn's (its meaning since 0.3: each step is a vector of counts over n_features
outcomes, from ``n_trials`` draws).

    log p(x | k) = log n! - sum_j log x_j! + sum_j x_j log p_kj,   n = sum_j x_j

The M-step is the maximum-likelihood one, as hmmlearn's: p_kj ~ sum_t gamma_t(k) x_tj
(a state with no occupancy keeps its row).
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import numpy as np

from ._hmm import (BaseHMM, _check_distribution, _normalized_rows, check_counts,
                   count_log_likelihood, overall_frequencies, row_sums)
from ._validation import Interval

if TYPE_CHECKING:
    from typing import Any, Optional


class MultinomialHMM(BaseHMM):
    """Hidden Markov model with multinomial emissions, fitted by Baum-Welch.

    Parameters
    ----------
    n_components : int, default=1
    n_trials : None, int or array of int, default=None
        The number of draws of every step (each row of X must sum to it); None: each
        row's own sum (``fit`` then sets it to them, as hmmlearn does).
    startprob_prior, transmat_prior : float or array, default=1.0
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
        "n_trials": [None, Interval(numbers.Integral, 0, None), "array-like"],
    }

    def __init__(self, n_components: int = 1, n_trials: Any = None, startprob_prior: Any = 1.0,
                 transmat_prior: Any = 1.0, algorithm: str = "viterbi", random_state: Any = None,
                 n_iter: int = 10, tol: float = 1e-2, verbose: bool = False,
                 params: str = "ste", init_params: str = "ste", implementation: str = "log",
                 backend: Optional[str] = None, n_threads: Optional[int] = None) -> None:
        super().__init__(n_components, startprob_prior, transmat_prior, algorithm, random_state,
                         n_iter, tol, verbose, params, init_params, implementation, backend,
                         n_threads)
        self.n_trials = n_trials

    def _check_input(self, X, *, owner, copy, name="X"):
        return check_counts(X, name=name, owner=owner)

    def _sequences(self, X, lengths, *, reset):
        data = super()._sequences(X, lengths, reset=reset)
        if self.n_trials is not None:
            totals = row_sums(data.X)
            if not np.all(totals == np.asarray(self.n_trials)):
                raise ValueError("Every row of X must sum to n_trials (the number of draws "
                                 "of a step); set n_trials=None to take each row's own sum.")
        return data

    def _init_emissions(self, X, random_state):
        self.n_features = X.shape[1]
        if self.n_trials is None:
            self.n_trials = row_sums(X).astype(np.int64)
        if self._needs_init("e", "emissionprob_"):
            table = random_state.rand(self.n_components, self.n_features)
            self.emissionprob_ = table / table.sum(axis=1, keepdims=True)

    def _check_emissions(self):
        table = np.atleast_2d(self.emissionprob_)
        self.emissionprob_ = _check_distribution(table, (self.n_components, table.shape[1]),
                                                 "emissionprob_")
        self.n_features = table.shape[1]

    def _emission_sizes(self):
        return {"e": self.n_components * (self.n_features - 1)}

    def _emission_log_prob(self, X):
        from scipy.special import gammaln

        with np.errstate(divide="ignore"):
            log_p = np.log(self.emissionprob_)
        return count_log_likelihood(X, log_p, gammaln(X.sum(axis=1) + 1)
                                    - gammaln(X + 1).sum(axis=1))

    def _emission_stats(self, X, post):
        return (post.T @ X,)

    def _emission_mstep(self, stats):
        (obs,) = stats
        if "e" in self.params:
            self.emissionprob_ = _normalized_rows(obs, self.emissionprob_)
        return np.flatnonzero(~(obs.sum(axis=1) > 0))

    def _reseed_emissions(self, data, states, stats):
        """A re-seeded state draws with the data's overall frequencies."""
        self.emissionprob_[states] = overall_frequencies(stats[0])

    def _generate_sample_from_state(self, state, random_state):
        trials = np.unique(np.asarray(self.n_trials))
        if trials.size != 1:
            raise ValueError("For sampling, a single n_trials must be given.")
        return random_state.multinomial(int(trials[0]), self.emissionprob_[state])
