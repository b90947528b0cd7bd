"""The fastem command end to end, in subprocesses: fit every model, save, predict, info,
and the errors a batch job can hit (exit code 2, message on stderr, nothing on stdout)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import fastem


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fastem", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    np.save(d / "gauss.npy", rng.standard_normal((200, 3)))
    binary = (rng.random((200, 6)) < 0.3).astype(float)
    binary[rng.random(binary.shape) < 0.05] = np.nan
    np.savetxt(d / "binary.csv", binary, delimiter=",", header="a,b,c,d,e,f", comments="")
    sp.save_npz(d / "counts.npz", sp.csr_matrix(rng.poisson(1.0, (200, 30)).astype(float)))
    np.save(d / "codes.npy", rng.integers(-1, 4, (200, 5)))
    return d


@pytest.mark.parametrize("model, data, options", [
    ("kmeans", "gauss.npy", []),
    ("kmeans", "gauss.npy", ["--algorithm", "hamerly"]),
    ("gmm", "gauss.npy", ["--covariance-type", "diag"]),
    ("bernoulli", "binary.csv", ["--alpha", "0.5"]),
    ("multinomial", "counts.npz", []),
    ("categorical", "codes.npy", []),
])
def test_fit_save_predict_round_trip(files, tmp_path, model, data, options):
    out = run("fit", model, files / data, "-k", 3, "-o", tmp_path / "m.npz", "--json", *options)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["model"] == model and res["n_samples"] == 200 and sum(res["cluster_sizes"]) == 200
    est = fastem.load(tmp_path / "m.npz")
    if model == "bernoulli":
        assert est.alpha == 0.5
    if "--algorithm" in options:
        assert est.algorithm == "hamerly"
    X = {"gauss.npy": lambda: np.load(files / data),
         "binary.csv": lambda: np.loadtxt(files / data, delimiter=",", skiprows=1),
         "counts.npz": lambda: sp.load_npz(files / data),
         "codes.npy": lambda: np.load(files / data)}[data]()
    out = run("predict", tmp_path / "m.npz", files / data, "-o", tmp_path / "labels.npy")
    assert out.returncode == 0, out.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), est.predict(X))
    if model != "kmeans":
        out = run("predict", tmp_path / "m.npz", files / data, "-o", tmp_path / "p.csv",
                  "--proba")
        assert out.returncode == 0, out.stderr
        proba = np.loadtxt(tmp_path / "p.csv", delimiter=",")
        np.testing.assert_allclose(proba, est.predict_proba(X), rtol=1e-9, atol=1e-12)


def test_info_on_a_model_file(files, tmp_path):
    assert run("fit", "gmm", files / "gauss.npy", "-k", 2, "-o", tmp_path / "g.npz").returncode == 0
    out = run("info", tmp_path / "g.npz", "--json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["model"] == "GaussianMixture" and res["n_features"] == 3
    assert res["params"]["n_components"] == 2 and len(res["weights"]) == 2


def test_errors_a_batch_job_can_hit(files, tmp_path):
    assert run("fit", "kmeans", files / "gauss.npy", "-k", 2, "-o", tmp_path / "k.npz",
               "--quiet").returncode == 0
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a model")
    np.save(tmp_path / "wide.npy", np.zeros((5, 7)))
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["predict", tmp_path / "none.npz", files / "gauss.npy", "-o", tmp_path / "o.npy"],
         "model file not found"),
        (["predict", tmp_path / "bad.npz", files / "gauss.npy", "-o", tmp_path / "o.npy"],
         "not a readable fastem model file"),
        (["predict", tmp_path / "k.npz", tmp_path / "wide.npy", "-o", tmp_path / "o.npy"],
         "7 features"),
        (["predict", tmp_path / "k.npz", files / "gauss.npy", "-o", tmp_path / "o.parquet"],
         "unsupported output format"),
        (["predict", tmp_path / "k.npz", files / "gauss.npy", "-o", tmp_path / "no/dir/o.npy"],
         "cannot write"),
        (["predict", tmp_path / "k.npz", files / "gauss.npy", "-o", tmp_path / "o.npy", "--proba"],
         "no probabilities"),
        (["fit", "bernoulli", files / "gauss.npy"], "0 or 1"),
        (["fit", "kmeans", files / "gauss.npy", "--bogus"], "unrecognized arguments"),
        (["fit", "kmeans", empty], "no data files"),
    ]
    for args, message in cases:
        out = run(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr and out.stdout == "", (args, out.stderr)
    assert not (tmp_path / "o.npy").exists()


def test_checkpoint_option(files, tmp_path):
    ckpt = tmp_path / "fit.ckpt"
    out = run("fit", "gmm", files / "gauss.npy", "-k", 3, "--checkpoint", ckpt,
              "--checkpoint-every", 1, "--json")
    assert out.returncode == 0, out.stderr
    assert not ckpt.exists()  # removed once the fit completed
    out = run("fit", "kmeans", files / "gauss.npy", "--checkpoint", ckpt, "--checkpoint-every", 1)
    assert out.returncode == 0 and not ckpt.exists()


def test_progress_display(capsys):
    from fastem.__main__ import _Progress

    gm = fastem.GaussianMixture(2, max_iter=50)
    progress = _Progress(gm, "log", interval=0.0)
    progress(dict(init=0, iteration=5, lower_bound=-3.25, change=1e-2, converged=False,
                  elapsed=0.5))
    progress.close()
    err = capsys.readouterr().err
    assert "init 1  iteration 5/50  lower bound -3.25  change 1.00e-02  10.0 it/s" in err
    assert "<= 4 s left" in err and err.endswith("\n")
    km = _Progress(fastem.KMeans(3, max_iter=20), "log", interval=0.0)
    km(dict(init=1, iteration=2, center_shift=0.5, n_changed=7, converged=False, elapsed=1.0))
    assert "init 2  iteration 2/20  center shift 5.00e-01  7 labels changed" in \
        capsys.readouterr().err
    quiet = _Progress(gm, "none")
    quiet(dict(init=0, iteration=1, lower_bound=0.0, change=0.0, converged=False, elapsed=1.0))
    quiet.close()
    assert capsys.readouterr().err == ""


def test_parquet_and_chunked_inputs(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = np.random.default_rng(4)
    X = rng.standard_normal((90, 3))
    table = pa.table({"height": X[:, 0], "width": X[:, 1], "depth": X[:, 2]})
    pq.write_table(table, tmp_path / "x.parquet")
    out = run("fit", "gmm", tmp_path / "x.parquet", "-k", 2, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["n_samples"] == 90
    pq.write_table(pa.table({"a": [1.0, 2.0], "name": ["x", "y"]}), tmp_path / "bad.parquet")
    out = run("fit", tmp_path / "bad.parquet")
    assert out.returncode == 2 and "column 'name'" in out.stderr and "not numeric" in out.stderr

    chunks = tmp_path / "chunks"
    chunks.mkdir()
    for i in range(3):
        np.save(chunks / f"part{i}.npy", X[30 * i:30 * (i + 1)])
    for source in (chunks, str(chunks / "part*.npy")):
        out = run("fit", "kmeans", source, "-k", 2, "--json", "-o", tmp_path / "k.npz")
        assert out.returncode == 0, out.stderr
        res = json.loads(out.stdout)
        assert res["n_samples"] == 90 and "3 chunks" in res["data"]
        np.testing.assert_allclose(
            fastem.load(tmp_path / "k.npz").cluster_centers_,
            fastem.KMeans(2, random_state=0).fit(X).cluster_centers_, rtol=1e-12)
    np.save(chunks / "part3.npy", np.zeros((5, 4)))
    out = run("fit", chunks)  # streamed: the file is named
    assert out.returncode == 2 and "part3.npy) has 4 columns but the first has 3" in out.stderr
    out = run("fit", "bernoulli", chunks)
    assert out.returncode == 2 and "row 0, column 0 of piece 0 of X (" in out.stderr
    out = run("fit", tmp_path / "nothing-*.npy")
    assert out.returncode == 2 and "no data files" in out.stderr


def test_minibatch_fits_a_file_and_streams_chunk_files(tmp_path):
    X = np.vstack([np.random.default_rng(s).normal(c, 0.5, (400, 2))
                   for s, c in enumerate((0.0, 5.0, 10.0))])
    np.save(tmp_path / "x.npy", X)
    out = run("fit", "minibatch", tmp_path / "x.npy", "-k", 3, "--json", "-o", tmp_path / "m.npz")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    expected = fastem.MiniBatchKMeans(3, random_state=0).fit(X)
    np.testing.assert_allclose(fastem.load(tmp_path / "m.npz").cluster_centers_,
                               expected.cluster_centers_, rtol=1e-12)
    assert res["model"] == "minibatch" and sorted(res["cluster_sizes"]) == [400, 400, 400]

    chunks = tmp_path / "chunks"
    chunks.mkdir()
    order = np.random.default_rng(9).permutation(1200)
    for i in range(4):
        np.save(chunks / f"p{i}.npy", X[order[300 * i:300 * (i + 1)]])
    out = run("fit", "minibatch", chunks, "-k", 3, "--max-iter", 2, "--json",
              "-o", tmp_path / "s.npz")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    stream = fastem.MiniBatchKMeans(3, random_state=0)
    for _ in range(2):
        for i in range(4):
            stream.partial_fit(np.load(chunks / f"p{i}.npy"))
    model = fastem.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(model.cluster_centers_, stream.cluster_centers_)
    assert res["n_samples"] == 1200 and sorted(res["cluster_sizes"]) == [400, 400, 400]
    assert res["inertia"] == pytest.approx(-stream.score(X[order]), rel=1e-9)
    out = run("fit", "minibatch", chunks, "--checkpoint", tmp_path / "c.ckpt")
    assert out.returncode == 2 and "not supported for minibatch" in out.stderr


# ----------------------------------------------------------------- batch jobs
def test_version():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"fastem {fastem.__version__}"


def test_the_bundled_demo_is_announced_on_stderr():
    out = run("fit", "--json")
    assert "bundled iris demo" in out.stderr
    json.loads(out.stdout)  # stdout stays machine-readable
    assert "bundled" not in run("fit", "--quiet").stderr


def test_every_fit_option_has_help_and_defaults_are_said():
    from fastem.__main__ import build_parser

    fit = build_parser()._subparsers._group_actions[0].choices["fit"]
    missing = [a.dest for a in fit._actions if not a.help and a.dest != "help"]
    assert missing == []
    assert "default 0" in run("fit", "--help").stdout.replace("\n", " ").replace("  ", " ")


@pytest.mark.parametrize("exc", [PermissionError(13, "Permission denied", "/data/x.npy"),
                                 IsADirectoryError(21, "Is a directory", "/data")])
def test_file_system_errors_are_one_line_and_exit_2(monkeypatch, capsys, exc):
    from fastem import __main__ as cli

    def refuse(*args, **kwargs):
        raise exc

    monkeypatch.setattr(cli, "_load_data", refuse)
    assert cli.main(["fit", "x.npy"]) == 2
    err = capsys.readouterr().err
    assert err == f"fastem: error: {exc.strerror}: {exc.filename}\n"


def _long_fit(tmp_path):
    """A checkpointed fit that runs for seconds, started in the background once its
    first checkpoint is written."""
    import os
    import signal
    import time

    X = np.random.default_rng(0).standard_normal((200_000, 4))
    np.save(tmp_path / "big.npy", X)
    ckpt = tmp_path / "fit.ckpt"
    cmd = [sys.executable, "-m", "fastem", "fit", "gmm", str(tmp_path / "big.npy"), "-k", "6",
           "--covariance-type", "diag", "--max-iter", "400", "--tol", "0", "--json",
           "--checkpoint", str(ckpt), "--checkpoint-every", "100000",
           "--checkpoint-seconds", "0.2"]
    # a job started in the background inherits SIGINT ignored (and Python then leaves it
    # so); a terminal's Ctrl-C reaches a foreground job with the default disposition
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert ckpt.exists(), "the fit never wrote its first checkpoint"
    return proc, cmd, ckpt, os


def test_sigterm_writes_the_checkpoint_and_exits_143_and_a_rerun_resumes(tmp_path):
    import signal

    proc, cmd, ckpt, os = _long_fit(tmp_path)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    assert ckpt.exists()  # written at the end of the interrupted iteration
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    fresh = subprocess.run(cmd[:cmd.index("--checkpoint")], capture_output=True, text=True,
                           timeout=300)
    assert json.loads(resumed.stdout)["lower_bound"] == json.loads(fresh.stdout)["lower_bound"]
    assert not ckpt.exists()


def test_ctrl_c_exits_130_without_a_traceback(tmp_path):
    import signal

    proc, _, _, os = _long_fit(tmp_path)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().endswith("fastem: interrupted") and "Traceback" not in err


# ----------------------------------------------------------------- columns and formats
@pytest.mark.parametrize("reader", ["pyarrow", "loadtxt"])
def test_csv_with_empty_fields_and_quoted_numbers(tmp_path, monkeypatch, reader):
    """pandas writes NaN as an empty field, and QUOTE_ALL quotes every number: both read
    as the numbers they are, by pyarrow when installed and by loadtxt without it."""
    pd = pytest.importorskip("pandas")
    from fastem import __main__ as cli

    if reader == "pyarrow":
        pytest.importorskip("pyarrow.csv")
    else:
        monkeypatch.setitem(sys.modules, "pyarrow.csv", None)  # as if not installed
    X = np.random.default_rng(0).standard_normal((50, 3))
    X[::7, 1] = np.nan
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    for quoting in (0, 1):  # csv.QUOTE_MINIMAL, csv.QUOTE_ALL
        df.to_csv(tmp_path / "x.csv", index=False, quoting=quoting)
        got, _, names = cli._load_csv(str(tmp_path / "x.csv"))
        assert names == ["a", "b", "c"]
        np.testing.assert_allclose(got, X, rtol=1e-15, equal_nan=True)
    np.savetxt(tmp_path / "plain.csv", X[:, [0, 2]], delimiter=",")  # no header
    got, _, names = cli._load_csv(str(tmp_path / "plain.csv"))
    assert names is None and got.shape == (50, 2)


def test_predict_matches_columns_by_name_and_refuses_other_columns(tmp_path):
    pd = pytest.importorskip("pandas")
    X = np.random.default_rng(1).standard_normal((200, 3))
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    df.to_csv(tmp_path / "fit.csv", index=False)
    df[["c", "a", "b"]].to_csv(tmp_path / "reordered.csv", index=False)
    df[["a", "b"]].assign(z=0.0).to_csv(tmp_path / "other.csv", index=False)
    assert run("fit", tmp_path / "fit.csv", "-k", "3", "-o", tmp_path / "m.npz").returncode == 0
    assert list(fastem.load(tmp_path / "m.npz").feature_names_in_) == ["a", "b", "c"]
    same = run("predict", tmp_path / "m.npz", tmp_path / "fit.csv", "-o", tmp_path / "1.npy")
    moved = run("predict", tmp_path / "m.npz", tmp_path / "reordered.csv", "-o",
                tmp_path / "2.npy")
    assert same.returncode == moved.returncode == 0
    assert "matched by name" in moved.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "1.npy"), np.load(tmp_path / "2.npy"))
    bad = run("predict", tmp_path / "m.npz", tmp_path / "other.csv", "-o", tmp_path / "3.npy")
    assert bad.returncode == 2 and "missing ['c'], unexpected ['z']" in bad.stderr
    assert not (tmp_path / "3.npy").exists()


def test_parquet_is_read_in_batches_and_keeps_float32(tmp_path, monkeypatch):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    from fastem import __main__ as cli

    X = np.random.default_rng(2).standard_normal((1000, 3)).astype(np.float32)
    pq.write_table(pa.table({n: X[:, i] for i, n in enumerate("abc")}), tmp_path / "x.parquet",
                   row_group_size=100)
    monkeypatch.setattr(cli, "PARQUET_BATCH_ROWS", 300)
    chunks, _, names = cli._load_parquet(str(tmp_path / "x.parquet"), stream=True)
    assert isinstance(chunks, fastem.Chunks) and names == ["a", "b", "c"]
    pieces = list(chunks)
    assert [p.shape[0] for p in pieces] == [300, 300, 300, 100]
    assert all(p.dtype == np.float32 for p in pieces)
    np.testing.assert_array_equal(np.concatenate(pieces), X)
    whole = cli._load_parquet(str(tmp_path / "x.parquet"))[0]
    assert whole.dtype == np.float32
    km = fastem.KMeans(3, random_state=0).fit(chunks)
    assert km.cluster_centers_.dtype == np.float32
    np.testing.assert_array_equal(km.cluster_centers_,
                                  fastem.KMeans(3, random_state=0).fit(X).cluster_centers_)


# ----------------------------------------------------------------- progress
class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _info(init, iteration, elapsed):
    return dict(init=init, iteration=iteration, elapsed=elapsed, converged=False,
                lower_bound=-1.0, change=1e-3)


def test_progress_log_lines_every_interval_and_the_last_one(capsys):
    from fastem.__main__ import _Progress

    clock = _Clock()
    progress = _Progress(fastem.GaussianMixture(2, max_iter=100), "log", interval=10.0,
                         clock=clock)
    for i in range(1, 26):  # one iteration a second
        clock.t = float(i - 1)
        progress(_info(0, i, float(i)))
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    assert [int(ln.split("iteration ")[1].split("/")[0]) for ln in lines] == [1, 11, 21, 25]
    assert all(ln.startswith("fastem: init 1  iteration") for ln in lines)


def test_progress_rate_counts_from_the_start_of_each_initialization(capsys):
    from fastem.__main__ import _Progress

    progress = _Progress(fastem.GaussianMixture(2, max_iter=100), "log", interval=0.0,
                         clock=_Clock())
    for i in range(1, 11):
        progress(_info(0, i, 0.1 * i))  # the first init: 10 it/s, 1 s in all
    progress(_info(1, 5, 1.0 + 0.5))  # the second: 5 iterations in 0.5 s
    last = capsys.readouterr().err.splitlines()[-1]
    assert "10.0 it/s" in last and "<= 10 s left" in last  # not 5 / 1.5 s = 3.3 it/s


def test_progress_bar_fits_the_terminal(capsys, monkeypatch):
    import os
    import shutil

    from fastem.__main__ import _Progress

    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=None: os.terminal_size((40, 20)))
    progress = _Progress(fastem.GaussianMixture(2, max_iter=100), "bar")
    progress(_info(0, 1, 0.1))
    progress.close()
    err = capsys.readouterr().err
    assert err.startswith("\r") and all(len(part) <= 39 for part in err.strip("\n").split("\r"))


def test_a_batch_job_logs_progress_when_stderr_is_not_a_terminal():
    out = run("fit", "gmm")  # stderr is a pipe here
    assert "fastem: init 1  iteration 1/100" in out.stderr
    assert "iteration" not in run("fit", "gmm", "--progress", "none").stderr


@pytest.mark.parametrize("model, options", [
    ("gaussian-hmm", ["--covariance-type", "full", "--implementation", "scaling"]),
    ("gmm-hmm", ["--n-mix", "2"]),
    ("categorical-hmm", []),
])
def test_hmm_fit_with_lengths_save_and_predict(tmp_path, model, options):
    """``--lengths`` splits DATA into its sequences; the saved model is the API's fit
    with the same options, and predict decodes with the same lengths."""
    rng = np.random.default_rng(2)
    if model == "categorical-hmm":
        X = rng.integers(0, 4, (300, 1))
    else:
        X = rng.standard_normal((300, 2))
        X[100:220] += 5.0
    np.save(tmp_path / "x.npy", X)
    np.savetxt(tmp_path / "lengths.csv", [170, 130], fmt="%d")
    out = run("fit", model, tmp_path / "x.npy", "-k", 2, "--lengths", tmp_path / "lengths.csv",
              "--max-iter", 7, "-o", tmp_path / "m.npz", "--json", "--checkpoint",
              tmp_path / "fit.ckpt", *options)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "fit.ckpt").exists()  # removed once the fit completed
    res = json.loads(out.stdout)
    est = fastem.load(tmp_path / "m.npz")
    kw = {"n_iter": 7, "random_state": 0}
    if options[:1] == ["--covariance-type"]:
        kw.update(covariance_type="full", implementation="scaling")
    if model == "gmm-hmm":
        kw["n_mix"] = 2
    cls = {"gaussian-hmm": fastem.GaussianHMM, "gmm-hmm": fastem.GMMHMM,
           "categorical-hmm": fastem.CategoricalHMM}[model]
    ref = cls(2, **kw).fit(X, [170, 130])
    assert res["log_likelihood"] == ref.monitor_.history[-1] == est.monitor_.history[-1]
    assert res["cluster_sizes"] == np.bincount(ref.predict(X, [170, 130]), minlength=2).tolist()
    np.save(tmp_path / "lengths.npy", np.array([170, 130]))
    out = run("predict", tmp_path / "m.npz", tmp_path / "x.npy", "--lengths",
              tmp_path / "lengths.npy", "-o", tmp_path / "states.npy")
    assert out.returncode == 0, out.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "states.npy"), ref.predict(X, [170, 130]))


def test_hmm_fit_and_predict_on_chunk_files(tmp_path):
    """A directory of chunk files cut inside the sequences fits the model of the stacked
    array, and predict decodes the same directory with the same lengths; the fit shows
    its progress."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 2))
    X[100:220] += 5.0
    (tmp_path / "parts").mkdir()
    for i, part in enumerate(np.split(X, [80, 81, 200])):
        np.save(tmp_path / "parts" / f"{i}.npy", part)
    np.savetxt(tmp_path / "lengths.csv", [170, 130], fmt="%d")
    out = run("fit", "gaussian-hmm", tmp_path / "parts", "-k", 2, "--lengths",
              tmp_path / "lengths.csv", "--max-iter", 5, "-o", tmp_path / "m.npz", "--json",
              "--progress", "log")
    assert out.returncode == 0, out.stderr
    assert "fastem: init 1  iteration 1/5" in out.stderr
    ref = fastem.GaussianHMM(2, n_iter=5, random_state=0).fit(X, [170, 130])
    assert json.loads(out.stdout)["log_likelihood"] == ref.monitor_.history[-1]
    out = run("predict", tmp_path / "m.npz", tmp_path / "parts", "--lengths",
              tmp_path / "lengths.csv", "-o", tmp_path / "states.npy")
    assert out.returncode == 0, out.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "states.npy"), ref.predict(X, [170, 130]))
    np.savetxt(tmp_path / "short.csv", [170, 100], fmt="%d")
    out = run("fit", "gaussian-hmm", tmp_path / "parts", "--lengths", tmp_path / "short.csv")
    assert out.returncode == 2 and "lengths must sum to len(X) = 300" in out.stderr


def test_topic_models_fit_a_sparse_npz_and_predict_topics(tmp_path):
    """``fastem fit lda DOCS.npz -k K`` (and plsa) is the API's fit; predict gives each
    document's main topic (``--proba``: its topic mixture)."""
    import scipy.sparse as sp

    X = sp.csr_matrix(np.random.default_rng(4).poisson(0.4, (200, 30)).astype(float))
    sp.save_npz(tmp_path / "docs.npz", X)
    out = run("fit", "lda", tmp_path / "docs.npz", "-k", 3, "--max-iter", 4, "--json", "-o",
              tmp_path / "lda.npz")
    assert out.returncode == 0, out.stderr
    ref = ref_lda = fastem.LatentDirichletAllocation(3, max_iter=4, random_state=0).fit(X)
    res = json.loads(out.stdout)
    assert res["perplexity"] == ref.bound_
    assert res["cluster_sizes"] == np.bincount(ref.transform(X).argmax(axis=1),
                                               minlength=3).tolist()
    for flag, expected in (([], ref.transform(X).argmax(axis=1)), (["--proba"], ref.transform(X))):
        out = run("predict", tmp_path / "lda.npz", tmp_path / "docs.npz", "-o",
                  tmp_path / "t.npy", *flag)
        assert out.returncode == 0, out.stderr
        np.testing.assert_array_equal(np.load(tmp_path / "t.npy"), expected)
    for model, args, message in [
            ("lda", ["--n-init", 2], "--n-init is not an option of lda"),
            ("lda", ["--checkpoint", tmp_path / "c.ckpt"],
             "--checkpoint is not supported for lda yet"),
            ("plsa", ["--n-init", 2], "--n-init and --init are not options of plsa")]:
        out = run("fit", model, tmp_path / "docs.npz", *args)
        assert out.returncode == 2 and message in out.stderr, out.stderr
    out = run("fit", "plsa", tmp_path / "docs.npz", "-k", 3, "--max-iter", 6, "--json", "-o",
              tmp_path / "plsa.npz")
    assert out.returncode == 0, out.stderr
    ref = fastem.PLSA(3, max_iter=6, random_state=0).fit(X)
    assert json.loads(out.stdout)["log_likelihood"] == ref.lower_bound_
    out = run("predict", tmp_path / "plsa.npz", tmp_path / "docs.npz", "-o", tmp_path / "p.npy")
    assert out.returncode == 0, out.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), ref.transform(X).argmax(axis=1))
    (tmp_path / "parts").mkdir()  # a directory of .npz chunks is streamed, one at a time
    for i in range(3):
        sp.save_npz(tmp_path / "parts" / f"{i}.npz", X[70 * i:70 * (i + 1)])
    out = run("fit", "lda", tmp_path / "parts", "-k", 3, "--max-iter", 4, "--json")
    assert out.returncode == 0, out.stderr
    assert "streamed" in json.loads(out.stdout)["data"]
    assert json.loads(out.stdout)["perplexity"] == ref_lda.bound_


def test_factor_analysis_fits_predicts_factors_and_has_info(files, tmp_path):
    """``fastem fit fa DATA -k Q`` is the API's fit; predict writes each row's factors,
    info reads the model file back."""
    X = np.load(files / "gauss.npy")
    out = run("fit", "fa", files / "gauss.npy", "-k", 2, "--json", "-o", tmp_path / "fa.npz")
    assert out.returncode == 0, out.stderr
    ref = fastem.FactorAnalysis(2, random_state=0).fit(X)
    res = json.loads(out.stdout)
    assert res["log_likelihood"] == ref.loglike_[-1] and res["n_samples"] == X.shape[0]
    assert "cluster_sizes" not in res
    out = run("predict", tmp_path / "fa.npz", files / "gauss.npy", "-o", tmp_path / "z.npy")
    assert out.returncode == 0 and "factors of" in out.stdout, out.stderr
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), ref.transform(X), rtol=1e-12)
    out = run("predict", tmp_path / "fa.npz", files / "gauss.npy", "-o", tmp_path / "z.npy",
              "--proba")
    assert out.returncode == 2 and "drop --proba" in out.stderr
    out = run("fit", "fa", files / "gauss.npy", "--n-init", 2)
    assert out.returncode == 2 and "not options of fa" in out.stderr
    out = run("fit", "fa", files / "gauss.npy", "--checkpoint", tmp_path / "c.ckpt")
    assert out.returncode == 2 and "--checkpoint is not supported for fa" in out.stderr
    out = run("fit", "ppca", files / "gauss.npy", "-k", 2, "--json", "-o", tmp_path / "p.npz")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["log_likelihood"] == fastem.PPCA(2).fit(X).loglike_
    out = run("predict", tmp_path / "p.npz", files / "gauss.npy", "-o", tmp_path / "z.npy")
    assert out.returncode == 0, out.stderr
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), fastem.PPCA(2).fit(X).transform(X),
                               rtol=1e-12)
    out = run("fit", "ppca", files / "gauss.npy", "--max-iter", 3)
    assert out.returncode == 2 and "--max-iter is not an option of ppca" in out.stderr


def test_mixture_of_factor_analyzers_fits_and_predicts(files, tmp_path):
    """``fastem fit mfa DATA -k K --factors Q`` is the API's fit (missing entries in a CSV
    included); predict writes its labels, info reads the file back."""
    X = np.load(files / "gauss.npy")
    X[::9, 0] = np.nan
    np.savetxt(tmp_path / "holes.csv", X, delimiter=",")
    out = run("fit", "mfa", tmp_path / "holes.csv", "-k", 2, "--factors", 1, "--noise-type",
              "shared", "--json", "-o", tmp_path / "mfa.npz")
    assert out.returncode == 0, out.stderr
    ref = fastem.MixtureOfFactorAnalyzers(2, n_factors=1, noise_type="shared",
                                          random_state=0).fit(X)
    res = json.loads(out.stdout)
    assert res["lower_bound"] == ref.lower_bound_ and res["n_samples"] == X.shape[0]
    assert res["cluster_sizes"] == np.bincount(ref.predict(X), minlength=2).tolist()
    out = run("predict", tmp_path / "mfa.npz", tmp_path / "holes.csv", "-o",
              tmp_path / "labels.npy")
    assert out.returncode == 0, out.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), ref.predict(X))
    out = run("info", tmp_path / "mfa.npz", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["n_components"] == 2, out.stderr


def test_info_reads_every_kind_of_model_file(files, tmp_path):
    """(LDA, PLSA and the HMMs' files once lacked what info prints.)"""
    import scipy.sparse as sp

    sp.save_npz(tmp_path / "d.npz", sp.csr_matrix(np.random.default_rng(1).poisson(
        0.5, (60, 12)).astype(float)))
    for model, data, field in (("lda", tmp_path / "d.npz", "perplexity"),
                               ("plsa", tmp_path / "d.npz", "log_likelihood"),
                               ("gaussian-hmm", files / "gauss.npy", "log_likelihood"),
                               ("fa", files / "gauss.npy", "log_likelihood"),
                               ("ppca", files / "gauss.npy", "log_likelihood")):
        iters = [] if model == "ppca" else ["--max-iter", 3]
        assert run("fit", model, data, "-k", 2, *iters, "--quiet", "-o",
                   tmp_path / "m.npz").returncode == 0
        out = run("info", tmp_path / "m.npz", "--json")
        assert out.returncode == 0, out.stderr
        assert np.isfinite(json.loads(out.stdout)[field]), model


def test_hmm_options_are_checked(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((10, 2)))
    np.save(tmp_path / "bad.npy", np.array([4, 5]))
    for args, message in [
            (["fit", "kmeans", tmp_path / "x.npy", "--lengths", tmp_path / "bad.npy"],
             "--lengths is an option of the hidden Markov models"),
            (["fit", "gaussian-hmm", tmp_path / "x.npy", "--lengths", tmp_path / "bad.npy"],
             "summing to the data's 10 rows; it sums to 9"),
            (["fit", "gaussian-hmm", tmp_path / "x.npy", "--n-init", 3],
             "--n-init is not an option of the hidden Markov models"),
            (["fit", "gaussian-hmm", tmp_path / "x.npy", "--lengths", tmp_path / "none.csv"],
             "cannot read the sequence lengths from")]:
        out = run(*args)
        assert out.returncode == 2 and message in out.stderr and out.stdout == "", out.stderr
