"""Choosing the number of components by BIC: Gaussian mixtures of K = 1..10 on
synthetic data drawn from 4 components.

    python examples/plot_bic_choose_k.py [--out bic.png]

The Bayesian information criterion, ``-2 log L + p log N`` (lower is better), falls
until K reaches the true number of components and rises after it, for each covariance
type; the minimum is marked.
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import fastem  # noqa: E402


def data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    means = np.array([[0, 0], [6, 0], [0, 6], [6, 6]], dtype=float)
    scales = [0.6, 1.2, 0.9, 0.7]
    parts = [rng.normal(m, s, size=(n // 4, 2)) for m, s in zip(means, scales)]
    return np.concatenate(parts)


def bic_curves(X, ks, covariance_types=("full", "diag", "spherical")):
    return {cov: [fastem.GaussianMixture(k, covariance_type=cov, n_init=2,
                                         random_state=0).fit(X).bic(X) for k in ks]
            for cov in covariance_types}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bic.png")
    args = p.parse_args(argv)
    X = data()
    ks = list(range(1, 11))
    curves = bic_curves(X, ks)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for cov, bic in curves.items():
        best = int(np.argmin(bic))
        ax.plot(ks, bic, marker="o", label=f"{cov} (best K = {ks[best]})")
        ax.scatter([ks[best]], [bic[best]], s=160, facecolors="none", edgecolors="black")
    ax.set_xlabel("number of components K")
    ax.set_ylabel("BIC (lower is better)")
    ax.set_title("GaussianMixture BIC on data from 4 components")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
