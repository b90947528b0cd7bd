"""Factor analysis: fastem's FactorAnalysis against scikit-learn's, and the mixture of
factor analyzers against Gaussian mixtures with full covariances, in one run, the
log-likelihood (and BIC) beside the time.

    python benchmarks/factor_analysis.py                  # issue 18's 2,000,000 x 40
    python benchmarks/factor_analysis.py --rows 200000    # a tenth of it
    python benchmarks/factor_analysis.py --mfa            # 200,000 x 100, K = 8, 5 factors
    python benchmarks/factor_analysis.py --mfa --rows 20000

``--mfa``: rows from a mixture of 8 factor analyzers (5 factors each, N(0, 1)
loadings, means N(0, 9), noise variances uniform in [0.2, 2], equal weights).
MixtureOfFactorAnalyzers(8, n_factors=5) against GaussianMixture(8,
covariance_type="full"), scikit-learn's and fastem's, all with the defaults (k-means
initialization, random_state 0, tol 1e-3, max_iter 100): total fit time, iterations,
mean log-likelihood, BIC and the adjusted Rand index of the labels against the true
components.  ``--n-init 3``: the best of three initializations for every model (one
k-means start can merge two components, for the Gaussian mixtures as for this model).

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


def make_mixture(n, d, q, k, seed=0):
    """Rows of a mixture of ``k`` factor analyzers and their components."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    loadings = rng.standard_normal((k, q, d))
    means = rng.standard_normal((k, d)) * 3.0
    noise = np.sqrt(rng.uniform(0.2, 2.0, (k, d)))
    X = np.empty((n, d))
    for c in range(k):
        rows = np.flatnonzero(labels == c)
        X[rows] = (rng.standard_normal((rows.size, q)) @ loadings[c] + means[c]
                   + rng.standard_normal((rows.size, d)) * noise[c])
    return X, labels


def mixture_benchmark(args):
    from sklearn.metrics import adjusted_rand_score
    from sklearn.mixture import GaussianMixture as SKGMM

    import fastem

    k, q = 8, args.factors
    X, truth = make_mixture(args.rows, args.features, q, k)
    common = dict(random_state=0, n_init=args.n_init)
    runs = [("fastem MixtureOfFactorAnalyzers (Cython, the default)",
             lambda: fastem.MixtureOfFactorAnalyzers(k, n_factors=q, **common)),
            ("fastem MixtureOfFactorAnalyzers numba",
             lambda: fastem.MixtureOfFactorAnalyzers(k, n_factors=q, backend="numba",
                                                     **common)),
            ("fastem GaussianMixture(full)",
             lambda: fastem.GaussianMixture(k, covariance_type="full", **common)),
            ("scikit-learn GaussianMixture(full)",
             lambda: SKGMM(k, covariance_type="full", **common))]
    for _, make in runs[:3]:  # load (compile) the kernels
        make().set_params(max_iter=2, n_init=1).fit(X[:2000])
    results = []
    for name, make in runs:
        seconds, model = timed(make, X, args.repeats)
        results.append((name, seconds, model.n_iter_, model.score(X), model.bic(X),
                        adjusted_rand_score(truth, model.predict(X))))
    sk = results[-1][1]
    print(f"## {args.rows:,} rows x {args.features} features, {k} components, {q} factors, "
          f"n_init={args.n_init}; median of {args.repeats}\n")
    print("| fit | seconds | scikit-learn / this | iterations | mean log-likelihood | BIC | "
          "ARI |")
    print("|---|---|---|---|---|---|---|")
    for name, seconds, n_iter, ll, bic, ari in results:
        print(f"| {name} | {seconds:.2f} | {sk / seconds:.1f}x | {n_iter} | {ll:.4f} | "
              f"{bic:.6g} | {ari:.4f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mfa", action="store_true",
                   help="the mixture of factor analyzers against Gaussian mixtures")
    p.add_argument("--rows", type=int, default=None,
                   help="default 2,000,000 (200,000 with --mfa)")
    p.add_argument("--features", type=int, default=None, help="default 40 (100 with --mfa)")
    p.add_argument("--factors", type=int, default=5)
    p.add_argument("--repeats", type=int, default=None, help="default 3 (1 with --mfa)")
    p.add_argument("--n-init", type=int, default=1, help="--mfa: every model's n_init")
    args = p.parse_args()
    mfa = args.mfa
    args.rows = args.rows or (200_000 if mfa else 2_000_000)
    args.features = args.features or (100 if mfa else 40)
    args.repeats = args.repeats or (1 if mfa else 3)
    if mfa:
        mixture_benchmark(args)
    else:
        factor_benchmark(args)
    import os

    print(f"\n(at {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores)")


def factor_benchmark(args):

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


if __name__ == "__main__":
    main()
