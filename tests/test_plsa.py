"""PLSA: one EM step against an independent dense numpy implementation of Hofmann's
equations, the monotone log-likelihood, CSR = dense = any thread count, planted topics,
folding in, and errors."""

import numpy as np
import pytest
import scipy.sparse as sp

import fastem


def _counts(seed=0, n=120, v=30):
    rng = np.random.default_rng(seed)
    X = rng.poisson(0.6, (n, v)).astype(float)
    X[5] = 0.0  # an empty document
    return X


def _dense_em_step(X, theta, beta):
    """Hofmann's EM step with the full documents x words x topics responsibilities."""
    joint = theta[:, None, :] * beta.T[None, :, :]  # (N, V, K): P(z|d) P(w|z)
    p = joint.sum(axis=2)  # P(w|d)
    r = np.divide(joint, p[:, :, None], out=np.zeros_like(joint), where=p[:, :, None] > 0)
    weighted = X[:, :, None] * r
    n_d = X.sum(axis=1, keepdims=True)
    new_theta = np.where(n_d > 0, weighted.sum(axis=1) / np.where(n_d > 0, n_d, 1), theta)
    new_beta = weighted.sum(axis=0).T
    new_beta /= new_beta.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        log_lik = float(np.sum(np.where(X > 0, X * np.log(p), 0.0)))
    return log_lik, new_theta, new_beta


def test_one_em_step_is_hofmanns_and_the_log_likelihood_never_falls(backend):
    X = _counts()
    model = fastem.PLSA(4, max_iter=1, random_state=0, backend=backend).fit(sp.csr_matrix(X))
    start = fastem.PLSA(4, max_iter=0, random_state=0).fit(X)  # the same random start
    log_lik, theta, beta = _dense_em_step(X, start.doc_topic_, start.components_)
    assert model.lower_bounds_ == [pytest.approx(log_lik, rel=1e-12)]
    np.testing.assert_allclose(model.doc_topic_, theta, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(model.components_, beta, rtol=1e-10, atol=1e-14)
    long = fastem.PLSA(4, max_iter=40, tol=0, random_state=0, backend=backend).fit(X)
    assert np.all(np.diff(long.lower_bounds_) >= -1e-9 * abs(long.lower_bound_))
    np.testing.assert_allclose(long.components_.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(long.doc_topic_.sum(axis=1), 1.0, rtol=1e-12)


def test_csr_dense_float32_and_threads_give_the_same_bits():
    X = _counts(1)
    fits = [fastem.PLSA(3, max_iter=5, random_state=2, n_threads=t).fit(x)
            for x, t in ((X, 1), (sp.csr_matrix(X), 2), (X.astype(np.float32), 3))]
    for other in fits[1:]:
        np.testing.assert_array_equal(other.components_, fits[0].components_)
        assert other.lower_bounds_ == fits[0].lower_bounds_


def test_planted_topics_are_recovered_and_folded_in():
    rng = np.random.default_rng(3)
    blocks = np.arange(30).reshape(3, 10)
    docs = []
    for i in range(240):
        p = np.full(30, 0.02 / 20)
        p[blocks[i % 3]] = 0.98 / 10
        docs.append(rng.multinomial(60, p))
    X = sp.csr_matrix(np.array(docs, dtype=float))
    model = fastem.PLSA(3, max_iter=200, random_state=0).fit(X)
    mass = np.array([[model.components_[k, b].sum() for b in blocks] for k in range(3)])
    assert sorted(mass.argmax(axis=1).tolist()) == [0, 1, 2] and mass.max(axis=1).min() > 0.95
    topic_of_block = mass.argmax(axis=0)
    folded = model.transform(X[:30])
    assert (folded.argmax(axis=1) == topic_of_block[np.arange(30) % 3]).all()
    np.testing.assert_allclose(folded, model.doc_topic_[:30], atol=0.02)
    assert model.score(X) == pytest.approx(model.lower_bound_, rel=1e-3)


def test_bad_input_is_refused():
    X = _counts(4)
    with pytest.raises(ValueError, match="Negative values"):
        fastem.PLSA(2).fit(-X)
    with pytest.raises(ValueError, match="expecting 30 features"):
        fastem.PLSA(2, max_iter=2).fit(X).transform(X[:, :5])
    with pytest.raises(Exception, match="not fitted"):
        fastem.PLSA(2).transform(X)


def test_a_model_file_gives_the_same_topics_and_fold_in(tmp_path):
    X = _counts(5)
    model = fastem.PLSA(3, max_iter=5, random_state=0).fit(X)
    model.save(tmp_path / "plsa.npz")
    loaded = fastem.load(tmp_path / "plsa.npz")
    np.testing.assert_array_equal(loaded.components_, model.components_)
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
    assert loaded.lower_bound_ == model.lower_bound_


def test_chunks_of_sparse_and_dense_pieces_give_the_in_memory_fit(monkeypatch):
    """Pieces cut anywhere, re-cut into fixed chunks of 25 documents: the same fit,
    fold-in and log-likelihood, bit for bit."""
    import fastem._topics

    monkeypatch.setattr(fastem._topics, "_CHUNK_VALUES", 4 * 25)
    X = _counts(3)
    stream = fastem.Chunks([sp.csr_matrix(X[:31]), X[31:32], sp.coo_matrix(X[32:])])
    ref = fastem.PLSA(4, max_iter=6, random_state=0).fit(X)
    got = fastem.PLSA(4, max_iter=6, random_state=0).fit(stream)
    np.testing.assert_array_equal(got.components_, ref.components_)
    np.testing.assert_array_equal(got.doc_topic_, ref.doc_topic_)
    assert got.lower_bounds_ == ref.lower_bounds_
    np.testing.assert_array_equal(got.transform(stream), ref.transform(X))
    assert got.score(stream) == ref.score(X)
