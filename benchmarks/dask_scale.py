"""fastem on a Dask cluster, side by side with dask-ml, in one run.

On a ``distributed.LocalCluster`` (default: 2 worker processes of 1 thread each):

* KMeans on N x D float32 rows, K clusters, against ``dask_ml.cluster.KMeans`` from the
  same initial centers for the same iterations: seconds per iteration (the slope
  between a short and a long fit, so set-up and seeding cancel out) and the inertia
  each reaches;
* GaussianMixture (no Dask peer) against fastem in memory: seconds per iteration and
  the lower bound;
* the cost of one pass that does nothing (a task per worker over its blocks, results
  gathered): the per-iteration overhead of the cluster; and the scheduler's cost of a
  task (batches of 1 and 64 trivial tasks), and from it, on paper, what W workers give.

    python benchmarks/dask_scale.py                     # 1,000,000 x 16, K = 16
    python benchmarks/dask_scale.py --rows 200000 --quick
"""

import argparse
import time
import warnings

import numpy as np


def _data(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-1, 1, size=(k, d))  # overlapping: Lloyd runs every iteration
    return (centers[rng.integers(0, k, n)] + rng.standard_normal((n, d))).astype(np.float32)


def _slope(fit, short, long):
    """Seconds per iteration: (time of a long fit - time of a short fit) / extra iterations,
    and the result of the long fit."""
    t0 = time.perf_counter()
    fit(short)
    t1 = time.perf_counter()
    out = fit(long)
    t2 = time.perf_counter()
    return ((t2 - t1) - (t1 - t0)) / (long - short), out


def _inertia(X, centers):
    """sum_i min_k ||x_i - c_k||^2 in float64, in blocks: one yardstick for every model."""
    c = np.asarray(centers, dtype=np.float64)
    c_sq = np.einsum("ij,ij->i", c, c)
    total = 0.0
    for a in range(0, X.shape[0], 65536):
        x = X[a:a + 65536].astype(np.float64)
        d2 = np.einsum("ij,ij->i", x, x)[:, None] - 2.0 * (x @ c.T) + c_sq
        total += float(np.maximum(d2.min(axis=1), 0.0).sum())
    return total


def _noop(chunk):
    return 0.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--clusters", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-mib", type=float, default=8.0,
                        help="fastem chunk_bytes (= the Dask block size), MiB")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args(argv)

    import dask.array as da
    from distributed import Client, LocalCluster

    import fastem
    from fastem.dask import dask_rows

    short, long = (2, 6) if args.quick else (2, 12)
    X = _data(args.rows, args.features, args.clusters)
    chunk_bytes = int(args.chunk_mib * 2**20)
    block_rows = chunk_bytes // (args.features * 4)
    init = X[np.random.default_rng(1).choice(args.rows, args.clusters, replace=False)]
    print(f"data {args.rows} x {args.features} float32, K = {args.clusters}, "
          f"{args.workers} workers x 1 thread, blocks of {block_rows} rows "
          f"({-(-args.rows // block_rows)} blocks)")
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client, \
            fastem.config_context(chunk_bytes=chunk_bytes), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dX = da.from_array(X, chunks=(block_rows, args.features)).persist()
        # warm every process's kernels first (the client warms the workers in turn)
        fastem.KMeans(args.clusters, init=init, max_iter=1).fit(dX)
        fastem.GaussianMixture(args.clusters, covariance_type="diag", max_iter=1,
                               means_init=init, random_state=0).fit(dX)
        from dask_ml.cluster import KMeans as DaskMLKMeans

        DaskMLKMeans(n_clusters=args.clusters, init=init, max_iter=2).fit(dX)
        fastem.KMeans(args.clusters, init=init, max_iter=2).fit(X)

        results = {}
        for repeat in range(args.repeats):
            def ours(n):
                return fastem.KMeans(args.clusters, init=init, max_iter=n, tol=0.0).fit(dX)

            def peer(n):
                return DaskMLKMeans(n_clusters=args.clusters, init=init, max_iter=n, tol=1e-300,
                                    random_state=0).fit(dX)

            def memory(n):
                return fastem.KMeans(args.clusters, init=init, max_iter=n, tol=0.0).fit(X)

            for name, fit in (("fastem kmeans (dask)", ours), ("dask-ml kmeans", peer),
                              ("fastem kmeans (in memory)", memory)):
                per_iter, est = _slope(fit, short, long)
                results.setdefault(name, []).append((per_iter, _inertia(X, est.cluster_centers_)))
            for cov in ("diag", "full"):
                def gmm(n, data):
                    return fastem.GaussianMixture(args.clusters, covariance_type=cov,
                                                  means_init=init, max_iter=n, tol=0.0,
                                                  random_state=0).fit(data)

                for where, data in (("dask", dX), ("in memory", X)):
                    per_iter, est = _slope(lambda n: gmm(n, data), short, long)
                    results.setdefault(f"fastem gmm {cov} ({where})", []).append(
                        (per_iter, float(est.lower_bound_)))
            drows = dask_rows(dX, lambda a, name, cp: np.asarray(a), owner="bench",
                              sample_weight=None, backend="numba")
            drows.map(_noop)
            t0 = time.perf_counter()
            for _ in range(10):
                drows.map(_noop)
            results.setdefault("empty pass", []).append(((time.perf_counter() - t0) / 10, 0.0))
            # the scheduler's cost of a task: n trivial tasks in one batch, n = 1 and 64
            for n in (1, 64):
                t0 = time.perf_counter()
                for _ in range(10):
                    client.gather([client.submit(_noop, i, pure=False) for i in range(n)])
                results.setdefault(f"{n} trivial tasks", []).append(
                    ((time.perf_counter() - t0) / 10, 0.0))
            print(f"repeat {repeat + 1}/{args.repeats} done")
        n_blocks = -(-args.rows // block_rows)
    med = {k: (float(np.median([v[0] for v in vals])), vals[-1][1]) for k, vals in results.items()}
    base = med["dask-ml kmeans"][0]
    print(f"\n| run | s/iter (median of {args.repeats}) | dask-ml / this | quality |")
    print("|---|---|---|---|")
    for name, (t, q) in med.items():
        quality = "" if "pass" in name or "tasks" in name else (
            f"inertia {q:.6g}" if "kmeans" in name else f"lower bound {q:.6g}")
        print(f"| {name} | {t:.4f} | {base / t:.1f}x | {quality} |")
    # n tasks in one batch cost about L + c n (round trip L, c a task); a K-means pass
    # runs one task per worker over its blocks and one per worker to bring back the sums
    one, many = med["1 trivial tasks"][0], med["64 trivial tasks"][0]
    c = (many - one) / 63
    latency = one - c
    pass_tasks = 2 * args.workers
    compute = max(med["fastem kmeans (dask)"][0] - latency - c * pass_tasks, 0.0)
    print(f"\na batch of tasks: {latency * 1e3:.1f} ms round trip + {c * 1e3:.2f} ms a task; "
          f"a KMeans iteration here: {compute * 1e3:.1f} ms of kernels per worker "
          f"+ {pass_tasks} tasks")
    per_worker = n_blocks / args.workers
    for w in (10, 100):
        tasks = 2 * w
        est = compute + latency + c * tasks
        print(f"on paper, {w} workers with {per_worker:g} such blocks each "
              f"({w * args.rows // args.workers:,} rows): {est * 1e3:.0f} ms an iteration "
              f"({c * tasks * 1e3:.0f} ms of it the scheduler's {tasks} tasks at this "
              f"machine's per-task cost)")


if __name__ == "__main__":
    main()
