"""K-means on a TF-IDF-like sparse matrix: fastem against scikit-learn, in one run.

    python benchmarks/sparse_kmeans.py                  # 100,000 x 20,000, K = 64
    python benchmarks/sparse_kmeans.py --rows 20000 --repeats 1

The data: documents of about ``--words`` distinct words, each drawn from one of K
topics (a Zipf-like word distribution per topic over a shared vocabulary, plus
background words), weighted by TF-IDF and scaled to unit length, as
``TfidfVectorizer`` gives: a CSR float64 matrix.  Both libraries start from the same
centers (K rows of the matrix, densified) and run Lloyd with ``tol=0``; seconds per
iteration are the slope between a short and a long fit (set-up cancels out), median of
``--repeats``; the quality figure is each fit's inertia, and the labels are compared.
"""

import argparse
import statistics
import time

import numpy as np
import scipy.sparse as sp

# the slope between a short and a long fit, as dask_scale.py measures it (this script's
# folder is on sys.path when it runs)
from dask_scale import _slope


def tfidf_like(n, d, k, words, seed=0):
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, d + 1)
    topic_words = np.stack([rng.permutation(d) for _ in range(k)])  # each topic's favourites
    zipf = 1.0 / ranks ** 1.1
    zipf /= zipf.sum()
    topic = rng.integers(0, k, n)
    counts = rng.poisson(words, n).clip(1)
    rows, cols = [], []
    for i in range(n):
        m = counts[i]
        own = topic_words[topic[i], rng.choice(d, size=m, p=zipf)]
        background = rng.integers(0, d, max(1, m // 4))
        c = np.unique(np.concatenate([own, background]))
        rows.append(np.full(c.size, i))
        cols.append(c)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    tf = 1.0 + np.log1p(rng.poisson(1.0, rows.size))
    X = sp.csr_matrix((tf, (rows, cols)), shape=(n, d))
    df = np.bincount(X.indices, minlength=d)
    X.data *= np.log((1 + n) / (1 + df[X.indices])) + 1.0
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = sp.diags(1.0 / np.maximum(norms, 1e-300)) @ X
    X.sort_indices()
    return X.tocsr(), topic


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--features", type=int, default=20_000)
    p.add_argument("--clusters", type=int, default=64)
    p.add_argument("--words", type=int, default=100, help="distinct words per document")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    import warnings

    from sklearn.cluster import KMeans as SKKMeans
    from threadpoolctl import threadpool_limits

    import fastem

    t0 = time.perf_counter()
    X, _ = tfidf_like(args.rows, args.features, args.clusters, args.words)
    print(f"data: {X.shape[0]:,} x {X.shape[1]:,} CSR float64, {X.nnz / X.shape[0]:.0f} "
          f"stored entries a row ({X.nnz:,}), K = {args.clusters} "
          f"(made in {time.perf_counter() - t0:.0f} s)")
    init = X[np.random.default_rng(1).choice(X.shape[0], args.clusters, replace=False)].toarray()
    short, long = 2, 8
    runs = {
        "scikit-learn (lloyd)": lambda n: SKKMeans(args.clusters, init=init, n_init=1,
                                                   max_iter=n, tol=0, algorithm="lloyd").fit(X),
        "fastem cython": lambda n: fastem.KMeans(args.clusters, init=init, max_iter=n, tol=0,
                                                 backend="cython").fit(X),
        "fastem numba": lambda n: fastem.KMeans(args.clusters, init=init, max_iter=n, tol=0,
                                                backend="numba").fit(X),
    }
    results = {}
    with warnings.catch_warnings(), threadpool_limits(limits=None):
        warnings.simplefilter("ignore")
        for fit in runs.values():
            fit(1)  # compile / warm
        for rep in range(args.repeats):
            for name, fit in runs.items():
                per_iter, est = _slope(fit, short, long)
                results.setdefault(name, []).append((per_iter, est))
            print(f"repeat {rep + 1}/{args.repeats} done")
    ref_t = statistics.median(t for t, _ in results["scikit-learn (lloyd)"])
    ref = results["scikit-learn (lloyd)"][-1][1]
    print(f"\n| run | s/iter (median of {args.repeats}) | scikit-learn / this | inertia "
          f"after {long} iterations | labels equal to scikit-learn's |")
    print("|---|---|---|---|---|")
    for name, vals in results.items():
        t = statistics.median(v for v, _ in vals)
        est = vals[-1][1]
        same = bool(np.array_equal(est.labels_, ref.labels_))
        print(f"| {name} | {t:.4f} | {ref_t / t:.2f}x | {est.inertia_:.8g} | {same} |")


if __name__ == "__main__":
    main()
