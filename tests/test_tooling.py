"""fastem estimators inside scikit-learn's tooling: set_output, metadata routing, the
notebook repr, pickles and joblib, DataFrames (pandas, polars) and the input tags."""

import io
import pickle
import warnings

import joblib
import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.model_selection import KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fastem
from fastem._tooling import InconsistentVersionWarning

pd = pytest.importorskip("pandas")


def _X(n=120, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) + rng.integers(0, 3, (n, 1)) * 4


def _fitted_models():
    rng = np.random.default_rng(0)
    X = _X()
    return [(fastem.KMeans(3, random_state=0).fit(X), X),
            (fastem.MiniBatchKMeans(3, random_state=0).fit(X), X),
            (fastem.GaussianMixture(3, random_state=0).fit(X), X),
            (fastem.BernoulliMixture(2, random_state=0).fit(B := (X > 2).astype(float)), B),
            (fastem.MultinomialMixture(2, random_state=0).fit(C := rng.poisson(2.0, (120, 4))),
             C),
            (fastem.CategoricalMixture(2, random_state=0).fit(K := rng.integers(0, 3, (120, 4))),
             K)]


@pytest.mark.parametrize("container", ["pandas", "polars"])
def test_set_output_in_a_pipeline(container):
    if container == "polars":
        pytest.importorskip("polars")
    X = pd.DataFrame(_X(), columns=["a", "b", "c"], index=np.arange(100, 220))
    pipe = make_pipeline(StandardScaler(), fastem.KMeans(3, random_state=0))
    out = pipe.set_output(transform=container).fit_transform(X)
    assert list(out.columns) == ["kmeans0", "kmeans1", "kmeans2"]
    if container == "pandas":
        assert isinstance(out, pd.DataFrame) and list(out.index) == list(X.index)
    else:
        import polars as pl

        assert isinstance(out, pl.DataFrame)
    np.testing.assert_allclose(np.asarray(out), pipe.set_output(transform="default")
                               .fit_transform(X))
    with sklearn.config_context(transform_output="pandas"):  # the global setting
        assert isinstance(fastem.KMeans(3, random_state=0).fit_transform(X), pd.DataFrame)
    with pytest.raises(ValueError, match="transform must be"):
        fastem.KMeans(3).set_output(transform="arrow")


def test_metadata_routing_passes_sample_weight_to_fit_and_score():
    X, w = _X(), np.random.default_rng(1).uniform(0.5, 2.0, 120)
    est = fastem.KMeans(3, random_state=0)
    with sklearn.config_context(enable_metadata_routing=True):
        routed = est.set_fit_request(sample_weight=True).set_score_request(sample_weight=True)
        scores = cross_validate(routed, X, params={"sample_weight": w}, cv=3)["test_score"]
        with pytest.raises(Exception, match="sample_weight"):  # not requested: refused
            cross_validate(fastem.KMeans(3), X, params={"sample_weight": w}, cv=3)
    by_hand = [fastem.KMeans(3, random_state=0).fit(X[tr], sample_weight=w[tr])
               .score(X[te], sample_weight=w[te]) for tr, te in KFold(3).split(X)]
    np.testing.assert_allclose(scores, by_hand, rtol=1e-12)
    assert clone(routed)._metadata_request == routed._metadata_request
    assert hasattr(fastem.MiniBatchKMeans(3), "set_partial_fit_request")
    assert not hasattr(fastem.KMeans(3), "set_partial_fit_request")  # no partial_fit


def test_notebook_repr_and_short_text_repr():
    est = fastem.GaussianMixture(3, means_init=np.zeros((1000, 16)))
    assert len(repr(est)) < 200 and "shape=(1000, 16)" in repr(est)
    html = est._repr_html_()
    assert "GaussianMixture" in html and "<style" in html


@pytest.mark.parametrize("i", range(6))
def test_pickle_and_joblib_round_trips(i, tmp_path):
    est, X = _fitted_models()[i]
    for back in (pickle.loads(pickle.dumps(est)),
                 joblib.load(joblib.dump(est, tmp_path / "m.joblib")[0])):
        np.testing.assert_array_equal(back.predict(X), est.predict(X))
        assert back.get_params() == est.get_params() or type(est) is fastem.GaussianMixture


def test_unpickling_another_version_warns():
    est = _fitted_models()[0][0]
    state = est.__getstate__()
    state["_fastem_version"] = "0.0.1"
    other = fastem.KMeans.__new__(fastem.KMeans)
    with pytest.warns(InconsistentVersionWarning, match="from fastem version 0.0.1"):
        other.__setstate__(state)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pickle.loads(pickle.dumps(est))  # the same version: silent
    buffer = io.BytesIO()
    joblib.dump(est, buffer)


def test_polars_column_names_are_kept():
    pl = pytest.importorskip("polars")
    X = _X()
    df = pl.DataFrame({"x": X[:, 0], "y": X[:, 1], "z": X[:, 2]})
    km = fastem.KMeans(3, random_state=0).fit(df)
    assert list(km.feature_names_in_) == ["x", "y", "z"]
    np.testing.assert_array_equal(km.predict(df), fastem.KMeans(3, random_state=0).fit(X)
                                  .predict(X))
    with pytest.raises(ValueError, match="Feature names unseen at fit time"):
        km.predict(df.rename({"x": "w"}))


def test_pandas_nullable_columns_mean_missing_values():
    """pd.NA (nullable Int64 / Float64 / boolean columns) is a missing entry: the Bernoulli
    mixture takes it as NaN; models without missing values say NaN, not TypeError."""
    rng = np.random.default_rng(2)
    B = (rng.uniform(size=(200, 3)) < 0.4).astype(float)
    B[rng.uniform(size=B.shape) < 0.1] = np.nan
    nullable = pd.DataFrame({c: pd.array([None if np.isnan(v) else int(v) for v in B[:, j]],
                                         dtype="Int64") for j, c in enumerate("abc")})
    a = fastem.BernoulliMixture(2, random_state=0).fit(nullable)
    b = fastem.BernoulliMixture(2, random_state=0).fit(B)
    np.testing.assert_array_equal(a.means_, b.means_)
    assert list(a.feature_names_in_) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="NaN"):
        fastem.KMeans(2).fit(nullable)
    floats = pd.DataFrame({"a": pd.array([1.5, None, 2.0, 0.5], dtype="Float64"),
                           "b": pd.array([0.0, 1.0, 2.0, 3.0], dtype="Float64")})
    with pytest.raises(ValueError, match="NaN"):
        fastem.GaussianMixture(1).fit(floats)
    fastem.GaussianMixture(1).fit(floats.fillna(0.0))


def test_input_tags():
    assert fastem.MultinomialMixture().__sklearn_tags__().input_tags.positive_only
    assert fastem.BernoulliMixture().__sklearn_tags__().input_tags.allow_nan
    assert fastem.CategoricalMixture().__sklearn_tags__().input_tags.categorical
    assert fastem.KMeans().__sklearn_tags__().input_tags.sparse
    assert not fastem.GaussianMixture().__sklearn_tags__().input_tags.sparse
