"""The ``fastem`` command: ``fastem fit``, ``fastem info``, ``fastem warmup``.

Human output goes to stdout, errors to stderr with a non-zero exit code (2 for bad
usage or input, 1 for anything unexpected).
"""

import argparse
import json
import os
import sys
import time


class CLIError(Exception):
    """A problem the user can fix; printed without a traceback."""


def _load_data(path):
    import numpy as np

    if path is None:
        from .datasets import load_iris

        X, names = load_iris()
        return X, "iris (bundled: 150 flowers x 4 measurements)", names
    if not os.path.exists(path):
        raise CLIError(f"data file not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        try:
            X = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise CLIError(f"cannot read {path} as a numeric .npy array: {exc}") from exc
        return X, path, None
    if ext in (".csv", ".txt"):
        with open(path) as fh:
            first = fh.readline().strip()
        fields = [f.strip() for f in first.split(",")]
        try:
            [float(f) for f in fields]
            header, names = 0, None
        except ValueError:
            header, names = 1, fields
        try:
            X = np.loadtxt(path, delimiter=",", skiprows=header, dtype=np.float64, ndmin=2)
        except ValueError as exc:
            raise CLIError(f"cannot parse {path} as numeric CSV: {exc}") from exc
        return X, path, names
    raise CLIError(f"unsupported data format {ext!r} for {path}; use .npy or .csv")


def _cmd_fit(args):
    import numpy as np

    from . import KMeans

    X, source, names = _load_data(args.data)
    k = args.k if args.k is not None else (3 if args.data is None else 8)
    model = KMeans(n_clusters=k, n_init=args.n_init, max_iter=args.max_iter,
                   random_state=args.random_state, backend=args.backend,
                   n_threads=args.n_threads)
    start = time.perf_counter()
    try:
        model.fit(X)
    except (ValueError, TypeError) as exc:
        raise CLIError(str(exc)) from exc
    elapsed = time.perf_counter() - start
    sizes = np.bincount(model.labels_, minlength=k)
    result = {
        "model": "kmeans", "data": source, "n_samples": int(X.shape[0]),
        "n_features": int(X.shape[1]), "n_clusters": k, "inertia": model.inertia_,
        "n_iter": model.n_iter_, "cluster_sizes": sizes.tolist(),
        "cluster_centers": model.cluster_centers_.tolist(), "backend": model.backend_,
        "seconds": round(elapsed, 4),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"KMeans on {source}: {X.shape[0]} samples x {X.shape[1]} features, k={k}")
    print(f"backend {model.backend_}, {model.n_iter_} iterations, {elapsed:.3f} s")
    print(f"inertia {model.inertia_:.6g}")
    header = "cluster  size  center" + (f" ({', '.join(names)})" if names else "")
    print(header)
    for j in range(k):
        center = ", ".join(f"{v:.4g}" for v in model.cluster_centers_[j])
        print(f"{j:>7}  {sizes[j]:>4}  [{center}]")
    return 0


def _cmd_info(args):
    from ._info import info

    data = info()
    if args.json:
        print(json.dumps(data))
        return 0
    for key, value in data.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k2, v2 in value.items():
                print(f"  {k2}: {v2}")
        else:
            print(f"{key}: {value}")
    return 0


def _cmd_warmup(args):
    from ._info import warmup

    start = time.perf_counter()
    done = warmup()
    msg = {"warmed": done, "seconds": round(time.perf_counter() - start, 3)}
    print(json.dumps(msg) if args.json else
          f"compiled kernels for {', '.join(done) or 'no backend'} in {msg['seconds']} s")
    return 0


MODELS = ("kmeans",)


def _split_target(target):
    """``fit [MODEL] [DATA]``: the model name is optional, so ``fit data.csv`` works."""
    if target and target[0] in MODELS:
        model, rest = target[0], target[1:]
    else:
        model, rest = "kmeans", list(target)
    if len(rest) > 1:
        raise CLIError(f"expected [MODEL] [DATA], got {' '.join(target)!r}; models: "
                       f"{', '.join(MODELS)}")
    return model, (rest[0] if rest else None)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(prog="fastem", description="Fast EM clustering on the CPU.")
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="fit K-means and print a summary")
    fit.add_argument("target", nargs="*", metavar="[MODEL] [DATA]",
                     help=f"model ({', '.join(MODELS)}; default kmeans) and a .npy or .csv data "
                          "file (default: the bundled iris dataset)")
    fit.add_argument("-k", "--n-clusters", dest="k", type=_positive_int, default=None,
                     help="number of clusters (default 3 for iris, else 8)")
    fit.add_argument("--n-init", type=_positive_int, default=1)
    fit.add_argument("--max-iter", type=_positive_int, default=300)
    fit.add_argument("--random-state", type=int, default=0)
    fit.add_argument("--backend", choices=["auto", "numba", "cython", "numpy"], default=None)
    fit.add_argument("--n-threads", type=_positive_int, default=None)
    fit.add_argument("--json", action="store_true", help="machine-readable output")
    fit.set_defaults(func=_cmd_fit)

    inf = sub.add_parser("info", help="versions, backends, threading")
    inf.add_argument("--json", action="store_true")
    inf.set_defaults(func=_cmd_info)

    warm = sub.add_parser("warmup", help="compile the numba kernels into the on-disk cache")
    warm.add_argument("--json", action="store_true")
    warm.set_defaults(func=_cmd_warmup)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "fit":
            args.model, args.data = _split_target(args.target)
        return args.func(args)
    except CLIError as exc:
        print(f"fastem: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
