"""fastem: fast Expectation-Maximization clustering on the CPU.

Importing fastem is cheap: no numba, no compiled kernels are loaded until a model is
fitted (see ``fastem._dispatch``).
"""

from ._config import config_context, get_config, set_config
from ._dispatch import available_backends
from .gaussian_mixture import GaussianMixture
from .kmeans import KMeans, kmeans_plusplus

__version__ = "0.1.0"

__all__ = [
    "GaussianMixture",
    "KMeans",
    "available_backends",
    "config_context",
    "get_config",
    "kmeans_plusplus",
    "set_config",
    "__version__",
]
