"""Out-of-core fitting: fit a .npy file larger than the memory the process may use.

    python benchmarks/out_of_core.py                     # 8 GiB of float32 under 2 GiB
    python benchmarks/out_of_core.py --gib 1 --limit-gib 0.5 --max-iter 3   # a quick look

Writes (once, kept for later runs) a float32 ``.npy`` of Gaussian blobs of the given
size, then runs ``python -m fastem fit MODEL FILE`` in a child process whose data
segment is limited with ``RLIMIT_DATA`` (what ``prlimit --data`` sets): every anonymous
allocation -- heap, numpy arrays, thread stacks -- counts, the read-only memory map of
the file does not (its pages are the kernel's page cache, reclaimable at any time).
A fit that held a copy of the data, or anything proportional to it beyond the per-row
vectors, would die with MemoryError.  To show that the limit bites, the same child
first tries ``np.load(FILE)`` (reading the array into memory) and must fail.

While each job runs, its ``/proc/PID/status`` is sampled every 50 ms: the table
reports the peak anonymous resident memory (RssAnon: memory the process owns) and,
for reference, the peak total resident set (VmHWM, which also counts the file's pages
while they are mapped).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

GIB = 2**30


def make_file(path, gib, n_features, n_centers, seed=0):
    """A float32 .npy of ``gib`` GiB: blobs around ``n_centers`` random centers, written
    in blocks through a memory map (never in memory whole)."""
    n_rows = int(gib * GIB) // (4 * n_features)
    if os.path.exists(path):
        existing = np.load(path, mmap_mode="r")
        if existing.shape == (n_rows, n_features) and existing.dtype == np.float32:
            return n_rows
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-5, 5, size=(n_centers, n_features)).astype(np.float32)
    tmp = path + ".partial"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n_rows, n_features))
    step = 2**20
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        block = rng.standard_normal((stop - start, n_features), dtype=np.float32)
        block += centers[rng.integers(0, n_centers, stop - start)]
        out[start:stop] = block
    out.flush()
    del out
    os.replace(tmp, path)
    return n_rows


def _limit(nbytes):
    def apply():
        resource.setrlimit(resource.RLIMIT_DATA, (nbytes, nbytes))
    return apply


def _status(pid):
    """(RssAnon, VmHWM) in bytes from /proc/PID/status, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            fields = dict(line.split(":", 1) for line in fh)
    except (FileNotFoundError, ProcessLookupError):
        return None
    kib = lambda name: int(fields.get(name, "0 kB").split()[0]) * 1024  # noqa: E731
    return kib("RssAnon"), kib("VmHWM")


def run_limited(argv, limit):
    """Run argv under RLIMIT_DATA=limit; (returncode, stdout, stderr, seconds, peak
    RssAnon, peak VmHWM)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_limit(limit))
    peak_anon = peak_hwm = 0
    while proc.poll() is None:
        status = _status(proc.pid)
        if status:
            peak_anon, peak_hwm = max(peak_anon, status[0]), max(peak_hwm, status[1])
        time.sleep(0.05)
    out, err = proc.communicate()
    return proc.returncode, out, err, time.perf_counter() - start, peak_anon, peak_hwm


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", default="/tmp/fastem-out-of-core.npy")
    parser.add_argument("--gib", type=float, default=8.0, help="size of the data file")
    parser.add_argument("--n-features", type=int, default=64)
    parser.add_argument("--limit-gib", type=float, default=2.0, help="RLIMIT_DATA of the job")
    parser.add_argument("-k", type=int, default=16)
    parser.add_argument("--max-iter", type=int, default=5)
    parser.add_argument("--model", action="append", choices=["kmeans", "gmm"],
                        help="repeatable; default both")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    models = args.model or ["kmeans", "gmm"]
    limit = int(args.limit_gib * GIB)

    t0 = time.perf_counter()
    n_rows = make_file(args.path, args.gib, args.n_features, args.k)
    size = os.path.getsize(args.path)
    print(f"data: {args.path}: {n_rows} x {args.n_features} float32, {size / GIB:.2f} GiB "
          f"(ready in {time.perf_counter() - t0:.0f} s); job limit RLIMIT_DATA "
          f"{limit / GIB:.2f} GiB")

    code = f"import numpy as np; np.load({args.path!r}).sum()"
    rc, _, err, _, _, _ = run_limited([sys.executable, "-c", code], limit)
    loaded = rc == 0
    print("control: np.load(file) under the limit " +
          ("SUCCEEDED: the limit does not bind, the benchmark proves nothing" if loaded else
           f"fails as it must ({err.strip().splitlines()[-1][:80]})"))

    rows = []
    for model in models:  # scikit-learn under the same limit, for comparison
        make = ("KMeans(16, n_init=1, max_iter=2, random_state=0)" if model == "kmeans" else
                "GaussianMixture(16, covariance_type='diag', max_iter=2, "
                "init_params='random_from_data', random_state=0)")
        code = (f"import numpy as np; from sklearn.cluster import KMeans; "
                f"from sklearn.mixture import GaussianMixture; "
                f"{make}.fit(np.load({args.path!r}, mmap_mode='r'))")
        rc, _, err, seconds, anon, _ = run_limited([sys.executable, "-c", code], limit)
        last = err.strip().splitlines()[-1][:90] if err.strip() else ""
        print(f"scikit-learn {model} on the memory map under the limit: " +
              ("ran" if rc == 0 else f"fails after {seconds:.1f} s ({last})"))
        rows.append({"model": f"scikit-learn {model}", "failed": last} if rc else
                    {"model": f"scikit-learn {model}", "ran": True})
    for model in models:
        cmd = [sys.executable, "-m", "fastem", "fit", model, args.path, "-k", str(args.k),
               "--max-iter", str(args.max_iter), "--tol", "0", "--random-state", "0", "--json",
               "-o", f"{args.path}.{model}.npz"]
        if model == "gmm":
            cmd += ["--covariance-type", "diag", "--init", "random_from_data"]
        rc, out, err, seconds, anon, hwm = run_limited(cmd, limit)
        if rc != 0:
            print(f"{model}: FAILED (exit {rc}): {err.strip()[-400:]}")
            rows.append({"model": model, "failed": err.strip()[-400:]})
            continue
        res = json.loads(out)
        quality = (f"inertia {res['inertia']:.6g}" if "inertia" in res else
                   f"lower bound {res['lower_bound']:.6g}")
        rows.append({"model": model, "seconds_total": round(seconds, 1),
                     "seconds_fit": res["seconds"], "n_iter": res["n_iter"],
                     "peak_rss_anon_mib": round(anon / 2**20), "peak_vmhwm_mib": round(hwm / 2**20),
                     "quality": quality, "command": " ".join(cmd[1:])})
    print()
    print("| job | fit s (whole job s) | iterations | peak RssAnon MiB | peak VmHWM MiB | "
          "quality |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "failed" in r or "ran" in r:
            print(f"| {r['model']} | {'failed' if 'failed' in r else 'ran'} | | | | |")
            continue
        print(f"| {r['model']} | {r['seconds_fit']:.1f} ({r['seconds_total']:.1f}) | "
              f"{r['n_iter']} | {r['peak_rss_anon_mib']} | {r['peak_vmhwm_mib']} | "
              f"{r['quality']} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"n_rows": n_rows, "n_features": args.n_features, "file_bytes": size,
                       "limit_bytes": limit, "control_load_succeeded": loaded, "runs": rows},
                      fh, indent=1)
    ours = [r for r in rows if not r["model"].startswith("scikit-learn")]
    return 1 if loaded or any("failed" in r for r in ours) else 0


if __name__ == "__main__":
    sys.exit(main())
