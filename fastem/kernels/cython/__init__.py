"""Cython kernels (nogil, OpenMP prange), compiled by setup.py."""
