"""The kernel contract, generated from the family declarations (fastem/_families.py).

For every declared family and kernel: the same name and signature in every backend
(``n_threads`` the last positional parameter, then any keyword-only ones); the declared calls use every declared kernel (so warm-up
compiles them all); every backend gives the reference's results on them over shapes
and dtypes (one row, K = 1, N not a multiple of the block, several blocks and slots;
zero weights and an empty cluster are in every case); results are bit-identical for 1,
2 and 3 threads; and every kernel module exposes the one set of determinism constants.
Warm-up is then checked against real fits: no default fit compiles a kernel warm-up
left out.
"""

import inspect

import numpy as np
import pytest

from conftest import BACKENDS
from fastem._dispatch import get_kernels
from fastem._families import FAMILIES, run_calls
from fastem.kernels._determinism import BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES

#: (n, d, k): one row; K = 1; less than a block; N not a multiple of the 256-row block,
#: over several blocks and slots
CASES = [(1, 3, 1), (7, 2, 3), (300, 4, 1), (1000, 5, 4)]


def _family_ids(f):
    return f.name


def _signature(func):
    """The parameters, the keyword-only ones (lent work arrays) after a "*"."""
    params = inspect.signature(getattr(func, "py_func", func)).parameters.values()
    positional = [p.name for p in params if p.kind is not p.KEYWORD_ONLY]
    keywords = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
    return positional + (["*", *keywords] if keywords else [])


@pytest.mark.parametrize("family", FAMILIES, ids=_family_ids)
def test_every_backend_defines_every_declared_kernel_with_one_signature(family):
    reference = get_kernels("numpy", family.name)
    for name in family.kernels:
        expected = _signature(getattr(reference, name))
        assert expected[:expected.index("*") if "*" in expected else None][-1] == "n_threads", name
        for backend in BACKENDS:
            kern = get_kernels(backend, family.name)
            assert hasattr(kern, name), f"{backend} has no {family.name}.{name}"
            assert _signature(getattr(kern, name)) == expected, (backend, name)


@pytest.mark.parametrize("family", FAMILIES, ids=_family_ids)
def test_the_declared_calls_use_every_declared_kernel(family):
    used = {name for name, _ in family.calls(np.float64, 8, 3, 2, np.random.default_rng(0))}
    assert used == set(family.kernels)


@pytest.mark.parametrize("family", FAMILIES, ids=_family_ids)
def test_every_kernel_module_has_the_one_set_of_determinism_constants(family, fast_backend):
    kern = get_kernels(fast_backend, family.name)  # (the reference has no blocks)
    assert (kern.BLOCK_SIZE, kern.MAX_SLOTS, kern.SLOT_BUDGET_BYTES) == (
        BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES)


def _calls(family, dtype, case):
    n, d, k = case
    return family.calls(dtype, n, d, k, np.random.default_rng(n * 31 + d * 7 + k))


def _assert_same(got, ref, dtype, exact, what, loose=None):
    """The runs ``got`` and ``ref`` of the same calls agree: bit for bit when ``exact``,
    else integers exactly and floats to the dtype's tolerance, skipping the ``loose``
    parameters of each kernel."""
    assert [name for name, _, _ in got] == [name for name, _, _ in ref]
    tol = 2e-4 if dtype == np.float32 else 1e-9
    for (name, ret_g, arrays_g), (_, ret_r, arrays_r) in zip(got, ref):
        skip = () if loose is None else loose.get(name, ())
        values = {"return value": (ret_g, ret_r)} if ret_r is not None else {}
        values.update({p: (arrays_g[p], arrays_r[p]) for p in arrays_r if p not in skip})
        for p, (g, r) in values.items():
            msg = f"{what}: {name}, {p}"
            g, r = np.asarray(g), np.asarray(r)
            if exact or g.dtype.kind in "iub":
                # integers (labels) and bit-for-bit comparisons: equal, NaN where NaN
                assert g.dtype == r.dtype and g.shape == r.shape, msg
                np.testing.assert_array_equal(g, r, err_msg=msg)
            else:
                np.testing.assert_allclose(g, r, rtol=tol, atol=tol, err_msg=msg)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("family", FAMILIES, ids=_family_ids)
def test_every_backend_matches_the_reference_on_every_kernel(family, fast_backend, dtype, case):
    ref = run_calls(get_kernels("numpy", family.name), _calls(family, dtype, case), 1)
    got = run_calls(get_kernels(fast_backend, family.name), _calls(family, dtype, case), 2)
    _assert_same(got, ref, dtype, exact=False, what=f"{fast_backend} vs reference",
                 loose=family.loose)


@pytest.mark.parametrize("family", FAMILIES, ids=_family_ids)
def test_every_kernel_is_bit_identical_for_any_thread_count(family, fast_backend, dtype):
    case = CASES[-1]
    kern = get_kernels(fast_backend, family.name)
    one = run_calls(kern, _calls(family, dtype, case), 1)
    for n_threads in (2, 3):
        _assert_same(run_calls(kern, _calls(family, dtype, case), n_threads), one, dtype,
                     exact=True, what=f"{fast_backend}, {n_threads} threads vs 1")


_WARMUP_THEN_FIT = """
import json, warnings
import numba
import numpy as np
from fastem._dispatch import get_kernels
from fastem._families import FAMILIES, estimator_classes
from fastem._info import warmup

def fit_inputs(cli_name, dtype):  # small data each estimator's default fit takes
    rng = np.random.default_rng(0)
    if cli_name == "bernoulli":
        return (rng.uniform(size=(300, 5)) < 0.4).astype(dtype)
    if cli_name == "multinomial":
        return rng.poisson(2.0, (300, 5)).astype(dtype)
    if cli_name == "categorical":
        return rng.integers(0, 3, (300, 5)).astype(dtype)
    if cli_name == "categorical-hmm":
        return rng.integers(0, 3, (300, 1))
    if cli_name in ("poisson-hmm", "multinomial-hmm"):
        return rng.multinomial(4, [0.2, 0.3, 0.5], 300)
    if cli_name in ("lda", "plsa"):
        return rng.poisson(1.0, (300, 5)).astype(dtype)
    return rng.standard_normal((300, 5)).astype(dtype)

# every compiled function of the kernel modules: the kernels (behind their thread
# wrappers) and the helpers they call; a signature appears when it is compiled or
# loaded from the cache
jitted = {}
for f in FAMILIES:
    for name, value in vars(get_kernels("numba", f.name)).items():
        value = getattr(value, "jitted", value)
        if isinstance(value, numba.core.registry.CPUDispatcher):
            jitted[f.name + "." + name] = value
warmup(("numba",))
before = {key: len(j.signatures) for key, j in jitted.items()}
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for cli_name, cls in estimator_classes().items():
        for dtype in (np.float32, np.float64):
            X = fit_inputs(cli_name, dtype)
            for k in ((3, 64) if cli_name == "kmeans" else (3,)):
                n_iter = {"n_iter" if cli_name.endswith("-hmm") else "max_iter": 3}
                accepted = cls().get_params()
                est = cls(k, **{name: value for name, value in dict(
                    backend="numba", random_state=0, **n_iter).items()
                    if name in accepted}).fit(X)
                (est.predict if hasattr(est, "predict") else est.transform)(X)
after = {key: len(j.signatures) for key, j in jitted.items()}
print(json.dumps({"compiled": sum(before.values()),
                  "missed": {k: after[k] - before[k] for k in after if after[k] != before[k]}}))
"""


def test_warmup_compiles_every_kernel_a_default_fit_reaches():
    """In a fresh process after ``fastem warmup``, default fits (and predictions) of every
    declared estimator, in float32 and float64, with K = 64 where algorithm="auto"
    switches to Hamerly's bounds, need no kernel specialization warm-up left out."""
    import json
    import subprocess
    import sys

    if "numba" not in BACKENDS:
        pytest.skip("numba unavailable")
    out = subprocess.run([sys.executable, "-c", _WARMUP_THEN_FIT], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["compiled"] > 0 and result["missed"] == {}, result


def test_the_gaussian_mixture_fetches_exactly_its_declared_kernels():
    from fastem._families import family
    from fastem.gaussian_mixture import _KERNELS

    assert {n for names in _KERNELS.values() for n in names} == set(
        family("gaussian_mixture").kernels)
