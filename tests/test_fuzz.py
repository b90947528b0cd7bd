"""Generated inputs thrown at fit and predict: every case must end in a clear
ValueError/TypeError or a finite, valid result. Never a crash, hang or NaN."""

import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastem import KMeans
from fastem.exceptions import ConvergenceWarning

DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int8, np.uint16, np.bool_]
SPECIALS = [0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 1e-300, 5e-324, 1e30, -1e30,
            1e150, 1e300, np.finfo(np.float64).max, np.finfo(np.float32).max, 3.4e38]


@st.composite
def datasets(draw):
    n = draw(st.integers(1, 40))
    d = draw(st.integers(1, 5))
    kind = draw(st.sampled_from(["normal", "constant", "specials", "identical", "huge_k"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    if kind == "normal":
        X = rng.standard_normal((n, d)) * draw(st.sampled_from([1e-6, 1.0, 1e6]))
    elif kind == "constant":
        X = rng.standard_normal((n, d))
        X[:, draw(st.integers(0, d - 1))] = draw(st.sampled_from([0.0, 7.0, -1e20]))
    elif kind == "identical":
        X = np.tile(rng.standard_normal((1, d)), (n, 1))
    elif kind == "specials":
        X = rng.choice(np.array(SPECIALS), size=(n, d))
    else:
        X = rng.standard_normal((n, d))
    dtype = draw(st.sampled_from(DTYPES))
    with np.errstate(all="ignore"):
        X = X.astype(dtype)
    if draw(st.booleans()):
        X = np.asfortranarray(X)
    k = draw(st.integers(1, n + 3)) if kind != "huge_k" else n
    weights = draw(st.sampled_from([None, "uniform", "zeros_some", "negative", "nan"]))
    if weights is None:
        w = None
    else:
        w = rng.uniform(0, 3, n)
        if weights == "zeros_some":
            w[: n // 2] = 0
        elif weights == "negative":
            w[0] = -1
        elif weights == "nan":
            w[0] = np.nan
    init = draw(st.sampled_from(["k-means++", "random"]))
    return X, k, w, init


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=datasets(), backend=st.sampled_from(["numpy", "auto"]))
def test_fit_and_predict_end_in_error_or_finite_result(data, backend):
    X, k, w, init = data
    km = KMeans(k, init=init, n_init=1, max_iter=20, random_state=0, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("error", RuntimeWarning)  # an overflow warning means bad numbers
        try:
            km.fit(X, sample_weight=w)
        except (ValueError, TypeError) as exc:
            assert str(exc)  # clear message, not an empty one
            return
        labels = km.predict(X)
    assert np.isfinite(km.cluster_centers_).all()
    assert np.isfinite(km.inertia_) and km.inertia_ >= 0
    assert km.labels_.min() >= 0 and km.labels_.max() < k
    assert labels.shape == (X.shape[0],) and labels.max() < k
    assert np.isfinite(km.transform(X)).all()
