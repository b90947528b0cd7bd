#!/usr/bin/env python
"""Cold start: the wall time of whole fresh Python processes, fastem vs scikit-learn.

    python benchmarks/cold_start.py                 # median of 5 runs per row
    python benchmarks/cold_start.py --runs 9 --json /tmp/cold.json

Rows (each one command run in a fresh interpreter, timed from the parent around
``subprocess.run``, so interpreter start-up and exit are included):

* ``python -c pass``: the interpreter alone, for reference;
* ``import sklearn.cluster`` and ``import fastem``;
* a process that draws 10,000 x 8 float64 points (``numpy.random.default_rng(0)``), fits
  ``KMeans(8, n_init=1, random_state=0)`` and exits: scikit-learn, and fastem's numba
  backend with numba's on-disk cache warm (``python -m fastem warmup`` is run first);
* the same fastem process with a cold cache: every run gets its own empty
  ``NUMBA_CACHE_DIR``, so it compiles the kernels it needs.

Before the timed runs, every command runs once untimed (it fills the OS page cache, and
the warm fastem row's numba cache).  Runs during which other processes used CPU are
redone, as in ``compare.py``.
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

DATA = "import numpy as np; X = np.random.default_rng(0).standard_normal((10_000, 8)); "
FIT_SKLEARN = DATA + ("from sklearn.cluster import KMeans; "
                      "KMeans(8, n_init=1, random_state=0).fit(X)")
FIT_FASTEM = DATA + ("from fastem import KMeans; "
                     "KMeans(8, n_init=1, random_state=0, backend='numba').fit(X)")

# name -> (row label, python -c code, run with an empty numba cache, reference row name)
CASES = {
    "python": ("interpreter only (reference)", "pass", False, None),
    "import_sklearn": ("import sklearn.cluster", "import sklearn.cluster", False, None),
    "import_fastem": ("import fastem", "import fastem", False, "import_sklearn"),
    "fit_sklearn": ("scikit-learn: data + KMeans fit", FIT_SKLEARN, False, None),
    "fit_fastem": ("fastem numba, warm cache: data + KMeans fit", FIT_FASTEM, False,
                   "fit_sklearn"),
    "fit_fastem_cold": ("fastem numba, cold cache (empty NUMBA_CACHE_DIR): data + KMeans fit",
                        FIT_FASTEM, True, "fit_sklearn"),
}


def child_env():
    """The children's environment: this checkout's fastem first on the path, as in
    compare.py (for every row alike, so that they all pay the same path search)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def run_once(code, cold_cache):
    """One fresh ``python -c code``: (wall seconds, CPU cores other processes used)."""
    env = child_env()
    with tempfile.TemporaryDirectory(prefix="fastem-cold-cache-") as cache:
        if cold_cache:
            env["NUMBA_CACHE_DIR"] = cache  # numba reads it at import; fastem keeps it
        busy0, child0 = _cpu_busy_seconds(), sum(os.times()[2:4])
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        wall = time.perf_counter() - t0
        busy1, child1 = _cpu_busy_seconds(), sum(os.times()[2:4])
    other = None if busy0 is None else max(0.0, (busy1 - busy0) - (child1 - child0)) / wall
    return wall, other


def measure(code, cold_cache, runs, retries, quiet_wait, label):
    """``runs`` timed runs after one untimed one; contended runs are redone."""
    run_once(code, cold_cache)
    kept, redone = [], 0
    while len(kept) < runs:
        wall, other = run_once(code, cold_cache)
        contended = other is not None and other > CONTENDED_CORES and wall >= 0.3
        print(f"  {label}: {wall:.3f} s"
              + (f", other processes {other:.2f} cores" if other is not None else ""),
              file=sys.stderr, flush=True)
        if contended and redone < retries:
            redone += 1
            _wait_for_quiet(quiet_wait)
            continue
        kept.append(dict(seconds=wall, other_cpu_cores=other, contended=contended))
    return dict(runs=kept, redone=redone,
                median=statistics.median(r["seconds"] for r in kept),
                min=min(r["seconds"] for r in kept), max=max(r["seconds"] for r in kept))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="timed runs per row (default 5)")
    p.add_argument("--retry-contended", type=int, default=3, metavar="N",
                   help=f"redo a run during which other processes used over {CONTENDED_CORES} "
                   "cores, up to N times per row (default 3)")
    p.add_argument("--quiet-wait", type=float, default=120, metavar="S",
                   help="before such a redo, wait up to S seconds for an idle machine")
    p.add_argument("--json", metavar="PATH", help="also write the raw results here")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    import fastem

    warm = subprocess.run([sys.executable, "-m", "fastem", "warmup", "--json"], env=child_env(),
                          capture_output=True, text=True, check=True).stdout.strip()
    results = {}
    for name, (label, code, cold, _) in CASES.items():
        results[name] = measure(code, cold, args.runs, args.retry_contended, args.quiet_wait,
                                label)

    command = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    out = ["# Cold start: fresh processes, fastem vs scikit-learn", "",
           f"Command: `{command}`", ""]
    info = machine_info(fastem.available_backends())
    info["fastem"] = f"{fastem.__version__} ({os.path.dirname(fastem.__file__)}, git {_git_revision()})"
    out += [f"- {k}: {v}" for k, v in info.items()]
    out += [f"- `python -m fastem warmup` before the runs: {warm}",
            f"- wall time of the whole process (start-up to exit), median of {args.runs} "
            "runs after one untimed run; default threads (all cores) for both libraries"]
    out += ["", "| process | median s | min-max s | ratio (scikit-learn / fastem) | "
            "runs |", "|---|---|---|---|---|"]
    notes = []
    for name, (label, _, _, ref) in CASES.items():
        r = results[name]
        ratio = f"{results[ref]['median'] / r['median']:.2f}x" if ref else "—"
        out.append(f"| {label} | {r['median']:.3f} | {r['min']:.3f}-{r['max']:.3f} | {ratio} "
                   f"| {len(r['runs'])} |")
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
            json.dump({"command": command, "warmup": warm, "results": results,
                       "notes": notes}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
