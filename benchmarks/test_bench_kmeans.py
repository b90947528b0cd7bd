"""pytest-benchmark suite: one Lloyd fit per usable fastem backend, plus scikit-learn.

Not part of the normal test run: the repository's pytest config collects only ``tests/``
and passes ``--benchmark-disable``.  Run it explicitly:

    python -m pytest benchmarks --benchmark-enable

Every case is also a correctness test: its inertia must match scikit-learn's, started
from the same centers for the same iterations, within 1e-4 relative (float32 data).
For the cross-implementation table (big workloads, memory, k-means++) see compare.py.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import fastem

# compare.py sits next to this file but benchmarks/ is not a package; load it by path so
# the suite uses the very same data generator whatever pytest's import mode is.
_spec = importlib.util.spec_from_file_location("fastem_bench_compare",
                                               Path(__file__).with_name("compare.py"))
compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare)

N_SAMPLES, N_FEATURES, N_CLUSTERS, DTYPE = 100_000, 16, 16, "float32"
N_ITER = 10
RTOL = 1e-4  # float32: the libraries accumulate distances with different precision

_STATUS = fastem.available_backends()
BACKENDS = [b for b in compare.FASTEM_BACKENDS if _STATUS[b] is None]


@pytest.fixture(scope="module")
def data():
    X = compare.make_blobs(N_SAMPLES, N_FEATURES, N_CLUSTERS, DTYPE)
    init = np.ascontiguousarray(X[compare.initial_rows(N_SAMPLES, N_CLUSTERS)])
    return X, init


@pytest.fixture(scope="module")
def sklearn_inertia(data):
    from sklearn.cluster import KMeans

    X, init = data
    km = KMeans(N_CLUSTERS, init=init, n_init=1, max_iter=N_ITER, tol=0.0, algorithm="lloyd")
    return km.fit(X).inertia_


def _run(benchmark, make_estimator, X, rounds):
    # One warm-up round outside the measurement: numba compiles (or loads its cache) there.
    return benchmark.pedantic(lambda: make_estimator().fit(X), rounds=rounds, warmup_rounds=1,
                              iterations=1)


def test_sklearn(benchmark, data, sklearn_inertia):
    from sklearn.cluster import KMeans

    X, init = data
    km = _run(benchmark, lambda: KMeans(N_CLUSTERS, init=init, n_init=1, max_iter=N_ITER,
                                        tol=0.0, algorithm="lloyd"), X, rounds=10)
    benchmark.extra_info.update(n_iter=int(km.n_iter_), inertia=float(km.inertia_))
    assert km.inertia_ == pytest.approx(sklearn_inertia, rel=RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fastem(benchmark, data, sklearn_inertia, backend):
    X, init = data
    # the numpy reference takes ~1 s per fit here: fewer rounds keep the suite short
    km = _run(benchmark, lambda: fastem.KMeans(N_CLUSTERS, init=init, n_init=1,
                                               max_iter=N_ITER, tol=0.0, backend=backend),
              X, rounds=3 if backend == "numpy" else 10)
    benchmark.extra_info.update(n_iter=int(km.n_iter_), inertia=float(km.inertia_),
                                backend=km.backend_)
    assert km.backend_ == backend
    assert km.inertia_ == pytest.approx(sklearn_inertia, rel=RTOL)
