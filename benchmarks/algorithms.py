"""Where each fastem K-means algorithm wins: the crossovers behind algorithm="auto".

Every algorithm gives the same labels and centers at every iteration (tested), so only
time matters.  For a grid of shapes, on the blobs of compare.py (overlapping clusters,
``--spread`` times the median distance between true centers), each algorithm fits from
the same initial rows for the same number of iterations (tol=0) and the median time per
fit is printed, with the ratio to lloyd and a check that the centers are identical.

    python benchmarks/algorithms.py                       # the default grid, ~10 min
    python benchmarks/algorithms.py --n 200000 --d 2,16,64 --k 8,64,256 --repeats 3

BLAS is limited to one thread per kernel call (as inside fastem's fit); fastem's own
threads are every CPU.  Run it on an otherwise idle machine.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import initial_rows, make_blobs  # noqa: E402

ALGORITHMS = ("lloyd", "hamerly", "yinyang", "elkan")


def time_fit(X, init, algorithm, iters, repeats):
    import fastem

    times, model = [], None
    for _ in range(repeats):
        km = fastem.KMeans(init.shape[0], init=init, n_init=1, max_iter=iters, tol=0.0,
                           algorithm=algorithm)
        start = time.perf_counter()
        km.fit(X)
        times.append(time.perf_counter() - start)
        model = km
    return float(np.median(times)), model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000, help="rows (default 200,000)")
    p.add_argument("--d", default="2,16,64", help="feature counts")
    p.add_argument("--k", default="8,16,64,256", help="cluster counts")
    p.add_argument("--spread", type=float, default=0.6, help="noise / center distance")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--algorithms", default=",".join(ALGORITHMS))
    args = p.parse_args(argv)
    algorithms = args.algorithms.split(",")
    from fastem.kmeans import _auto_algorithm

    print(f"# N={args.n:,} {args.dtype}, spread {args.spread}, {args.iters} iterations, "
          f"median of {args.repeats}; seconds per fit (ratio to lloyd)")
    print("| D | K | " + " | ".join(algorithms) + " | fastest | auto picks |")
    print("|---|---|" + "---|" * (len(algorithms) + 2))
    for d in map(int, args.d.split(",")):
        for k in map(int, args.k.split(",")):
            X = make_blobs(args.n, d, k, args.dtype, spread=args.spread)
            init = np.ascontiguousarray(X[initial_rows(args.n, k)])
            time_fit(X[:2000], init, "lloyd", 2, 1)  # warm the kernels up
            for a in algorithms:
                time_fit(X[:2000], init, a, 2, 1)
            res = {a: time_fit(X, init, a, args.iters, args.repeats) for a in algorithms}
            base = res.get("lloyd", next(iter(res.values())))
            for a, (_, km) in res.items():
                if not np.array_equal(km.cluster_centers_, base[1].cluster_centers_):
                    raise SystemExit(f"D={d} K={k}: {a} gave different centers from lloyd!")
            cells = [f"{t:.3f} ({base[0] / t:.2f}x)" for t, _ in res.values()]
            fastest = min(res, key=lambda a: res[a][0])
            print(f"| {d} | {k} | " + " | ".join(cells)
                  + f" | {fastest} | {_auto_algorithm(d, k, True)} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
