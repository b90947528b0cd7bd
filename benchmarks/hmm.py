"""Hidden Markov models: fastem against hmmlearn, per Baum-Welch iteration, in one run.

    python benchmarks/hmm.py                       # the three workloads of issue 16
    python benchmarks/hmm.py --workloads long --repeats 5
    python benchmarks/hmm.py --workloads categorical --block-steps 65536  # blocked sequences
    python benchmarks/hmm.py --sources memory,chunks,dask  # also from Chunks, on Dask

Workloads (data drawn from a random HMM of the same shape, seeded):

- ``long``: one sequence of 200,000 steps x 4 features, 8 states, diagonal Gaussians;
- ``many``: 2,000 sequences of 100-400 steps x 10 features, 16 states, full Gaussians;
- ``categorical``: one sequence of 1,000,000 symbols of 64, 32 states.

Both libraries start from the same parameters (``init_params=""``, set by hand) and run
a fixed number of iterations (``tol`` below any gain), in both implementations ("log",
"scaling").  Seconds per iteration are the slope between a short and a long fit (set-up
cancels out), median of ``--repeats``; beside them, each fit's final log-likelihood,
which must agree between the libraries since they run the same iterations.

``--sources`` adds fastem fits of the same rows from ``fastem.Chunks`` (X in 10 pieces,
cut inside the sequences) and from a Dask array (8 blocks, persisted on a
``LocalCluster`` of 2 single-threaded worker processes); each must reach the in-memory
log-likelihood exactly.
"""

import argparse
import logging
import statistics
import time

import numpy as np

from dask_scale import _slope


def _random_hmm(rng, k):
    start = rng.dirichlet(np.ones(k))
    trans = rng.dirichlet(np.ones(k), size=k) * 0.3 + np.eye(k) * 0.7  # sticky states
    return start, trans


def _states(rng, start, trans, lengths):
    """A state path per sequence, stacked: all sequences step by step together."""
    lengths = np.asarray(lengths)
    z = np.empty((len(lengths), lengths.max()), dtype=np.int64)
    cdf = np.cumsum(trans, axis=1)
    z[:, 0] = np.searchsorted(np.cumsum(start), rng.random(len(lengths)))
    for t in range(1, z.shape[1]):
        u = rng.random(len(lengths))
        z[:, t] = (u[:, None] > cdf[z[:, t - 1]]).sum(axis=1)
    return np.minimum(np.concatenate([z[s, :n] for s, n in enumerate(lengths)]),
                      len(start) - 1)


def workload(name, rng):
    """(model class name, K, constructor kwargs, starting parameters, X, lengths)."""
    if name == "long":
        k, d, lengths, cov = 8, 4, [200_000], "diag"
    elif name == "many":
        k, d, cov = 16, 10, "full"
        lengths = [int(n) for n in rng.integers(100, 401, 2000)]
    else:
        k, d, lengths, cov = 32, 64, [1_000_000], None
    start, trans = _random_hmm(rng, k)
    z = _states(rng, start, trans, lengths)
    init = {"startprob_": np.full(k, 1.0 / k), "transmat_": np.full((k, k), 1.0 / k)}
    if cov is None:
        table = rng.dirichlet(np.ones(d) * 0.3, size=k)
        u = rng.random(len(z))
        X = (u[:, None] > np.cumsum(table, axis=1)[z]).sum(axis=1).clip(0, d - 1)[:, None]
        init["emissionprob_"] = rng.dirichlet(np.ones(d), size=k)
        return "CategoricalHMM", k, {}, init, X, lengths
    means = rng.normal(0.0, 3.0, (k, d))
    X = means[z] + rng.standard_normal((len(z), d))
    init["means_"] = means + rng.normal(0.0, 1.0, means.shape)
    init["covars_"] = np.full((k, d), 2.0) if cov == "diag" else np.stack([np.eye(d) * 2] * k)
    return "GaussianHMM", k, {"covariance_type": cov}, init, X, lengths


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default="long,many,categorical")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backends", default="cython,numba")
    p.add_argument("--implementations", default="scaling,log")
    p.add_argument("--block-steps", type=int, default=None,
                   help="take a sequence longer than this many steps in blocks of it "
                        "(fastem; default: its own threshold, 2^25 / K)")
    p.add_argument("--sources", default="memory",
                   help="where fastem reads X: memory, chunks, dask (comma-separated)")
    args = p.parse_args(argv)
    sources = args.sources.split(",")
    client = None
    if "dask" in sources:
        from distributed import Client, LocalCluster

        client = Client(LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None))

    import warnings

    from hmmlearn import hmm
    from threadpoolctl import threadpool_limits

    import fastem
    import fastem._hmm

    logging.getLogger("hmmlearn").setLevel(logging.ERROR)
    short, long = 1, 4
    for name in args.workloads.split(","):
        cls, k, kwargs, init, X, lengths = workload(name, np.random.default_rng(0))
        if args.block_steps:
            fastem._hmm._SEQUENCE_VALUES = args.block_steps * k
        print(f"\n## {name}: {cls}, {len(lengths):,} sequence(s), {X.shape[0]:,} steps x "
              f"{X.shape[1]} {'symbols' if cls == 'CategoricalHMM' else 'features'}, "
              f"{k} states {kwargs.get('covariance_type', '')}")

        data = {"memory": X}
        if "chunks" in sources:
            data["chunks"] = fastem.Chunks(np.array_split(X, 10))
        if client is not None:
            import dask.array as da

            with warnings.catch_warnings():  # ("Sending large graph": X, once, to the workers)
                warnings.simplefilter("ignore")
                data["dask"] = da.from_array(X, chunks=(-(-X.shape[0] // 8), X.shape[1])).persist()

        def make(lib, impl, backend=None, source="memory"):
            def fit(n_iter):
                common = dict(init_params="", n_iter=n_iter, tol=-1e300, implementation=impl,
                              **kwargs)
                model = (getattr(hmm, cls)(k, **common) if lib == "hmmlearn" else
                         getattr(fastem, cls)(k, backend=backend, **common))
                for key, value in init.items():
                    setattr(model, key, np.array(value))
                return model.fit(data[source], lengths)
            return fit

        rows = []
        for impl in args.implementations.split(","):
            runs = {f"hmmlearn {impl}": make("hmmlearn", impl)}
            for b in args.backends.split(","):
                for source in sources:
                    label = "" if source == "memory" else f" ({source})"
                    runs[f"fastem {b} {impl}{label}"] = make("fastem", impl, b, source)
            results = {}
            with warnings.catch_warnings(), threadpool_limits(limits=None):
                warnings.simplefilter("ignore")
                for run, fit in runs.items():
                    if run.startswith("fastem"):
                        fit(1)  # compile / warm
                for _ in range(args.repeats):
                    for run, fit in runs.items():
                        per_iter, model = _slope(fit, short, long)
                        results.setdefault(run, []).append((per_iter, model))
            ref_run = f"hmmlearn {impl}"
            ref_t = statistics.median(t for t, _ in results[ref_run])
            ref_ll = results[ref_run][-1][1].monitor_.history[-1]
            for run, vals in results.items():
                t = statistics.median(v for v, _ in vals)
                ll = vals[-1][1].monitor_.history[-1]
                rows.append(f"| {run} | {t:.4f} | {ref_t / t:.2f}x | {ll:.10g} | "
                            f"{abs(ll - ref_ll) / abs(ref_ll):.1e} |")
        print(f"\n| run | s/iter (median of {args.repeats}) | hmmlearn (same implementation)"
              f" / this | log-likelihood after {long} iterations | rel. diff. to hmmlearn |")
        print("|---|---|---|---|---|")
        print("\n".join(rows), flush=True)
    print(f"\n(at {time.strftime('%Y-%m-%d %H:%M')}, 2 cores)")
    if client is not None:
        client.close()


if __name__ == "__main__":
    main()
