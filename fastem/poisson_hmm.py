"""Hidden Markov models with Poisson emissions: ``PoissonHMM``, a drop-in for hmmlearn's.

State k emits counts x_j ~ Poisson(lambda_kj), independent over the features:

    log p(x | k) = sum_j x_j log lambda_kj - lambda_kj - log x_j!

The M-step is hmmlearn's, with its Gamma prior (``lambdas_prior`` alpha,
``lambdas_weight`` beta): with n the total posterior mass of all states (as hmmlearn
defines it) and xbar_k the posterior mean of x under state k,

    lambda_k = (alpha + n xbar_k) / (beta + n)

(xbar_k itself without a prior; a state with no occupancy keeps its rates).
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import numpy as np

from ._hmm import BaseHMM, check_counts, count_log_likelihood, mean_and_variance
from ._validation import Interval

if TYPE_CHECKING:
    from typing import Any, Optional


class PoissonHMM(BaseHMM):
    """Hidden Markov model with Poisson emissions, fitted by Baum-Welch.

    Parameters
    ----------
    n_components : int, default=1
    startprob_prior, transmat_prior : float or array, default=1.0
    lambdas_prior, lambdas_weight : float or array, default=0.0
        Gamma prior of the rates: shape alpha and rate beta (0: none).
    algorithm, random_state, n_iter, tol, verbose, implementation, backend, n_threads
        As ``GaussianHMM``.
    params, init_params : str, default="stl"
        "s" startprob, "t" transmat, "l" lambdas.

    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    lambdas_ : ndarray of shape (n_components, n_features)
    monitor_ : ConvergenceMonitor
    """

    _emission_letters = "l"
    _emission_attributes = ("lambdas_",)
    _parameter_constraints = {
        **BaseHMM._parameter_constraints,
        "lambdas_prior": [Interval(numbers.Real, 0.0, None), "array-like"],
        "lambdas_weight": [Interval(numbers.Real, 0.0, None), "array-like"],
    }

    def __init__(self, n_components: int = 1, startprob_prior: Any = 1.0,
                 transmat_prior: Any = 1.0, lambdas_prior: Any = 0.0, lambdas_weight: Any = 0.0,
                 algorithm: str = "viterbi", random_state: Any = None, n_iter: int = 10,
                 tol: float = 1e-2, verbose: bool = False, params: str = "stl",
                 init_params: str = "stl", implementation: str = "log",
                 backend: Optional[str] = None, n_threads: Optional[int] = None) -> None:
        super().__init__(n_components, startprob_prior, transmat_prior, algorithm, random_state,
                         n_iter, tol, verbose, params, init_params, implementation, backend,
                         n_threads)
        self.lambdas_prior = lambdas_prior
        self.lambdas_weight = lambdas_weight

    def _check_input(self, X, *, owner, copy, name="X"):
        return check_counts(X, name=name, owner=owner)

    def _init_emissions(self, X, random_state):
        self.n_features = X.shape[1]
        if self._needs_init("l", "lambdas_"):
            mean, var = mean_and_variance(X)
            if not (mean > 0 and var > 0):
                raise ValueError("PoissonHMM's initial rates are drawn from the counts' mean "
                                 "and variance, which must be positive; set lambdas_ by hand "
                                 "and leave 'l' out of init_params for such data.")
            self.lambdas_ = random_state.gamma(shape=mean ** 2 / var, scale=var / mean,
                                               size=(self.n_components, self.n_features))

    def _check_emissions(self):
        lam = np.atleast_2d(np.array(self.lambdas_, dtype=np.float64))
        if lam.shape[0] != self.n_components or not np.isfinite(lam).all() or (lam < 0).any():
            raise ValueError("lambdas_ must be finite and non-negative, of shape "
                             f"({self.n_components}, n_features); got shape {lam.shape}.")
        self.lambdas_ = lam
        self.n_features = lam.shape[1]

    def _flat_emission_priors(self):
        return bool(np.all(np.asarray(self.lambdas_prior) == 0)
                    and np.all(np.asarray(self.lambdas_weight) == 0))

    def _emission_sizes(self):
        return {"l": self.n_components * self.n_features}

    def _emission_log_prob(self, X):
        from scipy.special import gammaln

        with np.errstate(divide="ignore"):
            log_lam = np.log(self.lambdas_)
        out = count_log_likelihood(X, log_lam, -gammaln(X + 1).sum(axis=1))
        return out - self.lambdas_.sum(axis=1)[None, :]

    def _emission_stats(self, X, post):
        return post.sum(axis=0), post.T @ X

    def _emission_mstep(self, stats):
        nk, obs = stats
        empty = np.flatnonzero(~(nk > 0))
        if "l" not in self.params:
            return empty
        n = nk.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            xbar = obs / nk[:, None]
            lam = (np.asarray(self.lambdas_prior) + n * xbar) / (
                np.asarray(self.lambdas_weight) + n)
        lam[empty] = self.lambdas_[empty]
        self.lambdas_ = lam
        return empty

    def _reseed_emissions(self, data, states, stats):
        """A re-seeded state's rates are the data's mean counts."""
        nk, obs = stats
        if "l" in self.params and nk.sum() > 0:
            self.lambdas_[states] = obs.sum(axis=0) / nk.sum()

    def _generate_sample_from_state(self, state, random_state):
        return random_state.poisson(self.lambdas_[state])
