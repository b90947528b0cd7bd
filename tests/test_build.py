"""setup.py's OpenMP probe, and agreement between the probe and the built extension."""

import importlib.util
import os
import shutil

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setup_module():
    spec = importlib.util.spec_from_file_location("fastem_setup", os.path.join(ROOT, "setup.py"))
    source = open(os.path.join(ROOT, "setup.py")).read()
    # import the helpers without running setup(): execute everything above the call
    module = importlib.util.module_from_spec(spec)
    exec(compile(source.split("\nsetup(")[0], "setup.py", "exec"), module.__dict__)
    return module


def _compiler():
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.sysconfig import customize_compiler

    cc = new_compiler()
    customize_compiler(cc)
    return cc


needs_cc = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                              reason="no C compiler")


@needs_cc
def test_openmp_probe_finds_gcc_openmp_and_respects_the_switch(monkeypatch):
    setup = _setup_module()
    monkeypatch.delenv("FASTEM_DISABLE_OPENMP", raising=False)
    cflags, lflags = setup._openmp_flags(_compiler())
    assert "-fopenmp" in cflags and "-fopenmp" in lflags  # gcc supports OpenMP
    monkeypatch.setenv("FASTEM_DISABLE_OPENMP", "1")
    assert setup._openmp_flags(_compiler()) == ([], [])


@needs_cc
def test_openmp_probe_reports_failure_as_serial_build():
    setup = _setup_module()

    class BrokenCompiler:
        compiler_type = "unix"

        def compile(self, *a, **k):
            raise RuntimeError("no omp.h")

    assert setup._openmp_flags(BrokenCompiler()) == ([], [])


def test_built_cython_kernels_report_openmp_like_the_probe():
    from fastem._dispatch import available_backends, get_kernels

    if available_backends()["cython"] is not None:
        pytest.skip("cython backend not built here")
    kern = get_kernels("cython", "kmeans")
    if os.environ.get("FASTEM_DISABLE_OPENMP", "0") in ("", "0") and shutil.which("gcc"):
        assert kern.OPENMP is True
