"""Every fit of the fingerprint grid gives the hashes recorded before the EM-engine
redesign (tests/data/fingerprints.json, written by ``python tests/fingerprint_grid.py
--write`` at the commit that recorded it): the redesign changes no fitted value of any
model, backend, dtype, thread count or data source.

The default run checks the numba and Cython backends; the numpy reference (slow on
the 70-cluster case) runs with ``-m slow``.
"""

import json

import pytest

from conftest import FAST_BACKENDS, BACKENDS
import fingerprint_grid

with open(fingerprint_grid.RECORD) as _fh:
    RECORDED = json.load(_fh)
MODELS = [m[0] for m in fingerprint_grid.models()]


def _check(name, backends):
    got = fingerprint_grid.compute(backends=backends, names=[name])
    assert got, f"no fit of {name} ran"
    changed = {k: (RECORDED.get(k), v) for k, v in got.items() if RECORDED.get(k) != v}
    assert not changed, f"fitted attributes changed (recorded, now): {changed}"


@pytest.mark.parametrize("name", MODELS)
def test_fits_match_the_recorded_fingerprints(name):
    _check(name, FAST_BACKENDS)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_reference_fits_match_the_recorded_fingerprints(name):
    _check(name, [b for b in BACKENDS if b == "numpy"])


def test_the_record_covers_the_whole_grid():
    # 12 models, 3 sources each (MiniBatchKMeans: 2), 2 dtypes, 3 backends, 2 thread counts
    assert len(RECORDED) == (11 * 3 + 2) * 2 * 3 * 2
    # thread counts never change a fit
    for key, value in RECORDED.items():
        assert RECORDED[key.replace("/t1/", "/t2/")] == value
