"""The package as a user meets it: import cost, the command line, configuration,
backend reporting and the numba cache fallback."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastem

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, env=None, **kw):
    full_env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=full_env,
                          timeout=300, **kw)


def test_import_compiles_nothing_and_loads_no_backend():
    code = ("import sys, fastem; "
            "bad = [m for m in ('numba', 'llvmlite', 'sklearn', 'scipy', "
            "'fastem.kernels.numba.kmeans', 'fastem.kernels.cython.kmeans') if m in sys.modules]; "
            "print(bad)")
    out = run(["-c", code])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


_DEFAULT_FITS = """
import sys, numpy as np, fastem
X = np.random.default_rng(0).standard_normal((500, 4))
for est in (fastem.KMeans(3, random_state=0), fastem.MiniBatchKMeans(3, random_state=0),
            fastem.GaussianMixture(3, random_state=0),
            fastem.BernoulliMixture(3, random_state=0)):
    est.fit((X > 0).astype(float) if isinstance(est, fastem.BernoulliMixture) else X)
    print(est.backend_)
print("numba" in sys.modules)
"""


@pytest.mark.skipif(fastem.available_backends()["cython"] is not None,
                    reason="the Cython kernels are not built here")
def test_default_fits_run_the_compiled_kernels_and_never_load_numba(tmp_path):
    """backend="auto" is the Cython build, so a short job neither compiles nor loads
    numba (a cold first run took 12-29 s of numba compilation), whatever its cache."""
    out = run(["-c", _DEFAULT_FITS], env={"FASTEM_CACHE_DIR": str(tmp_path),
                                          "FASTEM_BACKEND": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["cython"] * 4 + ["False"]
    assert os.listdir(tmp_path) == []  # nothing compiled


def test_auto_is_cython_then_numba_then_numpy(monkeypatch):
    from fastem import _dispatch

    for family in ("kmeans", "gaussian_mixture"):
        monkeypatch.setitem(_dispatch._status, ("cython", family), None)
        monkeypatch.setitem(_dispatch._status, ("numba", family), None)
        assert _dispatch.resolve_backend("auto", family) == "cython"
        monkeypatch.setitem(_dispatch._status, ("cython", family), "ImportError: not built")
        assert _dispatch.resolve_backend("auto", family) == "numba"


def test_cli_fit_on_bundled_dataset():
    out = run(["-m", "fastem", "fit", "--json"])
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["n_samples"] == 150 and res["n_clusters"] == 3
    # iris with k=3 has the well-known optimum 78.85566582597727 (scikit-learn, R)
    assert res["inertia"] == pytest.approx(78.85566582597727, rel=1e-9)
    assert sorted(res["cluster_sizes"]) == [38, 50, 62] or sorted(res["cluster_sizes"]) == [39, 50, 61]


def test_cli_fit_human_output_and_files(tmp_path):
    X = np.random.default_rng(0).standard_normal((60, 3))
    np.save(tmp_path / "x.npy", X)
    np.savetxt(tmp_path / "x.csv", X, delimiter=",", header="a,b,c", comments="")
    for name in ("x.npy", "x.csv"):
        out = run(["-m", "fastem", "fit", str(tmp_path / name), "-k", "4"])
        assert out.returncode == 0, out.stderr
        assert "60 samples x 3 features, k=4" in out.stdout
    out = run(["-m", "fastem", "fit", "kmeans", str(tmp_path / "x.csv"), "-k", "2", "--json"])
    assert json.loads(out.stdout)["n_clusters"] == 2


@pytest.mark.parametrize("args,message", [
    (["fit", "/no/such/file.npy"], "data file not found"),
    (["fit", "data.parquetx"], "data file not found"),
    (["fit", "-k", "0"], "expected a positive integer"),
    (["fit", "-k", "500"], "n_samples=150 should be >= n_clusters=500"),
    (["frobnicate"], "invalid choice"),
])
def test_cli_errors_go_to_stderr_with_nonzero_exit(args, message):
    out = run(["-m", "fastem", *args])
    assert out.returncode == 2
    assert message in out.stderr and out.stdout == ""


def test_cli_bad_csv(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3,oops\n")
    out = run(["-m", "fastem", "fit", str(path)])
    assert out.returncode == 2 and "cannot parse" in out.stderr


def test_info_reports_backends_and_threads():
    out = run(["-m", "fastem", "info", "--json"])
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert set(info["backends"]) == {"numba", "cython", "numpy"}
    assert info["backends"]["numpy"] == "available"
    assert info["available_cpus"] >= 1
    if info["backends"]["numba"] == "available":
        assert info["numba_threading_layer"] in ("omp", "tbb", "workqueue")


def test_environment_variable_selects_backend():
    code = "import numpy as np, fastem; print(fastem.KMeans(2, random_state=0).fit(np.random.rand(20, 2)).backend_)"
    out = run(["-c", code], env={"FASTEM_BACKEND": "numpy"})
    assert out.stdout.strip() == "numpy", out.stderr
    out = run(["-c", code], env={"FASTEM_BACKEND": "quantum"})
    assert out.returncode != 0 and "FASTEM_BACKEND" in out.stderr


def test_config_context_restores_and_validates():
    before = fastem.get_config()
    with fastem.config_context(backend="numpy", n_threads=1, chunk_bytes=4096):
        assert fastem.get_config() == {"backend": "numpy", "n_threads": 1, "chunk_bytes": 4096}
    assert fastem.get_config() == before
    assert before["chunk_bytes"] == 2**26
    with pytest.raises(ValueError, match="chunk_bytes"):
        fastem.set_config(chunk_bytes=0)
    with pytest.raises(ValueError, match="n_threads"):
        fastem.set_config(n_threads=0)
    with pytest.raises(ValueError, match="backend"):
        fastem.set_config(backend="gpu")


def test_available_cpus_respects_affinity():
    from fastem._threads import available_cpus

    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))


def test_numba_cache_falls_back_when_no_location_is_writable(tmp_path):
    pytest.importorskip("numba")
    # Simulate a read-only install: numba finds no cache locator except the one driven
    # by NUMBA_CACHE_DIR, which is unset. fastem must point it at a writable directory.
    code = f"""
import numba.core.caching as c, numba.core.config as cfg
impl = getattr(c, "CacheImpl", None) or c._CacheImpl
impl._locator_classes = [c.UserProvidedCacheLocator]
import tempfile; tempfile.tempdir = {str(tmp_path)!r}
import numpy as np, fastem
fastem.kmeans_plusplus(np.random.rand(30, 2), 2, backend="numba")  # compiles 2 kernels
print(cfg.CACHE_DIR)
"""
    # (and no private per-user directory either: FASTEM_CACHE_DIR cannot be created)
    out = run(["-c", code], env={"NUMBA_CACHE_DIR": "", "FASTEM_CACHE_DIR": "/dev/null/x"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(tmp_path))
    assert any(p.name.endswith(".nbi") for p in tmp_path.rglob("*"))
    assert oct((tmp_path / f"fastem-numba-cache-{os.getuid()}").stat().st_mode & 0o777) == "0o700"


def test_numba_compiles_without_cache_when_nothing_is_writable():
    pytest.importorskip("numba")
    code = """
import warnings
import numba.core.caching as c
impl = getattr(c, "CacheImpl", None) or c._CacheImpl
impl._locator_classes = []
import numpy as np, fastem
with warnings.catch_warnings(record=True) as rec:
    warnings.simplefilter("always")
    centers, _ = fastem.kmeans_plusplus(np.random.rand(30, 2), 2, backend="numba")
print(centers.shape == (2, 2), any("no writable numba cache" in str(w.message) for w in rec))
"""
    out = run(["-c", code], env={"NUMBA_CACHE_DIR": "", "FASTEM_CACHE_DIR": "/dev/null/x"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


#: a numba call that compiles little (two k-means++ kernels: a KMeans fit compiles five,
#: 15 s cold here against 4)
_FIT = "import numpy as np, fastem; fastem.kmeans_plusplus(" \
       "np.random.default_rng(0).random((30, 2)), 2, random_state=0, backend='numba')"


def _cache_files(root):
    return [p for p in root.rglob("*") if p.suffix in (".nbi", ".nbc")]


def test_kernels_are_cached_in_a_private_user_directory_not_in_the_package(tmp_path):
    """A fit writes its compiled kernels under $XDG_CACHE_HOME/fastem/numba-<version>,
    created 0700, and nothing into the installed package (files pip does not own)."""
    pytest.importorskip("numba")
    import time

    package = os.path.dirname(fastem.__file__)
    started = time.time()
    out = run(["-c", _FIT], env={"NUMBA_CACHE_DIR": "", "FASTEM_CACHE_DIR": "",
                                  "XDG_CACHE_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    root = tmp_path / "fastem"
    assert _cache_files(root / f"numba-{fastem.__version__}")
    for d in (root, root / f"numba-{fastem.__version__}"):
        assert d.stat().st_mode & 0o777 == 0o700, d
    from pathlib import Path

    written = [p for p in _cache_files(Path(package)) if p.stat().st_mtime >= started - 1]
    assert written == []


def test_numba_cache_dir_wins_when_set(tmp_path):
    pytest.importorskip("numba")
    out = run(["-c", _FIT], env={"NUMBA_CACHE_DIR": str(tmp_path / "numba"),
                                  "FASTEM_CACHE_DIR": "", "XDG_CACHE_HOME": str(tmp_path / "x")})
    assert out.returncode == 0, out.stderr
    assert _cache_files(tmp_path / "numba") and not (tmp_path / "x" / "fastem").exists()


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_a_cache_directory_others_can_write_to_is_not_used(tmp_path, monkeypatch):
    from fastem.kernels.numba._jit import _cache_root

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # a predictable, world-writable place: another user could plant
    monkeypatch.setenv("FASTEM_CACHE_DIR", str(shared))  # a pickled index there
    assert _cache_root() is None
    shared.chmod(0o700)
    assert _cache_root() == str(shared / f"numba-{fastem.__version__}")


def test_the_readme_commands_in_order_leave_the_fastem_command_working(tmp_path):
    """The README's two commands in a fresh venv: ``pip install . && fastem fit``, then
    ``pip install -e .`` (the test extra's packages are not needed here), then ``fastem
    fit`` from another directory still works (the first install's numba cache once made
    ``site-packages/fastem`` outlive the uninstall and shadow the editable install)."""
    import shutil

    clone = tmp_path / "clone"
    shutil.copytree(ROOT, clone, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.so", "*.c", "build", "*.egg-info"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py, fastem_cmd = str(venv / "bin" / "python"), str(venv / "bin" / "fastem")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "FASTEM_NO_CYTHON": "1",
           "NUMBA_CACHE_DIR": "", "FASTEM_CACHE_DIR": "", "PYTHONPATH": ""}

    def sh(*cmd, cwd=clone):
        out = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True)
        assert out.returncode == 0, (cmd, out.stdout[-2000:], out.stderr[-2000:])
        return out.stdout

    sh(py, "-m", "pip", "install", "-q", ".")
    assert "inertia" in sh(fastem_cmd, "fit")
    sh(py, "-m", "pip", "install", "-q", "-e", ".")
    assert "inertia" in sh(fastem_cmd, "fit", cwd=tmp_path)


def test_warmup_command():
    out = run(["-m", "fastem", "warmup", "--json"])
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    if fastem.available_backends()["numba"] is None:
        assert res["warmed"] == ["numba"]


@pytest.mark.parametrize("make", [lambda: fastem.KMeans(5), lambda: fastem.GaussianMixture(5),
                                  lambda: fastem.BernoulliMixture(5)])
def test_a_failed_first_fit_leaves_the_model_unfitted(make):
    """Validation records n_features_in_ before the fit fails (too few samples here): the
    model must still say it is not fitted, not fail later with an AttributeError."""
    from fastem.exceptions import NotFittedError

    est = make()
    X = np.array([[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(ValueError):
        est.fit(X)
    assert est.n_features_in_ == 2
    with pytest.raises(NotFittedError, match="not fitted"):
        est.predict(X)


def test_validation_is_the_bottom_layer():
    """``_validation`` (every check) imports nothing of fastem, anywhere in its code, so
    every module may use it and no import cycle can start there."""
    import ast

    import fastem._validation as validation

    tree = ast.parse(open(validation.__file__).read())
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert imports  # (numpy, numbers)
    for node in imports:
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("fastem"), node.module
        else:
            assert not any(a.name.startswith("fastem") for a in node.names)


def test_one_version_and_the_project_files():
    """pyproject reads the version from fastem/__init__.py (the installed metadata says
    the same); the license pyproject names exists; the package is marked typed."""
    import importlib.metadata

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        project = tomllib.load(fh)
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fastem.__version__"}
    assert importlib.metadata.version("fastem") == fastem.__version__
    for name in project["project"]["license-files"] + ["CHANGELOG.md"]:
        assert os.path.getsize(os.path.join(ROOT, name)) > 0
    assert "BSD 3-Clause" in open(os.path.join(ROOT, "LICENSE")).read()
    assert os.path.exists(os.path.join(os.path.dirname(fastem.__file__), "py.typed"))


def test_the_public_api_is_annotated_and_every_annotation_resolves():
    """py.typed promises type hints: the public methods and functions carry them, and
    each (a string, under ``from __future__ import annotations``) names real types of
    ``fastem._typing``, which only type checkers import."""
    import inspect
    import typing

    import fastem._typing as hints

    namespace = {**vars(typing), **vars(hints), "Self": typing.Any}
    methods = ["__init__", "fit", "predict", "score", "fit_predict", "partial_fit", "transform",
               "fit_transform", "predict_proba", "score_samples", "bic", "aic", "sample",
               "save", "set_output"]
    checked = 0
    for name in fastem.__all__:
        obj = getattr(fastem, name)
        if name in ("Chunks", "__version__"):
            continue
        funcs = ([getattr(obj, m) for m in methods if hasattr(obj, m)] if inspect.isclass(obj)
                 else [obj])
        for func in funcs:
            sig = inspect.signature(inspect.unwrap(func))
            assert sig.return_annotation is not inspect.Signature.empty, (name, func)
            for p in sig.parameters.values():
                if p.name != "self":
                    assert p.annotation is not inspect.Parameter.empty, (name, func, p.name)
                    eval(p.annotation, namespace)  # noqa: S307 - our own annotation strings
            eval(sig.return_annotation, namespace)
            checked += 1
    assert checked > 40
