"""numba kernels: ``@njit(parallel=True)``, cached on disk. Importing this imports numba."""
