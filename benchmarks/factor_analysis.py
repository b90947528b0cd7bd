"""Factor analysis: fastem's FactorAnalysis against scikit-learn's, in one run, the
log-likelihood beside the time.

    python benchmarks/factor_analysis.py                  # issue 18's 2,000,000 x 40
    python benchmarks/factor_analysis.py --rows 200000    # a tenth of it

The rows are drawn from a factor model (``--factors`` factors with N(0, 1) loadings,
noise variances uniform in [0.2, 2], a mean of 10).  Every fit starts from unit noise
variances with scikit-learn's default ``tol`` (1e-2); scikit-learn runs both its SVD
methods.  Each fit's quality is the average log-likelihood of the rows under its model,
from one yardstick (the Gaussian log-density with the model's covariance
``get_covariance()``, computed from the data's moments), and its iterations.
Total fit time, median of ``--repeats``.
"""

import argparse
import statistics
import time
import warnings

import numpy as np


def make_rows(n, d, q, seed=0):
    rng = np.random.default_rng(seed)
    loadings = rng.standard_normal((q, d))
    noise = np.sqrt(rng.uniform(0.2, 2.0, d))
    X = np.empty((n, d))
    for a in range(0, n, 200_000):  # in blocks: no second N x D temporary
        b = min(a + 200_000, n)
        X[a:b] = (rng.standard_normal((b - a, q)) @ loadings
                  + rng.standard_normal((b - a, d)) * noise + 10.0)
    return X


def mean_log_likelihood(cov, mean, moments):
    """The average Gaussian log-density of the rows under N(mean, cov), from the rows'
    mean and (biased) covariance: -1/2 (D log 2 pi + log det C + tr(C^-1 (S + dm dm^T)))."""
    data_mean, scatter = moments
    dm = data_mean - mean
    d = cov.shape[0]
    return float(-0.5 * (d * np.log(2 * np.pi) + np.linalg.slogdet(cov)[1]
                         + np.trace(np.linalg.solve(cov, scatter + np.outer(dm, dm)))))


def timed(make, X, repeats):
    times, model = [], None
    for _ in range(repeats):
        model = make()
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X)
        times.append(time.perf_counter() - start)
    return statistics.median(times), model


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--features", type=int, default=40)
    p.add_argument("--factors", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    from sklearn.decomposition import FactorAnalysis as SK

    import fastem

    X = make_rows(args.rows, args.features, args.factors)
    moments = (X.mean(axis=0), np.cov(X.T, bias=True))
    q = args.factors
    runs = [("fastem (Cython, the default)", lambda: fastem.FactorAnalysis(q)),
            ("fastem numba", lambda: fastem.FactorAnalysis(q, backend="numba")),
            ("scikit-learn, svd_method='randomized' (its default)", lambda: SK(q)),
            ("scikit-learn, svd_method='lapack'", lambda: SK(q, svd_method="lapack"))]
    fastem.FactorAnalysis(q, backend="numba").fit(X[:1000])  # load (compile) the kernels
    results = []
    for name, make in runs:
        seconds, model = timed(make, X, args.repeats)
        results.append((name, seconds, model.n_iter_,
                        mean_log_likelihood(model.get_covariance(), model.mean_, moments)))
    sk = results[2][1]
    print(f"## {args.rows:,} rows x {args.features} features, {q} factors; "
          f"median of {args.repeats}\n")
    print("| fit | seconds | scikit-learn (randomized) / this | iterations | "
          "mean log-likelihood |")
    print("|---|---|---|---|---|")
    for name, seconds, n_iter, ll in results:
        print(f"| {name} | {seconds:.3f} | {sk / seconds:.1f}x | {n_iter} | {ll:.6f} |")
    import os

    print(f"\n(at {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
