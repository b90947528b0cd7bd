"""Seeding K-means for large K on a Dask cluster: fastem's k-means++ and k-means|| against
dask-ml's k-means||, side by side in one run.

Same data, same LocalCluster (2 worker processes x 1 thread), blocks aligned to fastem's
chunks.  Each seeding is followed by one Lloyd iteration with fastem (from dask-ml's
seeds too, in memory), so the quality column compares the seedings on equal terms:
the inertia after that iteration (lower is better).  Times are the seeding itself
(fastem: the fit with max_iter=1 minus one iteration from given centers).

    python benchmarks/seeding.py                 # 1,000,000 x 16 float32, K = 256
    python benchmarks/seeding.py --rows 200000 --clusters 64 --repeats 1
"""

import argparse
import time
import warnings

import numpy as np


def _data(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10, 10, (k, d))
    X = centers[rng.integers(0, k, n)] + rng.standard_normal((n, d))
    return X.astype(np.float32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--clusters", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-mib", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import dask.array as da
    from dask_ml.cluster.k_means import k_init
    from distributed import Client, LocalCluster

    import fastem

    k = args.clusters
    X = _data(args.rows, args.features, k)
    chunk_bytes = int(args.chunk_mib * 2**20)
    block_rows = chunk_bytes // (args.features * 4)
    print(f"data {args.rows} x {args.features} float32, K = {k}, {args.workers} workers x 1 "
          f"thread, blocks of {block_rows} rows")
    results = {}
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster), \
            fastem.config_context(chunk_bytes=chunk_bytes), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dX = da.from_array(X, chunks=(block_rows, args.features)).persist()
        start = X[:k].copy()
        fastem.KMeans(k, init=start, max_iter=1).fit(dX)  # warm the workers' kernels

        def one_iteration(centers, data):
            t0 = time.perf_counter()
            est = fastem.KMeans(k, init=centers, max_iter=1, n_init=1).fit(data)
            return time.perf_counter() - t0, est.inertia_

        for repeat in range(args.repeats):
            lloyd_time, _ = one_iteration(start, dX)
            for init in ("k-means||", "k-means++"):
                t0 = time.perf_counter()
                est = fastem.KMeans(k, init=init, max_iter=1, n_init=1, random_state=repeat,
                                    tol=0.0).fit(dX)
                seconds = time.perf_counter() - t0 - lloyd_time
                results.setdefault(f"fastem {init} (dask)", []).append((seconds, est.inertia_))
            t0 = time.perf_counter()
            seeds = np.asarray(k_init(dX, k, init="k-means||", random_state=repeat))
            seconds = time.perf_counter() - t0
            results.setdefault("dask-ml k-means|| (dask)", []).append(
                (seconds, one_iteration(seeds.astype(np.float32), X)[1]))
            print(f"repeat {repeat + 1}/{args.repeats} done")
    med = {name: (float(np.median([v[0] for v in vals])), float(np.median([v[1] for v in vals])))
           for name, vals in results.items()}
    base = med["dask-ml k-means|| (dask)"][0]
    print(f"\n| seeding | seconds (median of {args.repeats}) | dask-ml / this | "
          "inertia after 1 Lloyd iteration |")
    print("|---|---|---|---|")
    for name, (t, q) in med.items():
        print(f"| {name} | {t:.2f} | {base / t:.2f}x | {q:.6g} |")


if __name__ == "__main__":
    main()
