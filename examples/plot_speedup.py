"""fastem's speed-up over scikit-learn, as measured in benchmarks/RESULTS.md.

    python examples/plot_speedup.py [--out speedup.png]

A bar chart of the per-iteration ratios (scikit-learn's time over fastem's) that
``benchmarks/compare.py`` and ``benchmarks/sparse_kmeans.py`` measured on this
project's 2-core machine, read from the table below (copied from RESULTS.md, where the
commands and the quality figures beside each time are).  Rerun the benchmarks on your
machine for your own figures.
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

#: (workload, fastem numba, fastem Cython): scikit-learn's s/iter over fastem's, from
#: benchmarks/RESULTS.md (the GaussianMixture rows of #3, the K-means peers run of #5,
#: the sparse K-means run of #15)
RATIOS = [
    ("GMM full 500k x 16, K=16", 15.2, 15.3),
    ("GMM diag 500k x 16, K=16", 10.2, 10.5),
    ("GMM diag 200k x 64, K=32", 6.2, 6.6),
    ("KMeans sparse TF-IDF 100k x 20k, K=64", 2.96, 2.79),
    ("KMeans 1M x 16, K=16", 1.12, 1.14),
]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="speedup.png")
    args = p.parse_args(argv)
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    y = range(len(RATIOS))
    ax.barh([i + 0.2 for i in y], [r[1] for r in RATIOS], height=0.4, label="numba")
    ax.barh([i - 0.2 for i in y], [r[2] for r in RATIOS], height=0.4, label="Cython")
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(list(y), [r[0] for r in RATIOS])
    ax.invert_yaxis()
    ax.set_xlabel("scikit-learn time / fastem time, per iteration (higher is faster)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
