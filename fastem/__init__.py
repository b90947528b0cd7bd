"""fastem: fast Expectation-Maximization clustering on the CPU.

Importing fastem is cheap: no numba, no compiled kernels are loaded until a model is
fitted (see ``fastem._dispatch``).
"""

from ._config import config_context, get_config, set_config
from ._dispatch import available_backends
from ._persist import load
from ._stream import Chunks
from .bernoulli_mixture import BernoulliMixture
from .categorical_hmm import CategoricalHMM
from .categorical_mixture import CategoricalMixture
from .factor_analysis import FactorAnalysis
from .gaussian_hmm import GaussianHMM
from .gmm_hmm import GMMHMM
from .gaussian_mixture import GaussianMixture
from .kmeans import KMeans, kmeans_plusplus
from .lda import LatentDirichletAllocation
from .mfa import MixtureOfFactorAnalyzers
from .minibatch_kmeans import MiniBatchKMeans
from .multinomial_hmm import MultinomialHMM
from .multinomial_mixture import MultinomialMixture
from .plsa import PLSA
from .poisson_hmm import PoissonHMM
from .ppca import PPCA

__version__ = "0.1.0"

__all__ = [
    "BernoulliMixture",
    "CategoricalHMM",
    "CategoricalMixture",
    "Chunks",
    "FactorAnalysis",
    "GaussianHMM",
    "GMMHMM",
    "GaussianMixture",
    "KMeans",
    "LatentDirichletAllocation",
    "MiniBatchKMeans",
    "MixtureOfFactorAnalyzers",
    "available_backends",
    "config_context",
    "get_config",
    "kmeans_plusplus",
    "load",
    "MultinomialHMM",
    "MultinomialMixture",
    "PLSA",
    "PoissonHMM",
    "PPCA",
    "set_config",
    "__version__",
]
