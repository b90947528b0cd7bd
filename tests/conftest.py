"""Shared test setup.

numba's thread pool is sized when numba is first imported; we ask for 4 threads so
thread-count invariance can be tested with more threads than this 2-core machine has.
Compiled kernels are shared by all tests through numba's on-disk cache, and test data
stay small so compile time dominates as little as possible.
"""

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "4")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fastem._dispatch import KERNEL_BACKENDS, available_backends  # noqa: E402

_STATUS = available_backends()
BACKENDS = [b for b in KERNEL_BACKENDS if _STATUS[b] is None]
FAST_BACKENDS = [b for b in BACKENDS if b != "numpy"]


def pytest_report_header(config):
    return "fastem backends: " + ", ".join(
        f"{b}={'ok' if r is None else 'unavailable (' + r + ')'}" for b, r in _STATUS.items())


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(params=FAST_BACKENDS)
def fast_backend(request):
    return request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


def blobs(n_samples, n_features, n_clusters, *, seed=0, spread=0.3, scale=10.0, dtype=np.float64):
    """Well-separated Gaussian blobs: returns X and the true centers."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-scale, scale, size=(n_clusters, n_features))
    labels = rng.integers(0, n_clusters, size=n_samples)
    X = centers[labels] + spread * rng.standard_normal((n_samples, n_features))
    return X.astype(dtype), centers.astype(dtype)
