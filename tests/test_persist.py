"""Model files: save / load round trips for every model, atomic writes, and refusal of
truncated, corrupted, modified, invalid or incompatible files."""

import json
import os
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import fastem
from fastem import _persist
from fastem._validation import NotFittedError


def _fitted(kind):
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "kmeans":
            X = rng.standard_normal((300, 3)).astype(np.float32)
            return fastem.KMeans(3, n_init=2, random_state=0).fit(X), X
        if kind.startswith("gmm"):
            X = rng.standard_normal((300, 3))
            cov = kind.split("-")[1]
            return fastem.GaussianMixture(2, covariance_type=cov, random_state=0).fit(X), X
        if kind == "bernoulli":
            X = (rng.random((300, 5)) < 0.3).astype(float)
            X[rng.random(X.shape) < 0.1] = np.nan
            return fastem.BernoulliMixture(2, n_trials=1, random_state=0).fit(X), X
        if kind == "multinomial":
            X = sp.csr_matrix(rng.poisson(1.0, (300, 20)).astype(float))
            return fastem.MultinomialMixture(3, random_state=0).fit(X), X
        if kind == "mfa":
            X = rng.standard_normal((300, 5))
            X[rng.random(X.shape) < 0.1] = np.nan
            return fastem.MixtureOfFactorAnalyzers(2, n_factors=2, random_state=0).fit(X), X
        X = rng.integers(-1, 4, (300, 4))
        return fastem.CategoricalMixture(2, random_state=0).fit(X), X


KINDS = ["kmeans", "gmm-full", "gmm-tied", "gmm-diag", "gmm-spherical", "bernoulli",
         "multinomial", "categorical", "mfa"]


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_gives_the_same_model(kind, tmp_path):
    est, X = _fitted(kind)
    path = tmp_path / "model.npz"
    assert est.save(path) == path
    back = fastem.load(path)
    assert type(back) is type(est) and back.get_params() == est.get_params()
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
    if hasattr(est, "score_samples"):
        np.testing.assert_array_equal(back.score_samples(X), est.score_samples(X))
    else:
        np.testing.assert_array_equal(back.transform(X), est.transform(X))
    for name in est._persisted_attributes():
        if not hasattr(est, name):
            continue
        a, b = getattr(est, name), getattr(back, name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b), name
        else:
            assert a == b, name
    assert not [p for p in os.listdir(tmp_path) if p != "model.npz"]  # no temporary left


def test_feature_names_and_array_parameters_survive(tmp_path):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.standard_normal((100, 2)), columns=["height", "width"])
    init = np.array([[0.0, 0.0], [1.0, 1.0]])
    est = fastem.KMeans(2, init=init, n_init=1).fit(X)
    est.save(tmp_path / "m.npz")
    back = fastem.load(tmp_path / "m.npz")
    assert list(back.feature_names_in_) == ["height", "width"]
    np.testing.assert_array_equal(back.init, init)


def test_unpicklable_parameter_is_reported_and_dropped(tmp_path):
    X = np.random.default_rng(2).standard_normal((50, 2))
    est = fastem.KMeans(2, n_init=1, random_state=np.random.RandomState(0)).fit(X)
    est.save(tmp_path / "m.npz")
    back = fastem.load(tmp_path / "m.npz")
    assert back.random_state is None
    meta = _read(tmp_path / "m.npz")[0]
    assert meta["params_not_saved"] == ["random_state"]


def test_save_requires_a_fitted_model(tmp_path):
    with pytest.raises(NotFittedError):
        fastem.KMeans(2).save(tmp_path / "m.npz")


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    est, _ = _fitted("kmeans")
    path = tmp_path / "model.npz"
    est.save(path)
    before = path.read_bytes()

    def broken_savez(fh, **arrays):
        fh.write(b"PK\x03\x04 half a model")
        raise OSError("disk full")

    monkeypatch.setattr(_persist.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        est.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]


# ----------------------------------------------------------------- refusing bad files
def _read(path):
    with np.load(path, allow_pickle=False) as z:
        files = {k: z[k] for k in z.files}
    return json.loads(files.pop("__meta__").tobytes()), files


def _write(path, meta, files, *, fix_checksum=True):
    if fix_checksum:
        meta = dict(meta, checksum=_persist._checksum(files, meta))
    payload = dict(files, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    with open(path, "wb") as fh:
        np.savez(fh, **payload)


@pytest.fixture
def saved(tmp_path):
    est, _ = _fitted("gmm-full")
    path = tmp_path / "model.npz"
    est.save(path)
    return path


def test_truncated_file_is_refused(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable fastem model file"):
        fastem.load(saved)


def test_modified_array_is_refused(saved):
    meta, files = _read(saved)
    files["a__means_"] = files["a__means_"] + 1e-9
    _write(saved, meta, files, fix_checksum=False)
    with pytest.raises(ValueError, match="checksum mismatch"):
        fastem.load(saved)


def test_flipped_byte_is_refused(saved):
    data = bytearray(saved.read_bytes())
    data[len(data) // 3] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError):
        fastem.load(saved)


def test_newer_format_version_is_refused(saved):
    meta, files = _read(saved)
    _write(saved, dict(meta, format_version=_persist.FORMAT_VERSION + 1), files)
    with pytest.raises(ValueError, match="newer fastem"):
        fastem.load(saved)


def test_unknown_model_type_is_refused(saved):
    meta, files = _read(saved)
    _write(saved, dict(meta, model="os.system"), files)
    with pytest.raises(ValueError, match="unknown model type"):
        fastem.load(saved)


@pytest.mark.parametrize("change, match", [
    (lambda f: f.update(a__weights_=f["a__weights_"] * 2), "sum to 1"),
    (lambda f: f.update(a__precisions_cholesky_=-f["a__precisions_cholesky_"]), "positive"),
    (lambda f: f.update(a__means_=f["a__means_"][:, :2]), "shape"),
    (lambda f: f.pop("a__covariances_"), "lacks"),
])
def test_invalid_contents_are_refused_even_with_a_valid_checksum(saved, change, match):
    meta, files = _read(saved)
    change(files)
    _write(saved, meta, files)
    with pytest.raises(ValueError, match=match):
        fastem.load(saved)


def test_an_edited_parameter_fails_the_checksum(saved):
    """The checksum covers the metadata: an edited scalar (here reg_covar, which would
    still pass validation) is caught (format 1 checked the arrays only)."""
    meta, files = _read(saved)
    _write(saved, dict(meta, params=dict(meta["params"], reg_covar=0.5)), files,
           fix_checksum=False)
    with pytest.raises(ValueError, match="checksum mismatch"):
        fastem.load(saved)


def test_format_1_files_still_load(saved):
    meta, files = _read(saved)
    est = fastem.load(saved)
    _write(saved, dict(meta, format_version=1, checksum=_persist._checksum(files)), files,
           fix_checksum=False)
    np.testing.assert_array_equal(fastem.load(saved).means_, est.means_)


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_model_files_get_the_mode_of_the_umask(tmp_path, umask, mode):
    est, _ = _fitted("kmeans")
    old = os.umask(umask)
    try:
        est.save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == mode
    (tmp_path / "m.npz").chmod(0o640)
    est.save(tmp_path / "m.npz")  # an existing file keeps its mode
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o640


def test_the_directory_is_flushed_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    _fitted("kmeans")[0].save(tmp_path / "m.npz")
    assert synced[-1] == os.path.realpath(tmp_path)


def test_save_without_labels_and_to_file_objects(tmp_path):
    import io

    est, X = _fitted("kmeans")
    est.save(tmp_path / "with.npz")
    est.save(tmp_path / "without.npz", include_labels=False)
    assert (tmp_path / "without.npz").stat().st_size < (tmp_path / "with.npz").stat().st_size
    light = fastem.load(tmp_path / "without.npz")
    assert not hasattr(light, "labels_")
    np.testing.assert_array_equal(light.predict(X), est.predict(X))
    buffer = io.BytesIO()
    est.save(buffer)
    buffer.seek(0)
    back = fastem.load(buffer)
    np.testing.assert_array_equal(back.labels_, est.labels_)
    np.testing.assert_array_equal(back.cluster_centers_, est.cluster_centers_)


def test_invalid_parameters_are_refused(saved):
    meta, files = _read(saved)
    _write(saved, dict(meta, params=dict(meta["params"], covariance_type="bogus")), files)
    with pytest.raises(ValueError, match="invalid model"):
        fastem.load(saved)


def test_pickled_objects_are_never_loaded(tmp_path):
    path = tmp_path / "evil.npz"
    with open(path, "wb") as fh:
        np.savez(fh, __meta__=np.array([{"format": "fastem-model"}], dtype=object))
    with pytest.raises(ValueError, match="not a readable fastem model file"):
        fastem.load(path)


def test_not_a_model_file(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, X=np.zeros(3))
    with pytest.raises(ValueError, match="not a fastem model file"):
        fastem.load(path)
    with pytest.raises(FileNotFoundError):
        fastem.load(tmp_path / "missing.npz")


def test_discrete_tables_must_be_probabilities(tmp_path):
    est, _ = _fitted("categorical")
    path = tmp_path / "m.npz"
    est.save(path)
    meta, files = _read(path)
    files["a___log_theta"] = files["a___log_theta"] + 0.1  # no longer sums to one
    _write(path, meta, files)
    with pytest.raises(ValueError, match="do not sum to one"):
        fastem.load(path)


# ----------------------------------------------------------------- hidden Markov models
def _fitted_hmm(kind):
    rng = np.random.default_rng(1)
    lengths = [120, 80]
    if kind in ("gaussian-hmm", "gmm-hmm"):
        X = rng.standard_normal((200, 2))
        X[60:140] += 4.0
        X[[10, 150]] = np.nan  # missing observations
        est = (fastem.GaussianHMM(2, covariance_type="full", random_state=0) if
               kind == "gaussian-hmm" else fastem.GMMHMM(2, n_mix=2, random_state=0))
    elif kind == "categorical-hmm":
        X, est = rng.integers(-1, 4, (200, 1)), fastem.CategoricalHMM(2, random_state=0)
    elif kind == "poisson-hmm":
        X, est = rng.poisson(3.0, (200, 3)), fastem.PoissonHMM(2, random_state=0)
    else:
        X = rng.multinomial(6, [0.2, 0.3, 0.5], 200)
        est = fastem.MultinomialHMM(2, n_trials=6, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, lengths), X, lengths


@pytest.mark.parametrize("kind", ["gaussian-hmm", "gmm-hmm", "categorical-hmm", "poisson-hmm",
                                  "multinomial-hmm"])
def test_hmm_round_trip_gives_the_same_model(kind, tmp_path):
    est, X, lengths = _fitted_hmm(kind)
    est.save(tmp_path / "hmm.npz")
    back = fastem.load(tmp_path / "hmm.npz")
    assert type(back) is type(est) and back.get_params() == est.get_params()
    assert back.score(X, lengths) == est.score(X, lengths)
    np.testing.assert_array_equal(back.score_samples(X, lengths)[1],
                                  est.score_samples(X, lengths)[1])
    np.testing.assert_array_equal(back.predict(X, lengths), est.predict(X, lengths))
    assert list(back.monitor_.history) == list(est.monitor_.history)
    assert back.monitor_.converged == est.monitor_.converged and back.n_iter_ == est.n_iter_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (a state may empty out on a small batch)
        back.partial_fit(X, lengths)  # a loaded model streams on: a new running average
    assert back.n_steps_ == 1 and np.isfinite(back.score(X, lengths))


def test_an_hmm_file_with_an_invalid_transition_matrix_is_refused(tmp_path):
    est, _, _ = _fitted_hmm("gaussian-hmm")
    est.save(tmp_path / "hmm.npz")
    meta, files = _read(tmp_path / "hmm.npz")
    files["a__transmat_"] = files["a__transmat_"] * 0.5
    _write(tmp_path / "hmm.npz", meta, files)
    with pytest.raises(ValueError, match="invalid model: transmat_ rows must sum to 1"):
        fastem.load(tmp_path / "hmm.npz")


def test_an_hmm_file_with_a_broken_convergence_record_is_refused(tmp_path):
    est, _, _ = _fitted_hmm("categorical-hmm")
    est.save(tmp_path / "hmm.npz")
    meta, files = _read(tmp_path / "hmm.npz")
    files["a___monitor_record"] = np.array([np.nan, 1.0])
    _write(tmp_path / "hmm.npz", meta, files)
    with pytest.raises(ValueError, match="the convergence record is not a finite 1-D array"):
        fastem.load(tmp_path / "hmm.npz")
