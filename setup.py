"""Build the optional Cython kernels.

The Cython backend is a fallback for machines where numba is unavailable.  It is
compiled with OpenMP when the compiler supports it and serially otherwise; when
it cannot be built at all (no compiler, no Cython, no scipy headers) the package
still installs and runs on the numba and numpy backends.

Environment switches (for packagers and for testing the fallbacks):
  FASTEM_NO_CYTHON=1        skip the Cython extensions entirely
  FASTEM_DISABLE_OPENMP=1   build the extensions serially, without OpenMP
"""

import os
import runpy
import shutil
import sys
import tempfile
import textwrap

from setuptools import setup
from setuptools.command.build_ext import build_ext

# one extension per declared model family (fastem/_families.py imports nothing of fastem)
KERNEL_MODULES = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                             "fastem", "_families.py"))["NAMES"]

_OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return (n >= 1 && omp_get_max_threads() >= 1) ? 0 : 1;
    }
    """
)


def _warn(msg):
    sys.stderr.write(f"fastem setup: {msg}\n")


def _openmp_flags(compiler):
    """Return (compile_args, link_args) enabling OpenMP, or ([], []) if the probe fails."""
    if os.environ.get("FASTEM_DISABLE_OPENMP", "0") not in ("", "0"):
        return [], []
    if compiler.compiler_type == "msvc":
        candidates = [(["/openmp"], [])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"]), (["-Xpreprocessor", "-fopenmp"], ["-lomp"])]
    tmp = tempfile.mkdtemp(prefix="fastem-omp-")
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as fh:
            fh.write(_OPENMP_PROBE)
        for cflags, lflags in candidates:
            try:
                objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
                compiler.link_executable(objs, "probe", output_dir=tmp, extra_postargs=lflags)
            except Exception:  # noqa: BLE001 - any failure means "this flag set does not work"
                continue
            return cflags, lflags
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _warn("the compiler does not support OpenMP; building the Cython kernels serially")
    return [], []


def _fast_math_flags(compiler):
    """Optimisation flags for the kernels: plain -O3, no fast-math.

    gcc's counterpart of the numba FASTMATH set (-fassociative-math -fno-signed-zeros
    -fno-trapping-math -freciprocal-math -ffp-contract=fast) was measured to make the
    Lloyd pass 2.4x slower here (N=1e6, D=16, K=16 float32: 30.8 ms vs 12.6 ms), so it
    is not used.  -ffinite-math-only is never acceptable: the kernels rely on -inf.
    """
    return ["/O2"] if compiler.compiler_type == "msvc" else ["-O3"]


class OptionalBuildExt(build_ext):
    """build_ext that never fails the install: a kernel that does not compile is skipped."""

    def build_extensions(self):
        cflags, lflags = _openmp_flags(self.compiler)
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args) + cflags + _fast_math_flags(
                self.compiler)
            ext.extra_link_args = list(ext.extra_link_args) + lflags
            try:
                self.build_extension(ext)
            except Exception as exc:  # noqa: BLE001
                _warn(f"could not build {ext.name} ({exc}); the cython backend will be unavailable")

    def run(self):
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001
            _warn(f"building the Cython kernels failed ({exc}); continuing without them")


def _extensions():
    if os.environ.get("FASTEM_NO_CYTHON", "0") not in ("", "0"):
        return []
    try:
        import numpy
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError as exc:
        _warn(f"Cython/numpy not importable at build time ({exc}); skipping the Cython kernels")
        return []
    exts = [
        Extension(
            f"fastem.kernels.cython.{name}",
            [os.path.join("fastem", "kernels", "cython", f"{name}.pyx")],
            include_dirs=[numpy.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
        for name in KERNEL_MODULES
    ]
    try:
        return cythonize(
            exts,
            compiler_directives={
                "language_level": 3,
                "boundscheck": False,
                "wraparound": False,
                "cdivision": True,
                "initializedcheck": False,
            },
        )
    except Exception as exc:  # noqa: BLE001
        _warn(f"cythonize failed ({exc}); skipping the Cython kernels")
        return []


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
