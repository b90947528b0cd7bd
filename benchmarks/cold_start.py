#!/usr/bin/env python
"""Cold start: the wall time of whole fresh processes, fastem vs scikit-learn.

    python benchmarks/cold_start.py                 # median of 5 runs per row
    python benchmarks/cold_start.py --runs 3 --json /tmp/cold.json

Each row is one command run in a fresh interpreter, timed from the parent around
``subprocess.run`` (interpreter start-up and exit included):

* ``python -c pass``, ``import sklearn.cluster``, ``import fastem``: for reference;
* ``fastem fit`` and ``fastem fit gmm`` (the bundled iris data, 150 x 4) with the default
  backend, each with a *cold* cache (an empty ``FASTEM_CACHE_DIR`` and ``NUMBA_CACHE_DIR``
  for every run, as on a fresh machine) and a *warm* one (the cache the untimed first run
  filled), beside scikit-learn doing the same fit in a fresh process;
* the same two commands with ``--backend numba``, cold (``--numba-runs`` runs: each
  compiles the kernels it needs) and warm;
* four cold ``fastem fit gmm`` jobs started together (the median wall time of a job
  against one job alone), as batch schedulers start them on one node;
* a fresh process that draws 1,000,000 x 16 float32 rows and fits
  ``KMeans(16, n_init=1, random_state=0)`` with a cold cache, against scikit-learn's.

The issue-15 targets: cold ``fastem fit`` and ``fastem fit gmm`` at most 3 s, warm at most
0.5 s, four concurrent cold jobs no slower than one, and the cold 1,000,000 x 16 fit no
slower in total than scikit-learn's.  Before the timed runs every command runs once
untimed (it fills the OS page cache, and the warm rows' cache).  Runs during which other
processes used CPU are redone, as in ``compare.py``.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

# compare.py's machine description and contention checks (this script's folder is on
# sys.path when it is run as a script)
from compare import (CONTENDED_CORES, REPO_ROOT, _cpu_busy_seconds, _git_revision,
                     _wait_for_quiet, machine_info)

PY = sys.executable
IRIS = "from fastem.datasets import load_iris; X = load_iris()[0]; "
BIG = ("import numpy as np; X = np.random.default_rng(0).standard_normal((1_000_000, 16))"
       ".astype(np.float32); ")
FASTEM_FIT = [PY, "-m", "fastem", "fit"]

# name -> (row label, argv, cache ("cold", "warm" or None), reference row, runs key)
CASES = {
    "python": ("interpreter only (reference)", [PY, "-c", "pass"], None, None, "runs"),
    "import_sklearn": ("import sklearn.cluster", [PY, "-c", "import sklearn.cluster"], None,
                       None, "runs"),
    "import_fastem": ("import fastem", [PY, "-c", "import fastem"], None, "import_sklearn",
                      "runs"),
    "sk_kmeans": ("scikit-learn: KMeans(3) on iris",
                  [PY, "-c", IRIS + "from sklearn.cluster import KMeans; "
                   "KMeans(3, random_state=0).fit(X)"], None, None, "runs"),
    "fit_cold": ("`fastem fit`, cold cache", FASTEM_FIT, "cold", "sk_kmeans", "runs"),
    "fit_warm": ("`fastem fit`, warm cache", FASTEM_FIT, "warm", "sk_kmeans", "runs"),
    "sk_gmm": ("scikit-learn: GaussianMixture(3) on iris",
               [PY, "-c", IRIS + "from sklearn.mixture import GaussianMixture; "
                "GaussianMixture(3, random_state=0).fit(X)"], None, None, "runs"),
    "gmm_cold": ("`fastem fit gmm`, cold cache", FASTEM_FIT + ["gmm"], "cold", "sk_gmm",
                 "runs"),
    "gmm_warm": ("`fastem fit gmm`, warm cache", FASTEM_FIT + ["gmm"], "warm", "sk_gmm",
                 "runs"),
    "numba_fit_cold": ("`fastem fit --backend numba`, cold cache",
                       FASTEM_FIT + ["--backend", "numba"], "cold", "sk_kmeans", "numba_runs"),
    "numba_fit_warm": ("`fastem fit --backend numba`, warm cache",
                       FASTEM_FIT + ["--backend", "numba"], "warm", "sk_kmeans", "runs"),
    "numba_gmm_cold": ("`fastem fit gmm --backend numba`, cold cache",
                       FASTEM_FIT + ["gmm", "--backend", "numba"], "cold", "sk_gmm",
                       "numba_runs"),
    "numba_gmm_warm": ("`fastem fit gmm --backend numba`, warm cache",
                       FASTEM_FIT + ["gmm", "--backend", "numba"], "warm", "sk_gmm", "runs"),
    "sk_big": ("scikit-learn: 1,000,000 x 16 float32, KMeans(16, n_init=1)",
               [PY, "-c", BIG + "from sklearn.cluster import KMeans; "
                "KMeans(16, n_init=1, random_state=0).fit(X)"], None, None, "runs"),
    "big_cold": ("fastem: the same, cold cache",
                 [PY, "-c", BIG + "from fastem import KMeans; "
                  "KMeans(16, n_init=1, random_state=0).fit(X)"], "cold", "sk_big", "runs"),
}
CONCURRENT = 4


def child_env(cache):
    """The children's environment: this checkout's fastem first on the path (for every
    row alike), and the kernel cache in ``cache``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("FASTEM_BACKEND", None)
    if cache is not None:
        env["FASTEM_CACHE_DIR"] = env["NUMBA_CACHE_DIR"] = cache
    return env


def run_batch(argv, cache, n, warm_dir):
    """``n`` fresh processes of ``argv`` started together: ([wall seconds of each], CPU
    cores other processes used).  A cold cache is a new empty directory per process."""
    with tempfile.TemporaryDirectory(prefix="fastem-cold-cache-") as tmp:
        dirs = [None] * n
        if cache == "warm":
            dirs = [warm_dir] * n
        elif cache == "cold":
            dirs = [os.path.join(tmp, str(i)) for i in range(n)]
            for d in dirs:
                os.mkdir(d, 0o700)
        busy0, child0 = _cpu_busy_seconds(), sum(os.times()[2:4])
        t0 = time.perf_counter()
        procs = [subprocess.Popen(argv, env=child_env(d), stdout=subprocess.DEVNULL)
                 for d in dirs]
        walls = [None] * n
        while any(w is None for w in walls):
            for i, p in enumerate(procs):
                if walls[i] is None and p.poll() is not None:
                    if p.returncode != 0:
                        raise RuntimeError(f"{shlex.join(argv)} exited with {p.returncode}")
                    walls[i] = time.perf_counter() - t0
            time.sleep(0.002)
        total = time.perf_counter() - t0
        busy1, child1 = _cpu_busy_seconds(), sum(os.times()[2:4])
    other = None if busy0 is None else max(0.0, (busy1 - busy0) - (child1 - child0)) / total
    return walls, other


def measure(argv, cache, runs, retries, quiet_wait, label, warm_dir, n=1):
    """``runs`` timed batches of ``n`` after one untimed one; contended runs are redone."""
    run_batch(argv, cache, n, warm_dir)
    kept, redone = [], 0
    while len(kept) < runs:
        walls, other = run_batch(argv, cache, n, warm_dir)
        wall = statistics.median(walls)
        contended = other is not None and other > CONTENDED_CORES and wall >= 0.3
        print(f"  {label}: {wall:.3f} s"
              + (f", other processes {other:.2f} cores" if other is not None else ""),
              file=sys.stderr, flush=True)
        if contended and redone < retries:
            redone += 1
            _wait_for_quiet(quiet_wait)
            continue
        kept.append(dict(seconds=wall, jobs=walls, other_cpu_cores=other, contended=contended))
    return dict(runs=kept, redone=redone,
                median=statistics.median(r["seconds"] for r in kept),
                min=min(r["seconds"] for r in kept), max=max(r["seconds"] for r in kept))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="timed runs per row (default 5)")
    p.add_argument("--numba-runs", type=int, default=1,
                   help="timed runs of the cold numba rows (each compiles; default 1)")
    p.add_argument("--retry-contended", type=int, default=3, metavar="N",
                   help=f"redo a run during which other processes used over {CONTENDED_CORES} "
                   "cores, up to N times per row (default 3)")
    p.add_argument("--quiet-wait", type=float, default=120, metavar="S",
                   help="before such a redo, wait up to S seconds for an idle machine")
    p.add_argument("--json", metavar="PATH", help="also write the raw results here")
    args = p.parse_args(argv)
    if args.runs < 1 or args.numba_runs < 1:
        p.error("--runs and --numba-runs must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    import fastem

    results = {}
    with tempfile.TemporaryDirectory(prefix="fastem-warm-cache-") as warm_dir:
        for name, (label, cmd, cache, _, runs_key) in CASES.items():
            results[name] = measure(cmd, cache, getattr(args, runs_key), args.retry_contended,
                                    args.quiet_wait, label, warm_dir)
        label = f"{CONCURRENT} cold `fastem fit gmm` jobs started together (a job's wall)"
        results["concurrent"] = measure(FASTEM_FIT + ["gmm"], "cold", args.runs,
                                        args.retry_contended, args.quiet_wait, label,
                                        warm_dir, n=CONCURRENT)
    rows = {**{k: (v[0], v[3]) for k, v in CASES.items()},
            "concurrent": (label, "gmm_cold")}

    command = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    out = ["# Cold start: fresh processes, fastem vs scikit-learn", "",
           f"Command: `{command}`", ""]
    info = machine_info(fastem.available_backends())
    info["fastem"] = (f"{fastem.__version__} ({os.path.dirname(fastem.__file__)}, "
                      f"git {_git_revision()})")
    out += [f"- {k}: {v}" for k, v in info.items()]
    out += [f"- wall time of the whole process (start-up to exit), median of {args.runs} "
            f"runs ({args.numba_runs} for the cold numba rows) after one untimed run; "
            "default threads (all cores) for both libraries"]
    out += ["", "| process | median s | min-max s | against | ratio (that / this) | runs |",
            "|---|---|---|---|---|---|"]
    notes = []
    for name, (label, ref) in rows.items():
        r = results[name]
        ratio = f"{results[ref]['median'] / r['median']:.2f}x" if ref else "—"
        against = "—" if ref is None else rows[ref][0]
        out.append(f"| {label} | {r['median']:.3f} | {r['min']:.3f}-{r['max']:.3f} | "
                   f"{against} | {ratio} | {len(r['runs'])} |")
        if r["redone"]:
            notes.append(f"{label}: {r['redone']} contended run(s) discarded and redone")
        if any(x["contended"] for x in r["runs"]):
            notes.append(f"{label}: CONTENDED (other processes used over {CONTENDED_CORES} "
                         "cores during a kept run)")
    print("\n".join(out))
    if notes:
        print("\nNotes:\n" + "\n".join(f"- {n}" for n in notes))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"command": command, "results": results, "notes": notes}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
