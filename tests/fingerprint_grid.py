"""The fingerprint grid: a hash of every fitted attribute of a grid of fits.

Recorded once before a redesign (``python tests/fingerprint_grid.py --write``) and
checked by ``tests/test_fingerprints.py`` ever after: a refactoring that changes any
fitted value, in any model, backend, dtype, thread count or data source, changes a
hash.  The grid is every model x backend x dtype x n_threads x source, where the
source is the array in memory (one chunk), the array in memory cut into small chunks
(``chunk_bytes``), or the same rows as ``fastem.Chunks`` under the same small chunks.

The hash covers each fitted attribute's name, dtype, shape and bytes (floats by their
exact binary value), except ``backend_``, which names the backend by design.
"""

import argparse
import hashlib
import json
import os
import sys
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RECORD = os.path.join(HERE, "data", "fingerprints.json")
#: Small chunks: 96 float64 rows of 4 features (48 float32 rows of 8 features ...), so
#: the 600-row data sets span several chunks and the chunk-order sums are exercised.
SMALL_CHUNK_BYTES = 3072


def _gaussian_data(dtype):
    rng = np.random.default_rng(7)
    centers = rng.uniform(-6, 6, size=(4, 4))
    X = centers[rng.integers(0, 4, 600)] + rng.standard_normal((600, 4))
    return X.astype(dtype)


def _binary_data(dtype):
    rng = np.random.default_rng(8)
    p = rng.uniform(0.1, 0.9, size=(3, 6))
    return (rng.uniform(size=(600, 6)) < p[rng.integers(0, 3, 600)]).astype(dtype)


def _count_data(dtype):
    rng = np.random.default_rng(9)
    return rng.poisson(rng.uniform(0.5, 4.0, size=(3, 6))[rng.integers(0, 3, 600)]).astype(dtype)


def _categorical_data(dtype):
    rng = np.random.default_rng(10)
    return rng.integers(0, 4, size=(600, 5)).astype(dtype)


def models():
    """(name, factory(backend, n_threads), data(dtype), takes Chunks) of the grid."""
    import fastem

    def km(**kw):
        return lambda b, t: fastem.KMeans(random_state=0, backend=b, n_threads=t, **kw)

    def gm(cov):
        return lambda b, t: fastem.GaussianMixture(3, covariance_type=cov, random_state=0,
                                                   max_iter=20, backend=b, n_threads=t)

    out = [
        ("kmeans-lloyd", km(n_clusters=5, algorithm="lloyd"), _gaussian_data, True),
        ("kmeans-hamerly", km(n_clusters=5, algorithm="hamerly"), _gaussian_data, True),
        ("kmeans-elkan-random", km(n_clusters=5, algorithm="elkan", init="random"),
         _gaussian_data, True),
        ("kmeans-yinyang-k70", km(n_clusters=70, algorithm="yinyang", max_iter=30),
         _gaussian_data, True),
        ("minibatch", lambda b, t: fastem.MiniBatchKMeans(
            5, batch_size=64, random_state=0, backend=b, n_threads=t), _gaussian_data, False),
    ]
    out += [(f"gmm-{cov}", gm(cov), _gaussian_data, True)
            for cov in ("full", "tied", "diag", "spherical")]
    out += [
        ("bernoulli", lambda b, t: fastem.BernoulliMixture(3, random_state=0, max_iter=20,
                                                           backend=b, n_threads=t),
         _binary_data, True),
        ("multinomial", lambda b, t: fastem.MultinomialMixture(3, random_state=0, max_iter=20,
                                                               backend=b, n_threads=t),
         _count_data, True),
        ("categorical", lambda b, t: fastem.CategoricalMixture(3, random_state=0, max_iter=20,
                                                               backend=b, n_threads=t),
         _categorical_data, True),
    ]
    return out


def _update(h, value):
    if isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    elif isinstance(value, (list, tuple)):
        h.update(f"list{len(value)}".encode())
        for v in value:
            _update(h, v)
    elif isinstance(value, (float, np.floating)):
        h.update(np.float64(value).tobytes())
    else:
        h.update(repr(value).encode())


def fingerprint(est):
    """sha256 over every fitted attribute (sorted by name), ``backend_`` excepted."""
    h = hashlib.sha256()
    names = sorted(set(est._persisted_attributes()) | {
        k for k in vars(est) if k.endswith("_") and not k.startswith("__")})
    for name in names:
        if name == "backend_" or not hasattr(est, name):
            continue
        h.update(name.encode())
        _update(h, getattr(est, name))
    return h.hexdigest()[:20]


def compute(backends=None, names=None):
    """{key: hash} over the grid (restricted to ``backends`` / model ``names``)."""
    import fastem

    if backends is None:
        backends = [b for b, r in fastem.available_backends().items() if r is None]
    out = {}
    for name, factory, data, takes_chunks in models():
        if names is not None and name not in names:
            continue
        for dtype in (np.float32, np.float64):
            X = data(dtype)
            sources = {"memory": (X, None), "memory-chunked": (X, SMALL_CHUNK_BYTES)}
            if takes_chunks:
                pieces = [X[:250], X[250:251], X[251:]]  # cut off the chunk boundaries
                sources["chunks"] = (fastem.Chunks(pieces), SMALL_CHUNK_BYTES)
            for backend in backends:
                for n_threads in (1, 2):
                    for source, (data_in, chunk_bytes) in sources.items():
                        est = factory(backend, n_threads)
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            if chunk_bytes is None:
                                est.fit(data_in)
                            else:
                                with fastem.config_context(chunk_bytes=chunk_bytes):
                                    est.fit(data_in)
                        key = f"{name}/{np.dtype(dtype).name}/{backend}/t{n_threads}/{source}"
                        out[key] = fingerprint(est)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"record the grid to {RECORD}")
    args = parser.parse_args(argv)
    grid = compute()
    if args.write:
        os.makedirs(os.path.dirname(RECORD), exist_ok=True)
        with open(RECORD, "w") as fh:
            json.dump(grid, fh, indent=1, sort_keys=True)
            fh.write("\n")
    else:
        json.dump(grid, sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
