"""The API reference builds without a warning, every public parameter is described, and
the example scripts run and draw their figures."""

import inspect
import os
import re
import subprocess
import sys

import pytest

import fastem

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(f for f in os.listdir(os.path.join(ROOT, "examples")) if f.endswith(".py"))


def _documented_parameters(doc):
    """Names listed at the left margin of a numpydoc Parameters section ("a : type",
    or "a, b, c" followed by their shared description)."""
    body = doc.split("Parameters\n----------\n", 1)[1]
    body = re.split(r"\n(?:Attributes|Notes|Returns|Examples)\n-+\n", body)[0]
    names = set()
    for line in body.splitlines():
        if line and not line.startswith(" "):
            names |= {n.strip() for n in line.split(":")[0].split(",")}
    return names


@pytest.mark.parametrize("name", [n for n in fastem.__all__ if inspect.isclass(getattr(fastem, n))
                                  or inspect.isfunction(getattr(fastem, n))])
def test_every_public_parameter_is_described(name):
    obj = getattr(fastem, name)
    doc = inspect.getdoc(obj) or ""
    func = obj.__init__ if inspect.isclass(obj) else obj
    params = [p for p in inspect.signature(func).parameters if p not in ("self", "args",
                                                                          "kwargs")]
    if not params:
        return
    assert "Parameters\n----------" in doc, f"{name} has no Parameters section"
    missing = [p for p in params if p not in _documented_parameters(doc)]
    assert missing == [], f"{name}: {missing} undocumented"


def test_the_api_reference_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    out = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html",
                          os.path.join(ROOT, "docs"), str(tmp_path / "html")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    html = (tmp_path / "html" / "api.html").read_text()
    for name in ("KMeans", "GaussianMixture", "n_components", "sample_weight"):
        assert name in html


@pytest.mark.parametrize("script", EXAMPLES)
def test_examples_draw_their_figures(script, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "figure.png"
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), "--out",
                          str(png)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env={**os.environ, "MPLBACKEND": "Agg"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_the_bic_example_finds_the_four_components():
    pytest.importorskip("matplotlib")
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    try:
        import plot_bic_choose_k as example
    finally:
        sys.path.pop(0)
    curves = example.bic_curves(example.data(), range(1, 8), ("full", "diag"))
    for bic in curves.values():
        assert min(range(7), key=bic.__getitem__) + 1 == 4
