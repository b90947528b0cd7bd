#!/usr/bin/env python
"""fastem.KMeans against scikit-learn's KMeans, side by side, in one run.

Every implementation (scikit-learn's Lloyd and each usable fastem backend) is fitted on
the same data, from the same initial centers, for the same number of iterations, and
the results are printed as a markdown table; ``--json`` also writes the raw numbers.

    python benchmarks/compare.py --quick          # smoke run, under a minute
    python benchmarks/compare.py                  # the three full workloads
    python benchmarks/compare.py --workload b --backends numba,cython --repeats 5

How a measurement is made (see ``_child_main``):

* The parent generates each workload once and writes it to a temporary ``.npy`` file.
* Every single timed fit runs in a fresh Python process, so its peak memory is not
  flattered or inflated by what earlier fits left in the allocator.  That process loads
  the data, does one untimed warm-up fit on a small slice (this is where numba compiles
  or loads its cached kernels, so compile time is excluded from every timing), records
  its RSS, times one full fit with ``time.perf_counter`` and prints one JSON line.
* ``tol=0, n_init=1, max_iter=--iters``: both libraries run the same Lloyd iterations and
  stop early only on strict convergence (no label changed), so ``n_iter_`` is reported
  and the time per iteration is ``fit seconds / n_iter_``.
"""

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
FASTEM_BACKENDS = ("numba", "cython", "numpy")

# Seeds: one for the data, a different one for picking the initial centers, so that the
# initial centers are not correlated with the way the blobs were drawn.
DATA_SEED = 0
INIT_SEED = 1

# Rows of the untimed warm-up fit: enough to run every kernel path (several blocks per
# thread), small enough to cost well under a second even on the numpy backend.
WARMUP_ROWS = 20_000

# The numpy backend is a float64 reference that materialises N x K distance matrices;
# it is one to two orders of magnitude slower than the compiled backends.
NUMPY_FULL_ITERS = 5          # its iteration cap in non-quick mode (s/iter stays comparable)
NUMPY_QUICK_ITERS = 10        # and with --quick
NUMPY_SEED_TIMEOUT_S = 120    # its k-means++ row is skipped past this in non-quick mode
NUMPY_REPEAT_BUDGET_S = 240   # fewer repeats for it when the first one shows they would exceed this

# A timed run during which other processes used more than this many cores is flagged.
CONTENDED_CORES = 0.1


@dataclass(frozen=True)
class Workload:
    name: str
    n_samples: int
    n_features: int
    n_clusters: int
    dtype: str

    @property
    def label(self):
        return (f"{self.name}: N={self.n_samples:,} D={self.n_features} "
                f"K={self.n_clusters} {self.dtype}")


WORKLOADS = {
    "a": Workload("a", 1_000_000, 16, 16, "float32"),
    "b": Workload("b", 200_000, 64, 256, "float32"),
    "c": Workload("c", 1_000_000, 2, 8, "float64"),
}


# Gaussian mixtures (issue 3): name -> (workload, covariance_type); float64, K = components.
GMM_WORKLOADS = {
    "g1": (Workload("g1", 500_000, 16, 16, "float64"), "full"),
    "g2": (Workload("g2", 500_000, 16, 16, "float64"), "diag"),
    "g3": (Workload("g3", 200_000, 64, 32, "float64"), "diag"),
}
GMM_ITERS = 5                 # EM iterations per timed fit (scikit-learn: ~1-7 s each here)
GMM_NUMPY_ITERS = 2           # for the numpy reference backend

# Mixtures of discrete data (issue 4): name -> (workload, model).  d2's "n_features" is the
# vocabulary; its documents have about DOC_WORDS distinct words each.
DISCRETE_WORKLOADS = {
    "d1": (Workload("d1", 1_000_000, 64, 16, "float64"), "bernoulli"),
    "d2": (Workload("d2", 200_000, 20_000, 32, "float64"), "multinomial"),
    "d3": (Workload("d3", 500_000, 20, 8, "int64"), "categorical"),
}
DISCRETE_ITERS = 10           # EM iterations per timed fit
DISCRETE_NUMPY_ITERS = 2      # for the numpy reference backend
DISCRETE_CATEGORIES = 5       # categories of every d3 feature
DOC_TOKENS = 103              # tokens drawn per d2 document (about 100 distinct words)
# StepMix clips probabilities to [1e-15, 1 - 1e-15] instead of smoothing them; a tiny
# alpha makes fastem fit the same maximum-likelihood model.
DISCRETE_ALPHA = 1e-10
STEPMIX_MEASUREMENT = {"bernoulli": "binary", "categorical": "categorical"}


# Other K-means implementations (issue 5), each optional:
# name -> (row label, child spec, module whose import must succeed)
KMEANS_PEERS = {
    "elkan": ("scikit-learn (elkan)", dict(library="sklearn", algorithm="elkan"), "sklearn"),
    "sklearnex": ("scikit-learn-intelex (lloyd)", dict(library="sklearnex"), "sklearnex"),
    "faiss": ("faiss-cpu", dict(library="faiss"), "faiss"),
}
# Peers that also get a "total" row (their own initialization + fit); elkan's init is
# scikit-learn's, so its total row would repeat the lloyd one's seeding.
TOTAL_PEERS = ("sklearnex", "faiss")


def _kmeans_label(name):
    """Row label of a K-means implementation: "sklearn", a peer or a fastem backend."""
    if name == "sklearn":
        return "scikit-learn (lloyd)"
    if name in KMEANS_PEERS:
        return KMEANS_PEERS[name][0]
    backend, _, algorithm = name.partition(":")
    return f"fastem {backend}" + (f" ({algorithm})" if algorithm else "")


def _fastem_runs(backends, algorithms):
    """Names of the fastem fit rows: the backend alone for algorithm="auto", else
    "backend:algorithm" (the numpy reference runs "auto" only)."""
    return [b if a == "auto" else f"{b}:{a}" for b in backends for a in algorithms
            if a == "auto" or b != "numpy"]


def quick_workload(w):
    """N / 10 and K / 4 at most (never below 8), for a fast smoke run."""
    return replace(w, n_samples=w.n_samples // 10, n_clusters=max(min(w.n_clusters, 8),
                                                                     w.n_clusters // 4))


# --------------------------------------------------------------------------- data
def make_blobs(n_samples, n_features, n_clusters, dtype, seed=DATA_SEED, spread=0.6):
    """Deterministic Gaussian blobs whose neighbouring clusters overlap.

    True centers are uniform in [-10, 10]^D.  The noise standard deviation is ``spread``
    times the median nearest-neighbour distance between true centers, so that (whatever
    D and K) a sizeable fraction of every blob lies closer to a neighbouring center:
    Lloyd then keeps moving boundary points for many iterations instead of converging
    strictly after a handful.  With spread=0.6 every workload, full or --quick, still
    changes labels after 80+ iterations, so all implementations really run --iters=50.
    """
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10.0, 10.0, size=(n_clusters, n_features))
    sq = np.sum((centers[:, None, :] - centers[None, :, :]) ** 2, axis=-1)
    np.fill_diagonal(sq, np.inf)
    nn_dist = float(np.median(np.sqrt(sq.min(axis=1)))) if n_clusters > 1 else 1.0
    sigma = spread * nn_dist
    labels = rng.integers(0, n_clusters, size=n_samples)
    X = np.empty((n_samples, n_features), dtype=dtype)
    # Chunks bound the float64 temporary; fixed chunk size keeps the stream deterministic.
    chunk = 1 << 16
    for start in range(0, n_samples, chunk):
        stop = min(start + chunk, n_samples)
        noise = rng.standard_normal((stop - start, n_features))
        X[start:stop] = centers[labels[start:stop]] + sigma * noise
    return X


def initial_rows(n_samples, n_clusters, seed=INIT_SEED):
    """The K row indices of X that every implementation starts Lloyd from."""
    return np.sort(np.random.default_rng(seed).choice(n_samples, size=n_clusters, replace=False))


def inertia_f64(X, centers, labels, chunk=1 << 16):
    """sum_i ||x_i - centers[labels_i]||^2 recomputed directly in float64.

    Each library reports inertia_ with its own arithmetic (scikit-learn accumulates it
    in X's dtype, float32 here); recomputing it the same way for everyone separates
    "a different clustering" from "the same clustering summed differently".
    """
    c = np.asarray(centers, dtype=np.float64)
    total = 0.0
    for start in range(0, X.shape[0], chunk):
        diff = X[start:start + chunk].astype(np.float64) - c[labels[start:start + chunk]]
        total += float(np.einsum("ij,ij->", diff, diff))
    return total


def seeding_potential(X, centers, chunk=1 << 15):
    """sum_i min_k ||x_i - c_k||^2 in float64: the quality of a set of k-means++ seeds.

    Computed directly (not via the ||x||^2 - 2x.c + ||c||^2 expansion) so that the
    comparison between seedings is not blurred by cancellation error.
    """
    c = centers.astype(np.float64)
    total = 0.0
    for start in range(0, X.shape[0], chunk):
        xb = X[start:start + chunk].astype(np.float64)
        best = np.full(xb.shape[0], np.inf)
        for k in range(c.shape[0]):
            diff = xb - c[k]
            np.minimum(best, np.einsum("ij,ij->i", diff, diff), out=best)
        total += float(best.sum())
    return total


# --------------------------------------------------------------------------- child side
class _PeakRSS:
    """Peak resident memory of this process above the RSS at ``start()``, in MiB.

    Preferred method: Linux keeps a per-process RSS high-water mark (VmHWM in
    /proc/self/status); writing "5" to /proc/self/clear_refs resets it to the current
    RSS.  After the reset, VmHWM is exactly the peak reached during the timed call: no
    sampling, no missed short spikes, no extra thread competing for the cores.

    Why VmHWM and not ``getrusage(RUSAGE_SELF).ru_maxrss``: ru_maxrss is the larger of
    the same high-water mark and a per-process maximum that exec() seeds with the RSS of
    the *forking* parent.  The parent here has numba and scikit-learn loaded (~150 MiB),
    so ru_maxrss would report that figure for any child whose own RSS stays below it
    (measured: +90 MiB of phantom peak for the numpy and cython backends).

    Fallback where clear_refs is not writable: a psutil thread sampling RSS every 2 ms.
    The GIL does not starve it because every kernel measured here releases the GIL
    (numba nogil, Cython nogil, numpy, scikit-learn's OpenMP loops); it can miss spikes
    shorter than the sampling period.
    """

    def __init__(self):
        import psutil

        self._proc = psutil.Process()
        self.method = None

    @staticmethod
    def _vm_hwm():
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # reported in kB
        raise OSError("no VmHWM in /proc/self/status")

    def start(self):
        import threading

        self.baseline = self._proc.memory_info().rss
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self._vm_hwm()
            self.method = "VmHWM after resetting the RSS high-water mark (/proc/self/clear_refs)"
            return
        except OSError:
            pass
        self.method = "psutil RSS sampling every 2 ms"
        self._peak = self.baseline
        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(0.002):
                self._peak = max(self._peak, self._proc.memory_info().rss)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()

    def stop(self):
        """Return (peak MiB above baseline, baseline MiB)."""
        if self.method.startswith("VmHWM"):
            peak = self._vm_hwm()
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, self._proc.memory_info().rss)
        return max(0.0, (peak - self.baseline) / 2**20), self.baseline / 2**20


class _FaissKMeans:
    """faiss.Kmeans behind the few estimator attributes the child reads.

    faiss trains on float32 C-contiguous data only: other input (workload c) is copied,
    inside the timed call.  ``max_points_per_centroid`` is raised so that faiss clusters
    every point instead of a subsample; it has no convergence test, so it always runs
    ``max_iter`` iterations.  Labels come from one final assignment to the trained
    centroids, as scikit-learn's do.  ``init=None``: faiss's own initialization (K points
    drawn at random).
    """

    def __init__(self, n_clusters, init, max_iter, n_threads):
        self.n_clusters, self.init, self.max_iter, self.n_threads = (n_clusters, init,
                                                                      max_iter, n_threads)

    def fit(self, X):
        import faiss

        faiss.omp_set_num_threads(self.n_threads)
        x32 = np.ascontiguousarray(X, dtype=np.float32)
        km = faiss.Kmeans(x32.shape[1], self.n_clusters, niter=self.max_iter, seed=0,
                          max_points_per_centroid=x32.shape[0] + 1)
        init = None if self.init is None else np.ascontiguousarray(self.init, np.float32)
        km.train(x32, init_centroids=init)
        dist, labels = km.index.search(x32, 1)
        self.cluster_centers_, self.labels_ = km.centroids, labels[:, 0]
        self.inertia_ = float(dist.sum(dtype=np.float64))
        self.n_iter_ = len(km.iteration_stats)
        return self


def _sklearnex_log():
    """Collect sklearnex's INFO log lines, which say whether a call ran on oneDAL or fell
    back to stock scikit-learn; return the list they are appended to."""
    import logging

    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("sklearnex")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return lines


def _make_estimator(spec, init, max_iter):
    """The K-means estimator of ``spec``: from the centers ``init`` or, for a "total" row,
    from the library's own default initialization (seeded with 0)."""
    k = init.shape[0]
    start = dict(init="k-means++", random_state=0) if spec.get("total") else dict(init=init)
    lib = spec["library"]
    if lib == "faiss":
        return _FaissKMeans(k, None if spec.get("total") else init, max_iter, spec["n_threads"])
    kw = dict(n_clusters=k, n_init=1, max_iter=max_iter, tol=0.0, **start)
    if lib == "sklearn":
        from sklearn.cluster import KMeans

        return KMeans(algorithm=spec.get("algorithm", "lloyd"), **kw)
    if lib == "sklearnex":
        from sklearnex.cluster import KMeans

        return KMeans(algorithm="lloyd", **kw)
    import fastem

    return fastem.KMeans(backend=spec["backend"], n_threads=spec["n_threads"],
                         algorithm=spec.get("algorithm", "auto"), **kw)


def _make_gmm(spec, means, max_iter):
    """GaussianMixture from identical initial parameters: uniform weights, the given
    means, unit precisions; tol=0 so every library runs exactly max_iter EM iterations."""
    k, d = means.shape
    prec = np.stack([np.eye(d)] * k) if spec["cov"] == "full" else np.ones((k, d))
    kw = dict(n_components=k, covariance_type=spec["cov"], weights_init=np.full(k, 1.0 / k),
              means_init=means, precisions_init=prec, tol=0.0, max_iter=max_iter)
    if spec["library"] == "sklearn":
        from sklearn.mixture import GaussianMixture

        return GaussianMixture(**kw)
    import fastem

    return fastem.GaussianMixture(backend=spec["backend"], n_threads=spec["n_threads"], **kw)


def make_discrete(w, model, seed=DATA_SEED):
    """Data drawn from a random mixture of the given kind (deterministic).

    d1: 0/1 features with success probabilities ~ Beta(0.5, 0.5) per component; d2: CSR
    word counts, each document DOC_TOKENS tokens from its topic's word distribution
    (~ Dirichlet(0.1) over the vocabulary); d3: category codes from probability tables
    ~ Dirichlet(1).  Components are equally likely.
    """
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    n, d, k = w.n_samples, w.n_features, w.n_clusters
    z = rng.integers(0, k, n)
    if model == "bernoulli":
        mu = rng.beta(0.5, 0.5, (k, d))
        X = np.empty((n, d))
        for start in range(0, n, 1 << 16):
            stop = min(start + (1 << 16), n)
            X[start:stop] = rng.random((stop - start, d)) < mu[z[start:stop]]
        return X
    if model == "categorical":
        cdf = np.cumsum(rng.dirichlet(np.ones(DISCRETE_CATEGORIES), (k, d)), axis=2)
        X = np.empty((n, d), dtype=np.int64)
        for j in range(d):
            u = rng.random(n)[:, None]
            X[:, j] = np.minimum((u >= cdf[z, j]).sum(axis=1), DISCRETE_CATEGORIES - 1)
        return X
    cdf = np.cumsum(rng.dirichlet(np.full(d, 0.1), k), axis=1)
    rows, cols = [], []
    for topic in range(k):
        docs = np.flatnonzero(z == topic)
        u = rng.random(docs.size * DOC_TOKENS)
        cols.append(np.minimum(np.searchsorted(cdf[topic], u), d - 1).astype(np.int32))
        rows.append(np.repeat(docs, DOC_TOKENS).astype(np.int32))
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    X = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, d))
    X.sum_duplicates()
    return X


def discrete_init(X, model, k, seed=INIT_SEED):
    """Initial (weights, tables) for every library, and whether StepMix made them.

    For the models StepMix has, its own random initialization (random responsibilities,
    then its M-step) is replayed through its internals with the seed it will use in the
    timed fit, so both libraries start from identical parameters; the first iteration's
    log-likelihoods confirm it (see the notes of a run).  Tables: (K, D) success
    probabilities, (K, D) word probabilities, or (D, K, C) category probabilities.
    """
    k_rng = np.random.default_rng(seed)
    if model in STEPMIX_MEASUREMENT and _import_error("stepmix") is None:
        from sklearn.utils import check_random_state
        from stepmix.stepmix import StepMix

        sm = StepMix(n_components=k, measurement=STEPMIX_MEASUREMENT[model], max_iter=1,
                     random_state=seed, progress_bar=0, verbose=0)
        sm._check_initial_parameters(X)
        X2, _ = sm._check_x_y(X, None, reset=True)
        sm._initialize_parameters(X2, check_random_state(seed))
        weights, pis = sm.weights_.copy(), sm._mm.get_parameters()["pis"].copy()
        if model == "categorical":  # (K, D * C) one-hot layout -> (D, K, C) tables
            pis = pis.reshape(k, X.shape[1], -1).transpose(1, 0, 2)
            pis = pis / pis.sum(axis=2, keepdims=True)  # undo StepMix's 1e-15 clipping
        return weights, pis, True
    weights = np.full(k, 1.0 / k)
    if model == "multinomial":
        freq = np.asarray(X.sum(axis=0)).ravel() + 1.0
        tables = 0.5 * freq / freq.sum() + 0.5 * k_rng.dirichlet(np.ones(X.shape[1]), k)
    elif model == "bernoulli":
        tables = np.clip(X[:1000].mean(axis=0) + k_rng.uniform(-0.2, 0.2, (k, X.shape[1])),
                         0.05, 0.95)
    else:
        tables = k_rng.dirichlet(np.ones(DISCRETE_CATEGORIES), (X.shape[1], k))
    return weights, tables, False


def _import_error(module):
    """Why ``module`` cannot be imported (a short message), or None if it can."""
    import importlib

    try:
        importlib.import_module(module)
    except Exception as exc:  # an optional peer must never stop the benchmark
        return f"{type(exc).__name__}: {exc}"
    return None


def _make_discrete(spec, weights, tables, max_iter):
    """The estimator of a discrete workload, started from the given parameters."""
    model = spec["model"]
    if spec["library"] == "stepmix":
        from stepmix.stepmix import StepMix

        return StepMix(n_components=weights.size, measurement=STEPMIX_MEASUREMENT[model],
                       max_iter=max_iter, abs_tol=0.0, rel_tol=0.0, random_state=INIT_SEED,
                       progress_bar=0, verbose=0)
    import fastem

    cls = {"bernoulli": fastem.BernoulliMixture, "multinomial": fastem.MultinomialMixture,
           "categorical": fastem.CategoricalMixture}[model]
    means = list(tables) if model == "categorical" else tables
    return cls(weights.size, alpha=DISCRETE_ALPHA, max_iter=max_iter, tol=0.0,
               weights_init=weights, means_init=means, backend=spec["backend"],
               n_threads=spec["n_threads"])


def _discrete_child(spec):
    """The child side of a discrete workload (the data may be a CSR .npz)."""
    import scipy.sparse as sp

    X = sp.load_npz(spec["data"]) if spec["data"].endswith(".npz") else np.load(spec["data"])
    init = np.load(spec["init"])
    weights, tables = init["weights"], init["tables"]
    warm = X[: min(WARMUP_ROWS, X.shape[0])]
    _make_discrete(spec, weights, tables, 1).fit(warm)
    est = _make_discrete(spec, weights, tables, spec["iters"])
    _, out = _timed(lambda: est.fit(X))
    out.update(n_iter=int(est.n_iter_), lower_bound=float(est.lower_bound_),
               backend_used=getattr(est, "backend_", spec["library"]))
    return out


def _seed(spec, X, k):
    if spec["library"] == "sklearn":
        from sklearn.cluster import kmeans_plusplus

        return kmeans_plusplus(X, k, random_state=0)
    import fastem

    return fastem.kmeans_plusplus(X, k, random_state=0, backend=spec["backend"],
                                  n_threads=spec["n_threads"])


def _cpu_busy_seconds():
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat, or None.

    Busy = user + nice + system + irq + softirq + steal: steal is time the hypervisor
    gave our virtual CPUs to someone else, which slows a benchmark just like a local
    process would.
    """
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _timed(call):
    """Run ``call()`` once, measured; return (its result, measurement dict).

    Besides wall time and peak memory, records how much CPU *other* processes used
    meanwhile (machine-wide busy time minus this process's own), in cores: on a 2-core
    machine shared with other work, that is what tells a clean timing from a contended
    one.  /proc/stat counts in 10 ms ticks, so it is only meaningful for calls of a
    few tenths of a second or more.
    """
    import gc

    gc.collect()
    peak = _PeakRSS()
    peak.start()
    busy0, own0 = _cpu_busy_seconds(), sum(os.times()[:2])
    t0 = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - t0
    busy1, own1 = _cpu_busy_seconds(), sum(os.times()[:2])
    peak_mib, baseline_mib = peak.stop()
    other = None
    if busy0 is not None:
        other = max(0.0, (busy1 - busy0) - (own1 - own0)) / seconds
    return result, dict(seconds=seconds, peak_mib=peak_mib, baseline_mib=baseline_mib,
                        memory_method=peak.method, own_cpu_cores=(own1 - own0) / seconds,
                        other_cpu_cores=other)


def _child_main(spec):
    """Run one measurement described by ``spec`` and print its result as one JSON line."""
    import warnings

    from threadpoolctl import threadpool_limits

    # scikit-learn sizes its OpenMP team and BLAS from these pools; fastem takes
    # n_threads explicitly (and pins BLAS to 1 thread inside its own kernels).
    limits = threadpool_limits(limits=spec["n_threads"])
    warnings.simplefilter("ignore")  # e.g. fastem's "numpy backend is slow": not news here

    if spec["kind"] == "discrete_fit":
        out = _discrete_child(spec)
        limits.restore_original_limits()
        print(json.dumps(out), flush=True)
        return

    # np.load reads the file into private memory, so the data are part of the baseline.
    # A memory map would instead be faulted in during the timed fit and its pages would
    # be charged to the algorithm's peak.
    X = np.load(spec["data"])
    init = np.load(spec["init"])
    k = init.shape[0]
    warm = X[: min(WARMUP_ROWS, X.shape[0])]

    if spec["kind"] == "gmm_fit":
        _make_gmm(spec, init, 1).fit(warm)
        est = _make_gmm(spec, init, spec["iters"])
        _, out = _timed(lambda: est.fit(X))
        # lower_bound_ is the mean log-likelihood of the E-step of the last iteration
        out.update(n_iter=int(est.n_iter_), lower_bound=float(est.lower_bound_),
                   backend_used=getattr(est, "backend_", "sklearn"))
    elif spec["kind"] == "fit":
        # Warm-up: same dtype and K, so numba compiles (or loads) exactly the
        # specialisations that the timed fit uses, and thread pools are started.
        log = _sklearnex_log() if spec["library"] == "sklearnex" else None
        _make_estimator(spec, init, 2).fit(warm)
        est = _make_estimator(spec, init, spec["iters"])
        _, out = _timed(lambda: est.fit(X))
        labels = np.ascontiguousarray(est.labels_, dtype=np.int32)
        used = getattr(est, "backend_", spec["library"])
        if log is not None:
            fit_log = [m for m in log if ".fit:" in m][-1:] or ["no log line"]
            used += "" if "accelerated" in fit_log[0] else f" ({fit_log[0]})"
        out.update(n_iter=int(est.n_iter_), inertia=float(est.inertia_),
                   inertia_f64=inertia_f64(X, est.cluster_centers_, labels),
                   labels_crc=zlib.crc32(labels.tobytes()), backend_used=used)
    else:
        _seed(spec, warm, min(k, warm.shape[0]))
        (_, indices), out = _timed(lambda: _seed(spec, X, k))
        out.update(indices=[int(i) for i in indices])
    limits.restore_original_limits()
    print(json.dumps(out), flush=True)


# --------------------------------------------------------------------------- parent side
def _run_child(spec, args, timeout):
    """Run one measurement in a fresh interpreter; return its result dict, or an error."""
    env = dict(os.environ)
    # The snapshot of this checkout's fastem (see _snapshot_fastem), ahead of any
    # installed copy.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.src_root, env.get("PYTHONPATH")]))
    # numba's pool is sized at import and fastem clamps n_threads to it; make room for
    # an --n-threads larger than the CPU count.
    env["NUMBA_NUM_THREADS"] = str(max(args.n_threads, os.cpu_count() or 1))
    cmd = [sys.executable, args.child_script, "--child", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s", "timeout": True}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def _contended(run):
    """True if other processes measurably took CPU from this run (see ``_timed``)."""
    other = run.get("other_cpu_cores")
    # below ~0.3 s the 10 ms /proc/stat ticks make the estimate too coarse to act on
    return other is not None and other > CONTENDED_CORES and run["seconds"] >= 0.3


def _wait_for_quiet(max_wait, quiet_s=5):
    """Sleep until the machine has had ``quiet_s`` seconds in a row with under
    CONTENDED_CORES cores busy, or ``max_wait`` seconds have passed; return seconds waited."""
    t0 = time.perf_counter()
    quiet = 0
    busy = _cpu_busy_seconds()
    if busy is None:
        return 0.0
    while quiet < quiet_s and time.perf_counter() - t0 < max_wait:
        time.sleep(1.0)
        now = _cpu_busy_seconds()
        quiet = quiet + 1 if now - busy < CONTENDED_CORES else 0
        busy = now
    return time.perf_counter() - t0


def _measure(spec, args, repeats, label, timeout=None, budget=None):
    """``repeats`` fresh-process runs of ``spec``; stops early on an error or past ``budget``.

    A run during which other processes took CPU is thrown away and redone once the
    machine is quiet again (up to --retry-contended times per row): on a small shared
    machine one stray test run can double a timing, and for a static-scheduled parallel
    kernel far more.  Runs still contended after that are kept and flagged in the notes.
    """
    runs = []
    retries = 0
    r = 0
    while r < repeats:
        res = _run_child(spec, args, timeout)
        res.update(repeat=r, retries_before=retries)
        if "error" in res:
            runs.append(res)
            _log(f"  {label}: run {r + 1}/{repeats} FAILED ({res['error']})")
            break
        extra = f", n_iter={res['n_iter']}" if "n_iter" in res else ""
        other = res.get("other_cpu_cores")
        _log(f"  {label}: run {r + 1}/{repeats}: {res['seconds']:.3f} s{extra}, "
             f"peak +{res['peak_mib']:.1f} MiB"
             + (f", other processes {other:.2f} cores" if other is not None else ""))
        if _contended(res) and retries < args.retry_contended:
            retries += 1
            waited = _wait_for_quiet(args.quiet_wait)
            _log(f"  {label}: contended, discarded; redoing after {waited:.0f} s of waiting "
                 f"for a quiet machine (retry {retries}/{args.retry_contended})")
            continue
        runs.append(res)
        r += 1
        if budget is not None and r == 1 and res["seconds"] * (repeats - 1) > budget:
            _log(f"  {label}: one run took {res['seconds']:.0f} s; not repeating "
                 f"(budget {budget:.0f} s)")
            break
    return runs


def _summary(runs):
    """Medians over the successful runs (or the error of the first failed one)."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0]["error"] if runs else "not run",
                "timeout": bool(runs and runs[0].get("timeout"))}
    out = {
        "seconds": statistics.median(r["seconds"] for r in ok),
        "peak_mib": statistics.median(r["peak_mib"] for r in ok),
        "repeats": len(ok),
        # worst CPU use by other processes during any of the runs (None if unknown)
        "other_cpu": max((r.get("other_cpu_cores") or 0.0 for r in ok), default=None),
        "min_seconds": min(r["seconds"] for r in ok),
        "max_seconds": max(r["seconds"] for r in ok),
        "contended": any(_contended(r) for r in ok),
        "retries": max(r.get("retries_before", 0) for r in runs),
    }
    if "lower_bound" in ok[0]:
        out["s_per_iter"] = statistics.median(r["seconds"] / r["n_iter"] for r in ok)
        out["n_iters"] = sorted({r["n_iter"] for r in ok})
        out["lower_bound"] = ok[0]["lower_bound"]
        out["deterministic"] = len({r["lower_bound"] for r in ok}) == 1
        out["backend_used"] = ok[0]["backend_used"]
    elif "n_iter" in ok[0]:
        out["s_per_iter"] = statistics.median(r["seconds"] / r["n_iter"] for r in ok)
        out["n_iters"] = sorted({r["n_iter"] for r in ok})
        # inertia and labels are deterministic; take the first run's, flag any drift
        out["inertia"] = ok[0]["inertia"]
        out["inertia_f64"] = ok[0]["inertia_f64"]
        out["labels_crc"] = ok[0]["labels_crc"]
        out["deterministic"] = len({(r["inertia"], r["labels_crc"]) for r in ok}) == 1
        out["backend_used"] = ok[0]["backend_used"]
    else:
        out["indices"] = ok[0]["indices"]
    return out


def _contention_note(who, s):
    """Notes on runs redone because of, or still affected by, other processes' CPU use."""
    notes = []
    if s.get("retries"):
        notes.append(f"{who}: {s['retries']} contended run(s) discarded and redone")
    if s.get("contended"):
        notes.append(f"{who}: CONTENDED, other processes used up to {s['other_cpu']:.2f} cores "
                     f"during a kept timed run (runs took {s['min_seconds']:.3g}-"
                     f"{s['max_seconds']:.3g} s)")
    return notes


_SOURCE_SUFFIXES = (".py", ".pyx", ".pxd", ".so", ".csv")


def _source_fingerprint(root):
    """{path: (size, mtime)} of a fastem tree's sources, extensions and data files."""
    return {str(p.relative_to(root)): (st.st_size, st.st_mtime_ns)
            for p in root.rglob("*") if p.suffix in _SOURCE_SUFFIXES
            and "__pycache__" not in p.parts for st in [p.stat()]}


def _snapshot_fastem(dest):
    """Copy this checkout's fastem package into ``dest``; return (src root, fingerprint).

    Other people may edit, rebuild or half-build the working tree while a 20-minute run
    is going on; measuring a frozen copy means every row of one run measures the same
    code.  copy2 keeps modification times, so numba's on-disk cache (keyed on them) is
    rebuilt once in the snapshot by the first warm-up and then reused by every child.
    """
    live = REPO_ROOT / "fastem"
    before = _source_fingerprint(live)
    target = Path(dest) / "fastem"
    shutil.copytree(live, target, ignore=shutil.ignore_patterns("__pycache__", "*.c"))
    if _source_fingerprint(live) != before:
        sys.exit("fastem changed while being copied (a build in progress?); try again")
    return str(Path(dest)), before


def _git_revision():
    try:
        rev = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info(status):
    import psutil
    import threadpoolctl

    import fastem

    blas = sorted({f"{d.get('internal_api')} {d.get('version')}"
                   for d in threadpoolctl.threadpool_info() if d.get("user_api") == "blas"})
    info = {
        "cpu": _cpu_model(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "logical_cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": _version("numba"),
        "scikit-learn": _version("scikit-learn"),
        "scikit-learn-intelex": _version("scikit-learn-intelex"),
        "faiss-cpu": _version("faiss-cpu"),
        "fastem": f"{fastem.__version__} (snapshot of {REPO_ROOT / 'fastem'} taken at the start "
                  f"of the run; git {_git_revision()})",
        "blas": ", ".join(blas) or "unknown",
        "fastem backends": ", ".join(
            f"{b}: {'usable' if r is None else 'UNAVAILABLE (' + r + ')'}"
            for b, r in status.items()),
    }
    if status.get("cython") is None:
        from fastem._dispatch import get_kernels

        openmp = getattr(get_kernels("cython", "kmeans"), "OPENMP", None)
        info["fastem backends"] += f" [cython built with OpenMP: {openmp}]"
    return info


def _fmt_s(x):
    return f"{x:.4g}"


def _ratio(ref, ours):
    return f"{ref / ours:.2f}x" if ref and ours else "—"


def _rel(ours, ref):
    return f"{(ours - ref) / ref:+.1e}" if ref else "—"


def run_workload(w, args, backends, tmpdir):
    """Measure one workload; return (table rows, notes, raw results)."""
    _log(f"[{w.label}] generating data")
    X = make_blobs(w.n_samples, w.n_features, w.n_clusters, w.dtype)
    rows_idx = initial_rows(w.n_samples, w.n_clusters)
    data_path = os.path.join(tmpdir, f"{w.name}_X.npy")
    init_path = os.path.join(tmpdir, f"{w.name}_init.npy")
    np.save(data_path, X)
    np.save(init_path, np.ascontiguousarray(X[rows_idx]))
    base = dict(data=data_path, init=init_path, n_threads=args.n_threads)
    iters_numpy = args.numpy_iters if args.numpy_iters is not None else min(
        args.iters, NUMPY_QUICK_ITERS if args.quick else NUMPY_FULL_ITERS)

    raw = {"workload": w.__dict__, "fit": {}, "seeding": {}}
    rows, notes = [], []

    # ---- Lloyd fits
    fits = {}
    fits["sklearn"] = _measure(dict(base, kind="fit", library="sklearn", iters=args.iters),
                               args, args.repeats, "sklearn fit")
    if "numpy" in backends and iters_numpy != args.iters:
        # The inertia after fewer iterations can only be compared with scikit-learn's
        # after the same number: one extra (untimed for the table) reference fit.
        fits["sklearn@numpy_iters"] = _measure(
            dict(base, kind="fit", library="sklearn", iters=iters_numpy), args, 1,
            f"sklearn fit ({iters_numpy} iters, reference for numpy)")
    for name in args.peers:
        label, spec, _ = KMEANS_PEERS[name]
        fits[name] = _measure(dict(base, kind="fit", iters=args.iters, **spec), args,
                              args.repeats, f"{label} fit")
    runs = _fastem_runs(backends, args.algorithms)
    for name in runs:
        b, _, algorithm = name.partition(":")
        iters = iters_numpy if b == "numpy" else args.iters
        fits[name] = _measure(dict(base, kind="fit", library="fastem", backend=b, iters=iters,
                                   algorithm=algorithm or "auto"),
                              args, args.repeats, f"{_kmeans_label(name)} fit",
                              budget=NUMPY_REPEAT_BUDGET_S if b == "numpy" and not args.quick
                              else None)
    summ = {name: _summary(runs) for name, runs in fits.items()}
    raw["fit"] = fits
    ref = summ["sklearn"]
    labels_same = {True: [], False: []}  # backends whose labels_ do / do not equal sklearn's
    f64_diffs = []  # rel. diff of the float64-recomputed inertia, per backend
    from fastem.kmeans import _auto_algorithm

    for name in ["sklearn", *args.peers, *runs]:
        s = summ[name]
        who = _kmeans_label(name)
        if name in backends:
            who += f" (auto: {_auto_algorithm(w.n_features, w.n_clusters, True)})"
        if "error" in s:
            rows.append([w.label, who, "failed", "—", "—", "—", "—", "—", "—"])
            notes.append(f"{who} failed: {s['error']}")
            continue
        inertia_ref = ref.get("inertia")
        if name == "numpy" and iters_numpy != args.iters:
            who += f" ({iters_numpy} iters)"
            inertia_ref = summ["sklearn@numpy_iters"].get("inertia")
            notes.append(f"fastem numpy (the slow reference) ran {iters_numpy} iterations, not "
                         f"{args.iters}: its inertia and labels are compared with scikit-learn's "
                         f"after {iters_numpy} iterations, its s/iter with scikit-learn's full run")
        if s["repeats"] < args.repeats:
            who += f" (median of {s['repeats']})"
        rows.append([
            w.label, who, _fmt_s(s["s_per_iter"]), f"{s['seconds']:.3f}",
            "/".join(map(str, s["n_iters"])),
            "1.00x (ref)" if name == "sklearn" else _ratio(ref.get("s_per_iter"), s["s_per_iter"]),
            f"{s['inertia']:.10g}",
            "0 (ref)" if name == "sklearn" else (_rel(s["inertia"], inertia_ref)
                                                 if inertia_ref else "—"),
            f"{s['peak_mib']:.1f}",
        ])
        if name != "sklearn":
            same_ref = (summ["sklearn@numpy_iters"] if name == "numpy" and iters_numpy
                        != args.iters else ref)
            if "labels_crc" in same_ref:
                labels_same[s["labels_crc"] == same_ref["labels_crc"]].append(name)
                f64_diffs.append(f"{name} {_rel(s['inertia_f64'], same_ref['inertia_f64'])}")
            expected = (KMEANS_PEERS[name][1]["library"] if name in KMEANS_PEERS
                        else name.partition(":")[0])
            if s["backend_used"] != expected:
                notes.append(f"{who} actually ran on backend {s['backend_used']}!")
        if not s["deterministic"]:
            notes.append(f"{who}: inertia or labels changed between repeats")
        notes += _contention_note(who, s)
        if max(s["n_iters"]) < (iters_numpy if name == "numpy" else args.iters):
            notes.append(f"{who}: converged strictly after {s['n_iters']} iterations")

    if "faiss" in args.peers and w.dtype != "float32":
        notes.append(f"faiss-cpu ran on a float32 copy of the {w.dtype} X (made inside the "
                     "timed call); its inertia column sums its own float32 distances, and "
                     "its inertia recomputed in float64 on the original X is in the note below")
    if labels_same[True] or labels_same[False]:
        notes.append("labels_ identical to scikit-learn's: "
                     + (", ".join(labels_same[True]) or "none") + "; different: "
                     + (", ".join(labels_same[False]) or "none"))
    if f64_diffs:
        notes.append("inertia recomputed in float64 from labels_ and cluster_centers_, rel. diff "
                     "vs scikit-learn's recomputed the same way: " + ", ".join(f64_diffs))

    # ---- k-means++ seeding
    if not args.no_seeding:
        seeds = {"sklearn": _measure(dict(base, kind="seed", library="sklearn"), args,
                                     args.repeats, "sklearn k-means++")}
        for b in backends:
            slow = b == "numpy" and not args.quick
            seeds[b] = _measure(dict(base, kind="seed", library="fastem", backend=b), args,
                                args.repeats, f"fastem {b} k-means++",
                                timeout=NUMPY_SEED_TIMEOUT_S if slow else None,
                                budget=NUMPY_REPEAT_BUDGET_S if slow else None)
        raw["seeding"] = seeds
        ssum = {name: _summary(runs) for name, runs in seeds.items()}
        ref_s = ssum["sklearn"]
        pot = {name: seeding_potential(X, X[s["indices"]]) for name, s in ssum.items()
               if "indices" in s}
        for name in ["sklearn", *backends]:
            s = ssum[name]
            who = "k-means++ seeding: " + ("scikit-learn" if name == "sklearn"
                                           else f"fastem {name}")
            if "error" in s:
                why = (f"skipped: over {NUMPY_SEED_TIMEOUT_S} s (numpy reference)"
                       if s.get("timeout") else "failed")
                rows.append([w.label, who, "—", why, "—", "—", "—", "—", "—"])
                if not s.get("timeout"):
                    notes.append(f"{who} failed: {s['error']}")
                continue
            if s["repeats"] < args.repeats:
                who += f" (median of {s['repeats']})"
            if name == "sklearn" or "indices" not in ref_s:
                diff = "0 (ref)" if name == "sklearn" else "—"
            else:
                n_diff = sum(a != b for a, b in zip(s["indices"], ref_s["indices"]))
                diff = _rel(pot[name], pot["sklearn"]) + (
                    " (same rows)" if n_diff == 0 else f" ({n_diff}/{w.n_clusters} rows differ)")
            rows.append([
                w.label, who, "—", f"{s['seconds']:.3f}", "—",
                "1.00x (ref)" if name == "sklearn" else _ratio(ref_s.get("seconds"),
                                                               s["seconds"]),
                f"{pot[name]:.10g}", diff, f"{s['peak_mib']:.1f}",
            ])
            notes += _contention_note(who, s)

    # ---- whole cost: each library's own initialization + the fit
    if not args.no_total:
        names = ["sklearn", *(p for p in args.peers if p in TOTAL_PEERS),
                 *(b for b in backends if b != "numpy")]
        totals = {}
        for name in names:
            spec = (dict(library="fastem", backend=name) if name in backends
                    else KMEANS_PEERS[name][1] if name in KMEANS_PEERS else dict(library=name))
            totals[name] = _measure(dict(base, kind="fit", total=True, iters=args.iters, **spec),
                                    args, args.repeats, f"{_kmeans_label(name)} total")
        raw["total"] = totals
        tsum = {name: _summary(runs) for name, runs in totals.items()}
        ref_t = tsum["sklearn"]
        for name in names:
            s, who = tsum[name], "total (own init + fit): " + _kmeans_label(name)
            if "error" in s:
                rows.append([w.label, who, "failed", "—", "—", "—", "—", "—", "—"])
                notes.append(f"{who} failed: {s['error']}")
                continue
            rows.append([
                w.label, who, "—", f"{s['seconds']:.3f}", "/".join(map(str, s["n_iters"])),
                "1.00x (ref)" if name == "sklearn" else _ratio(ref_t.get("seconds"),
                                                               s["seconds"]),
                f"{s['inertia']:.10g}",
                "0 (ref)" if name == "sklearn" else _rel(s["inertia"], ref_t.get("inertia")),
                f"{s['peak_mib']:.1f}",
            ])
            notes += _contention_note(who, s)
    for path in (data_path, init_path):
        os.remove(path)
    return rows, notes, raw


def run_gmm_workload(w, cov, args, backends, tmpdir):
    """Measure one Gaussian-mixture workload; return (table rows, notes, raw results)."""
    _log(f"[{w.label} {cov}] generating data")
    X = make_blobs(w.n_samples, w.n_features, w.n_clusters, w.dtype)
    data_path = os.path.join(tmpdir, f"{w.name}_X.npy")
    init_path = os.path.join(tmpdir, f"{w.name}_means.npy")
    np.save(data_path, X)
    np.save(init_path, np.ascontiguousarray(X[initial_rows(w.n_samples, w.n_clusters)]))
    base = dict(data=data_path, init=init_path, n_threads=args.n_threads, cov=cov,
                kind="gmm_fit")
    iters = args.gmm_iters
    runs = {"sklearn": _measure(dict(base, library="sklearn", iters=iters), args,
                                args.repeats, f"sklearn GaussianMixture {cov}")}
    for b in backends:
        n = GMM_NUMPY_ITERS if b == "numpy" else iters
        runs[b] = _measure(dict(base, library="fastem", backend=b, iters=n), args,
                           1 if b == "numpy" else args.repeats, f"fastem {b} GaussianMixture {cov}")
    summ = {name: _summary(r) for name, r in runs.items()}
    rows, notes = _em_rows(f"{w.label} {cov}", summ, "sklearn", ["sklearn", *backends],
                           lambda name: "scikit-learn GaussianMixture" if name == "sklearn"
                           else f"fastem {name}")
    for path in (data_path, init_path):
        os.remove(path)
    return rows, notes, {"workload": w.__dict__, "cov": cov, "fit": runs}


def run_discrete_workload(w, model, args, backends, tmpdir):
    """Measure one discrete-mixture workload against StepMix (where it has the model)
    and the numpy reference; return (table rows, notes, raw results)."""
    import scipy.sparse as sp

    label = f"{w.name}: N={w.n_samples:,} D={w.n_features:,} K={w.n_clusters} {model}"
    _log(f"[{label}] generating data")
    X = make_discrete(w, model)
    weights, tables, from_stepmix = discrete_init(X, model, w.n_clusters)
    data_path = os.path.join(tmpdir, f"{w.name}_X" + (".npz" if sp.issparse(X) else ".npy"))
    init_path = os.path.join(tmpdir, f"{w.name}_init.npz")
    if sp.issparse(X):
        sp.save_npz(data_path, X, compressed=False)
    else:
        np.save(data_path, X)
    np.savez(init_path, weights=weights, tables=tables)
    base = dict(data=data_path, init=init_path, n_threads=args.n_threads, model=model,
                kind="discrete_fit")
    iters = args.discrete_iters
    runs = {}
    notes = []
    if model in STEPMIX_MEASUREMENT and from_stepmix:
        runs["stepmix"] = _measure(dict(base, library="stepmix", iters=iters), args,
                                   args.repeats, f"StepMix {model}")
    elif model in STEPMIX_MEASUREMENT:
        notes.append("StepMix is not installed (pip install stepmix): no peer row")
    else:
        notes.append("StepMix has no mixture of multinomials over count vectors: the "
                     "reference is fastem's numpy backend")
    for b in backends:
        n = DISCRETE_NUMPY_ITERS if b == "numpy" else iters
        runs[b] = _measure(dict(base, library="fastem", backend=b, iters=n), args,
                           1 if b == "numpy" else args.repeats, f"fastem {b} {model}")
    summ = {name: _summary(r) for name, r in runs.items()}
    ref_name = "stepmix" if "stepmix" in summ else ("numpy" if "numpy" in summ else None)
    rows, fit_notes = _em_rows(label, summ, ref_name, list(runs),
                               lambda name: "StepMix" if name == "stepmix" else f"fastem {name}")
    notes += fit_notes
    for path in (data_path, init_path):
        os.remove(path)
    return rows, notes, {"workload": w.__dict__, "model": model, "fit": runs}


def _em_rows(label, summ, ref_name, names, who):
    """Table rows and notes of EM fits: s/iter, the ratio to the reference row's s/iter,
    and lower_bound_ (compared with the reference's when the iteration counts match)."""
    ref = summ.get(ref_name, {})
    rows, notes = [], []
    for name in names:
        s, w = summ[name], who(name)
        if "error" in s:
            rows.append([label, w, "failed", "—", "—", "—", "—", "—", "—"])
            notes.append(f"{w} failed: {s['error']}")
            continue
        same_iters = s["n_iters"] == ref.get("n_iters") and "lower_bound" in ref
        rows.append([
            label, w, _fmt_s(s["s_per_iter"]), f"{s['seconds']:.3f}",
            "/".join(map(str, s["n_iters"])),
            "1.00x (ref)" if name == ref_name else _ratio(ref.get("s_per_iter"),
                                                          s["s_per_iter"]),
            f"{s['lower_bound']:.10g}",
            "0 (ref)" if name == ref_name else (_rel(s["lower_bound"], ref["lower_bound"])
                                                if same_iters else "— (other iters)"),
            f"{s['peak_mib']:.1f}",
        ])
        notes += _contention_note(w, s)
    return rows, notes


HEADER = ["workload", "library/backend", "s/iter (median)", "total s", "n_iter",
          "ratio to sklearn (sklearn time / ours)", "inertia", "rel. inertia diff vs sklearn",
          "peak MiB above baseline"]


def markdown_table(rows):
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="N / 10 and K / 4 at most (never below 8): a fast smoke run")
    p.add_argument("--workload", action="append",
                   choices=sorted(WORKLOADS) + sorted(GMM_WORKLOADS) + sorted(DISCRETE_WORKLOADS),
                   help="workload to run (repeatable); default: all. "
                   + "; ".join(w.label for w in WORKLOADS.values()))
    p.add_argument("--repeats", type=int, default=None,
                   help="fresh-process timings per row; the median is reported "
                   "(default 3; 1 with --quick, which is a smoke run)")
    p.add_argument("--iters", type=int, default=50, help="Lloyd iterations (default 50)")
    p.add_argument("--backends", default=",".join(FASTEM_BACKENDS),
                   help="comma-separated fastem backends (default: every usable one); "
                   "scikit-learn always runs as the reference")
    p.add_argument("--algorithms", default="auto",
                   help="comma-separated fastem K-means algorithms to time (default: auto; "
                        "e.g. auto,lloyd,hamerly,yinyang,elkan)")
    p.add_argument("--skip-numpy", action="store_true", help="leave out the numpy reference backend")
    p.add_argument("--numpy-iters", type=int, default=None,
                   help="iterations for the numpy backend (default: min(--iters, "
                   f"{NUMPY_QUICK_ITERS}) with --quick, else min(--iters, {NUMPY_FULL_ITERS}))")
    p.add_argument("--no-seeding", action="store_true", help="leave out the k-means++ rows")
    p.add_argument("--peers", default=",".join(KMEANS_PEERS),
                   help="comma-separated other K-means implementations for workloads a-c "
                   f"(default: {','.join(KMEANS_PEERS)}; each is skipped with a note if it "
                   "cannot be imported; 'none' for none)")
    p.add_argument("--no-total", action="store_true",
                   help="leave out the 'total' rows (each library's own init + fit)")
    p.add_argument("--gmm-iters", type=int, default=GMM_ITERS,
                   help=f"EM iterations for the GaussianMixture workloads (default {GMM_ITERS}; "
                   f"the numpy backend runs {GMM_NUMPY_ITERS})")
    p.add_argument("--discrete-iters", type=int, default=DISCRETE_ITERS,
                   help=f"EM iterations for the discrete-mixture workloads (default "
                   f"{DISCRETE_ITERS}; the numpy backend runs {DISCRETE_NUMPY_ITERS})")
    p.add_argument("--n-threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="threads for every library (default: all usable CPUs)")
    p.add_argument("--retry-contended", type=int, default=3, metavar="N",
                   help="redo a timed run during which other processes used over "
                   f"{CONTENDED_CORES} cores, up to N times per row (default 3; 0 disables)")
    p.add_argument("--quiet-wait", type=float, default=300, metavar="S",
                   help="before such a redo, wait up to S seconds for the machine to be "
                   "idle (default 300)")
    p.add_argument("--json", metavar="PATH", help="also write the raw results here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats is None:
        # --quick must stay around a minute: each row costs a process start-up (~1 s)
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1 or args.iters < 1 or args.n_threads < 1:
        p.error("--repeats, --iters and --n-threads must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        _child_main(json.loads(args.child))
        return 0

    # The default SIGTERM action would skip the cleanup below (temporary data files, the
    # running child): turn it into an ordinary exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="fastem-bench-") as tmpdir:
        return _run(args, tmpdir)


def _run(args, tmpdir):
    """The parent: snapshot fastem, print the header, run every workload, print the table."""
    args.src_root, fingerprint = _snapshot_fastem(os.path.join(tmpdir, "src"))
    # the children run a frozen copy of this script too, for the same reason
    args.child_script = shutil.copy2(__file__, os.path.join(tmpdir, "compare_child.py"))
    sys.path.insert(0, args.src_root)  # the same fastem the children import
    import fastem

    status = fastem.available_backends()
    wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    bad = sorted(set(args.algorithms) - {"auto", "lloyd", "hamerly", "yinyang", "elkan"})
    if bad:
        raise SystemExit(f"--algorithms: unknown {bad}; choose from auto, lloyd, hamerly, "
                         "yinyang, elkan")
    unknown = sorted(set(wanted) - set(FASTEM_BACKENDS))
    if unknown:
        sys.exit(f"unknown backend(s) {unknown}; choose from {FASTEM_BACKENDS}")
    if args.skip_numpy:
        wanted = [b for b in wanted if b != "numpy"]
    backends = [b for b in FASTEM_BACKENDS if b in wanted and status[b] is None]
    skipped = {b: status[b] for b in wanted if status[b] is not None}
    peers = [p.strip() for p in args.peers.split(",") if p.strip() not in ("", "none")]
    unknown = sorted(set(peers) - set(KMEANS_PEERS))
    if unknown:
        sys.exit(f"unknown peer(s) {unknown}; choose from {tuple(KMEANS_PEERS)}")
    peer_errors = {p: _import_error(KMEANS_PEERS[p][2]) for p in peers}
    args.peers = [p for p in peers if peer_errors[p] is None]

    names = args.workload or sorted(WORKLOADS) + sorted(GMM_WORKLOADS) + sorted(DISCRETE_WORKLOADS)
    workloads = [(WORKLOADS[n], None) if n in WORKLOADS else
                 GMM_WORKLOADS.get(n) or DISCRETE_WORKLOADS[n] for n in names]
    if args.quick:
        workloads = [(quick_workload(w), cov) for w, cov in workloads]

    info = machine_info(status)
    command = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    out = [f"# fastem vs scikit-learn KMeans{' (--quick)' if args.quick else ''}", "",
           f"Command: `{command}`", ""]
    out += [f"- {k}: {v}" for k, v in info.items()]
    out += [
        f"- threads: {args.n_threads} for every library; Lloyd: tol=0, n_init=1, "
        f"max_iter={args.iters}; median of {args.repeats} fresh-process runs per row",
        "- every timing excludes one untimed warm-up fit on the first "
        f"{WARMUP_ROWS:,} rows (numba compile / cache load, thread-pool start-up)",
        "- s/iter = fit seconds / n_iter_ (fit() includes input validation, the copy and "
        "centering of X and the final inertia, in both libraries)",
        "- peak MiB above baseline: the RSS high-water mark (VmHWM, reset through "
        "/proc/self/clear_refs just before the timed call) minus the RSS at that moment "
        "(data already loaded); includes the copy of X that fit() makes",
        f"- GaussianMixture rows (g*): identical weights_init (uniform), means_init (K rows of "
        f"X) and unit precisions_init, tol=0, {args.gmm_iters} EM iterations "
        f"({GMM_NUMPY_ITERS} for the numpy backend); the 'inertia' column holds lower_bound_ "
        "(mean log-likelihood per sample, higher is better); K = n_components",
        "- discrete-mixture rows (d*): fastem (alpha=1e-10) and StepMix 3.0 (d1 'binary', "
        "d3 'categorical') from identical initial parameters (StepMix's own random "
        f"initialization), tol=0, {args.discrete_iters} EM iterations "
        f"({DISCRETE_NUMPY_ITERS} for the numpy backend); ratio = reference time / ours, the "
        "reference being StepMix (d1, d3) or fastem's numpy backend (d2, where StepMix has "
        "no model); the 'inertia' column holds lower_bound_ (mean log-likelihood per sample)",
        "- k-means++ seeding rows: kmeans_plusplus(X, K, random_state=0); 'inertia' is the "
        "seeds' potential sum_i min_k ||x_i - c_k||^2 (float64)",
        "- K-means peers (a-c): scikit-learn KMeans(algorithm='elkan'), scikit-learn-intelex "
        "KMeans (lloyd, from sklearnex.cluster) and faiss.Kmeans (every point: "
        "max_points_per_centroid > N; init_centroids = the same centers; niter = max_iter), "
        "measured like the other rows; faiss needs float32 and gets a float32 copy of "
        "float64 data; its labels are one final assignment to its centroids",
        "- 'total' rows: each library's own initialization and the fit, timed together: "
        "KMeans(n_clusters=K, n_init=1, random_state=0, max_iter, tol=0) with its default "
        "k-means++ init (faiss: its default init, K points drawn at random, seed=0; "
        "fastem: the compiled backends only); the "
        "ratio and inertia diff are against scikit-learn's total row (other seeds, so the "
        "inertias need not agree)",
        "- each timed run also records the CPU used meanwhile by other processes (from "
        f"/proc/stat); a run during which they used over {CONTENDED_CORES} cores is redone "
        f"when the machine is quiet (up to {args.retry_contended} times per row), and a row "
        "still affected is flagged CONTENDED in the notes",
    ]
    if skipped:
        out.append(f"- requested but unavailable, skipped: {skipped}")
    if args.skip_numpy:
        out.append("- numpy backend skipped (--skip-numpy)")
    for p, err in peer_errors.items():
        if err is not None:
            out.append(f"- {KMEANS_PEERS[p][0]} skipped: cannot import {KMEANS_PEERS[p][2]} ({err})")
    print("\n".join(out), flush=True)

    all_rows, all_notes, raw = [], [], []
    t_start = time.perf_counter()
    for w, cov in workloads:
        # temporary .npy files in tmpdir: written once per workload, read by every child
        if cov is None:
            rows, notes, r = run_workload(w, args, backends, tmpdir)
        elif cov in STEPMIX_MEASUREMENT or cov == "multinomial":
            rows, notes, r = run_discrete_workload(w, cov, args, backends, tmpdir)
        else:
            rows, notes, r = run_gmm_workload(w, cov, args, backends, tmpdir)
        all_rows += rows
        all_notes += [f"{w.name}: {n}" for n in notes]
        raw.append(r)
    elapsed = time.perf_counter() - t_start
    methods = {run.get("memory_method") for r in raw for kind in ("fit", "seeding", "total")
               for runs in r.get(kind, {}).values() for run in runs} - {None}
    now = _source_fingerprint(REPO_ROOT / "fastem")
    changed = sorted(p for p in set(now) | set(fingerprint) if now.get(p) != fingerprint.get(p))
    if changed:
        all_notes.append("the working tree's fastem changed during the run ("
                         + ", ".join(changed[:6]) + (", ..." if len(changed) > 6 else "")
                         + "); this run measured the snapshot taken at its start")
    if any(not m.startswith("VmHWM") for m in methods):
        all_notes.append(f"peak memory measured by: {sorted(methods)} (clear_refs unavailable)")

    print("\n" + markdown_table(all_rows) + "\n")
    if all_notes:
        print("Notes:\n" + "\n".join(f"- {n}" for n in all_notes) + "\n")
    print(f"Total wall time of the benchmark: {elapsed:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"command": command, "machine": info, "args": vars(args),
                       "backends": backends, "elapsed_s": elapsed, "table": all_rows,
                       "notes": all_notes, "results": raw}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
