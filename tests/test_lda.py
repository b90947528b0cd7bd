"""LatentDirichletAllocation: scikit-learn's fits from the same random_state (batch,
online, partial_fit), CSR against dense, float32, threads, the bound, planted topics,
our digamma, and errors."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import psi

import fastem

sklearn_decomposition = pytest.importorskip("sklearn.decomposition")
SK = sklearn_decomposition.LatentDirichletAllocation

K, V, N = 4, 50, 240


def _corpus(seed=0, n=N, words=40):
    """Documents drawn from LDA: K topics over V words, ``words`` words a document."""
    rng = np.random.default_rng(seed)
    topics = rng.dirichlet(np.full(V, 0.1), K)
    theta = rng.dirichlet(np.full(K, 0.3), n)
    X = np.array([rng.multinomial(words, theta[i] @ topics) for i in range(n)], dtype=float)
    X[3] = 0.0  # an empty document
    return sp.csr_matrix(X)


def _same_as_sklearn(ours, ref, X):
    np.testing.assert_allclose(ours.components_, ref.components_, rtol=1e-6)
    np.testing.assert_allclose(ours.exp_dirichlet_component_, ref.exp_dirichlet_component_,
                               rtol=1e-6)
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), atol=1e-6)
    assert ours.perplexity(X) == pytest.approx(ref.perplexity(X), rel=1e-8)
    assert ours.score(X) == pytest.approx(ref.score(X), rel=1e-8)
    assert (ours.n_iter_, ours.n_batch_iter_) == (ref.n_iter_, ref.n_batch_iter_)


@pytest.mark.parametrize("method", ["batch", "online"])
def test_lda_is_sklearns_from_the_same_random_state(method, backend):
    """The same draws (topics, then every E-step's starts), the same updates: the
    differences are those of scikit-learn's approximate digamma (about 1e-8)."""
    X = _corpus()
    kw = dict(n_components=K, learning_method=method, max_iter=6, batch_size=64,
              random_state=0)
    ref = SK(**kw).fit(X)
    ours = fastem.LatentDirichletAllocation(backend=backend, **kw).fit(X)
    _same_as_sklearn(ours, ref, X)
    assert ours.bound_ == pytest.approx(ref.bound_, rel=1e-8)


def test_partial_fit_and_perplexity_stopping_are_sklearns():
    X = _corpus(1)
    ref, ours = (cls(n_components=K, batch_size=50, total_samples=1000, random_state=3)
                 for cls in (SK, fastem.LatentDirichletAllocation))
    for part in (X[:120], X[120:]):
        ref.partial_fit(part)
        ours.partial_fit(part)
    _same_as_sklearn(ours, ref, X)
    assert ours.perplexity(X, sub_sampling=True) == pytest.approx(
        ref.perplexity(X, sub_sampling=True), rel=1e-8)
    kw = dict(n_components=K, max_iter=50, evaluate_every=2, perp_tol=0.5, random_state=4)
    ref, ours = SK(**kw).fit(X), fastem.LatentDirichletAllocation(**kw).fit(X)
    assert ours.n_iter_ == ref.n_iter_ < 49  # stopped by perp_tol, counted as scikit-learn
    np.testing.assert_allclose(ours.components_, ref.components_, rtol=1e-6)


def test_dense_and_csr_and_threads_give_the_same_bits():
    X = _corpus(2)
    fits = [fastem.LatentDirichletAllocation(K, max_iter=3, random_state=1, n_threads=t)
            .fit(x) for x, t in ((X, 1), (X.toarray(), 2), (X.tocoo(), 3))]
    for other in fits[1:]:
        np.testing.assert_array_equal(other.components_, fits[0].components_)
        assert other.bound_ == fits[0].bound_
    np.testing.assert_array_equal(fits[0].transform(X), fits[1].transform(X.toarray()))


def test_float32_stays_float32_and_agrees_with_float64():
    X = _corpus(3)
    x32 = X.astype(np.float32)
    m32 = fastem.LatentDirichletAllocation(K, max_iter=4, random_state=0).fit(x32)
    m64 = fastem.LatentDirichletAllocation(K, max_iter=4, random_state=0).fit(X)
    assert m32.components_.dtype == np.float32 and m32.transform(x32).dtype == np.float32
    np.testing.assert_allclose(m32.components_, m64.components_, rtol=2e-4)


def test_the_bound_never_decreases_in_batch_mode():
    """With each document's E-step run to convergence, batch variational EM is
    coordinate ascent on the evidence lower bound: it never falls."""
    X = _corpus(4)
    model = fastem.LatentDirichletAllocation(K, max_iter=1, mean_change_tol=1e-10,
                                             max_doc_update_iter=2000, random_state=2)
    model.fit(X)
    bounds = [model.score(X)]
    for _ in range(8):  # one more batch iteration at a time, from the same start
        model.set_params(max_iter=model.max_iter + 1).fit(X)
        bounds.append(model.score(X))
    assert np.all(np.diff(bounds) >= -1e-9 * abs(bounds[-1])), np.diff(bounds)
    assert bounds[-1] > bounds[0]


def test_planted_topics_are_recovered():
    """Three topics on disjoint blocks of words, each document mostly one topic: every
    fitted topic puts nearly all its mass on one block, each block on one topic."""
    rng = np.random.default_rng(5)
    blocks = np.arange(30).reshape(3, 10)
    docs = []
    for i in range(300):
        z = i % 3
        p = np.full(30, 0.02 / 20)
        p[blocks[z]] = 0.98 / 10
        docs.append(rng.multinomial(50, p))
    X = sp.csr_matrix(np.array(docs, dtype=float))
    model = fastem.LatentDirichletAllocation(3, max_iter=20, random_state=0).fit(X)
    topic_words = model.components_ / model.components_.sum(axis=1, keepdims=True)
    mass = np.array([[topic_words[k, b].sum() for b in blocks] for k in range(3)])
    assert sorted(mass.argmax(axis=1).tolist()) == [0, 1, 2]
    assert mass.max(axis=1).min() > 0.95
    doc_topic = model.transform(X)
    assert (doc_topic.argmax(axis=1) == mass.argmax(axis=1).argsort()[np.arange(300) % 3]).mean() > 0.95


def test_our_digamma_is_scipys():
    from fastem.kernels.numba.topics import _digamma

    x = np.concatenate([np.geomspace(1e-8, 1e6, 400), np.arange(1, 30) + 0.5])
    got = np.array([_digamma(v) for v in x])
    np.testing.assert_allclose(got, psi(x), rtol=1e-13, atol=1e-13)
    assert _digamma(0.0) == -np.inf


def test_attributes_and_names_are_sklearns():
    X = _corpus(6)
    model = fastem.LatentDirichletAllocation(K, max_iter=2, random_state=0).fit(X)
    assert model.doc_topic_prior_ == model.topic_word_prior_ == 1 / K
    assert model.n_features_in_ == V and model.components_.shape == (K, V)
    assert model.get_feature_names_out().tolist() == [f"latentdirichletallocation{i}"
                                                     for i in range(K)]
    np.testing.assert_allclose(model.fit_transform(X).sum(axis=1), 1.0, rtol=1e-12)
    # sum_k gamma_dk = K alpha + sum_w n_dw sum_k phi_dwk = K alpha + the words of d
    np.testing.assert_allclose(model.transform(X, normalize=False).sum(axis=1),
                               np.asarray(X.sum(axis=1)).ravel() + K * (1 / K), rtol=1e-12)


def test_bad_input_is_refused_with_a_clear_message():
    X = _corpus(7)
    with pytest.raises(ValueError, match="Negative values"):
        fastem.LatentDirichletAllocation(K).fit(-X)
    with pytest.raises(ValueError, match="'learning_method' parameter"):
        fastem.LatentDirichletAllocation(K, learning_method="fast").fit(X)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        fastem.LatentDirichletAllocation(K).fit(np.full((3, 4), np.nan))
    bad = X.copy()
    bad.data[0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        fastem.LatentDirichletAllocation(K).fit(bad)
    model = fastem.LatentDirichletAllocation(K, max_iter=1).fit(X)
    with pytest.raises(ValueError, match="expecting 50 features"):
        model.transform(X[:, :10])
    with pytest.raises(Exception, match="not fitted"):
        fastem.LatentDirichletAllocation(K).transform(X)


def test_a_model_file_gives_the_same_topics_and_transform(tmp_path):
    X = _corpus(8)
    model = fastem.LatentDirichletAllocation(K, max_iter=2, random_state=0).fit(X)
    model.save(tmp_path / "lda.npz")
    loaded = fastem.load(tmp_path / "lda.npz")
    np.testing.assert_array_equal(loaded.components_, model.components_)
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
    assert loaded.perplexity(X) == model.perplexity(X)


def _pieces_on_disk(X, tmp_path):
    """X's documents as three files cut anywhere: sparse .npz, dense .npy, sparse .npz."""
    sp.save_npz(tmp_path / "a.npz", X[:100])
    np.save(tmp_path / "b.npy", X[100:171].toarray())
    sp.save_npz(tmp_path / "c.npz", X[171:])
    return fastem.Chunks(str(tmp_path))


@pytest.mark.parametrize("method", ["batch", "online"])
def test_chunks_of_sparse_and_dense_files_give_the_in_memory_fit(method, tmp_path,
                                                                 monkeypatch):
    """Streamed pieces are re-cut into the fixed chunks (here of 50 documents, not the
    files' 100, 71 and 69): the fit, partial_fit, transform and perplexity are the
    in-memory ones, bit for bit."""
    import fastem._topics

    monkeypatch.setattr(fastem._topics, "_CHUNK_VALUES", K * 50)
    X = _corpus(5)
    stream = _pieces_on_disk(X, tmp_path)
    kw = dict(n_components=K, learning_method=method, max_iter=3, batch_size=64,
              random_state=0)
    ref = fastem.LatentDirichletAllocation(**kw).fit(X)
    got = fastem.LatentDirichletAllocation(**kw).fit(stream)
    np.testing.assert_array_equal(got.components_, ref.components_)
    assert got.bound_ == ref.bound_ and got.n_iter_ == ref.n_iter_
    np.testing.assert_array_equal(got.transform(stream), ref.transform(X))
    assert got.perplexity(stream) == ref.perplexity(X)
    ref_p = fastem.LatentDirichletAllocation(**kw).partial_fit(X)
    got_p = fastem.LatentDirichletAllocation(**kw).partial_fit(stream)
    np.testing.assert_array_equal(got_p.components_, ref_p.components_)


def test_chunks_of_documents_are_checked_piece_by_piece():
    X = _corpus(6)
    with pytest.raises(ValueError, match="piece 1 of X has 49 columns but the first has 50"):
        fastem.LatentDirichletAllocation(K).fit(fastem.Chunks([X[:10], X[10:, :49]]))
    with pytest.raises(ValueError, match="Negative values.*piece 1 of X"):
        fastem.LatentDirichletAllocation(K).fit(fastem.Chunks([X[:10], -X[10:]]))
