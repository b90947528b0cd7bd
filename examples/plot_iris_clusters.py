"""Clusters of the bundled iris data: KMeans and a Gaussian mixture side by side.

    python examples/plot_iris_clusters.py [--out iris_clusters.png]

Both models are fitted on the four measurements; the figure shows petal length against
petal width (the two that separate the species best), each flower coloured by its
cluster, with the KMeans centers and the mixture's means marked.
"""

import argparse

import matplotlib

matplotlib.use("Agg")  # a file, not a window: runs in batch jobs and tests
import matplotlib.pyplot as plt  # noqa: E402

import fastem  # noqa: E402
from fastem.datasets import load_iris  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="iris_clusters.png")
    args = p.parse_args(argv)
    X, names = load_iris()
    km = fastem.KMeans(3, random_state=0).fit(X)
    gm = fastem.GaussianMixture(3, random_state=0).fit(X)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharex=True, sharey=True)
    for ax, labels, centers, title in (
            (axes[0], km.labels_, km.cluster_centers_,
             f"KMeans: inertia {km.inertia_:.2f}"),
            (axes[1], gm.predict(X), gm.means_,
             f"GaussianMixture (full): log-likelihood {gm.lower_bound_:.3f} a flower")):
        ax.scatter(X[:, 2], X[:, 3], c=labels, cmap="viridis", s=18, alpha=0.8)
        ax.scatter(centers[:, 2], centers[:, 3], marker="X", s=160, c="red",
                   edgecolor="black", label="centers / means")
        ax.set_title(title)
        ax.set_xlabel(names[2])
        ax.legend(loc="upper left")
    axes[0].set_ylabel(names[3])
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
