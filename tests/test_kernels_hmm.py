"""The hidden Markov model kernels' specification (kernels/reference/hmm.py): published
worked examples, and enumeration of every state path on small models."""

import itertools

import numpy as np
import pytest

from fastem.kernels.reference import hmm

KERNELS = [hmm.forward_backward_log, hmm.forward_backward_scaled]


def _log(a):
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(a, dtype=np.float64))


def _umbrella():
    """Wikipedia's forward-backward example: rain or not, the umbrella seen on days
    1, 2, 4, 5 and not on day 3."""
    start, trans = [0.5, 0.5], [[0.7, 0.3], [0.3, 0.7]]
    emit = np.array([[0.9, 0.1], [0.2, 0.8]])  # P(umbrella | rain), P(umbrella | dry)
    obs = [0, 0, 1, 0, 0]
    return _log(start), _log(trans), _log(emit[:, obs].T)


@pytest.mark.parametrize("kernel", KERNELS)
def test_wikipedia_umbrella_example(kernel):
    log_prob, gamma, xi_sum = kernel(*_umbrella())
    assert log_prob == pytest.approx(-3.3725, abs=5e-5)
    np.testing.assert_allclose(gamma[:, 0], [0.8673, 0.8204, 0.3075, 0.8204, 0.8673],
                               atol=5e-5)
    np.testing.assert_allclose(gamma.sum(axis=1), 1.0, rtol=1e-14)
    assert xi_sum.sum() == pytest.approx(4.0, rel=1e-14)  # T - 1 transitions


def test_viterbi_worked_examples():
    log_prob, path = hmm.viterbi(*_umbrella())
    assert path.tolist() == [0, 0, 1, 0, 0] and log_prob == pytest.approx(-4.4590, abs=5e-5)
    # Wikipedia's Viterbi example: states (Rainy, Sunny), observations walk, shop, clean
    emit = np.array([[0.1, 0.4, 0.5], [0.6, 0.3, 0.1]])
    log_prob, path = hmm.viterbi(_log([0.6, 0.4]), _log([[0.7, 0.3], [0.4, 0.6]]),
                                 _log(emit[:, [0, 1, 2]].T))
    assert path.tolist() == [1, 0, 0] and np.exp(log_prob) == pytest.approx(0.01344, rel=1e-12)


def _random_model(rng, k, n_steps, zeros=False):
    start = rng.dirichlet(np.ones(k))
    trans = rng.dirichlet(np.ones(k), size=k)
    if zeros:  # forbidden transitions
        trans[0, 1:] = 0.0
        trans[0, 0] = 1.0 if k == 1 else 0.0
        trans[0, -1] = 1.0 - trans[0, :-1].sum()
    log_emission = rng.normal(-2.0, 1.5, size=(n_steps, k))
    return _log(start), _log(trans), log_emission


def _enumerate(log_start, log_trans, log_emission):
    """log P(x), posteriors, transition counts and the best path, from every path."""
    n_steps, k = log_emission.shape
    paths = np.array(list(itertools.product(range(k), repeat=n_steps)))
    joint = (log_start[paths[:, 0]] + log_emission[np.arange(n_steps), paths].sum(axis=1)
             + log_trans[paths[:, :-1], paths[:, 1:]].sum(axis=1))
    top = joint.max()
    w = np.exp(joint - top)
    log_prob = np.log(w.sum()) + top
    p = w / w.sum()
    gamma = np.zeros((n_steps, k))
    xi = np.zeros((k, k))
    for path, pp in zip(paths, p):
        gamma[np.arange(n_steps), path] += pp
        np.add.at(xi, (path[:-1], path[1:]), pp)
    best = int(np.argmax(joint))  # first maximum: paths are in lexicographic order
    return log_prob, gamma, xi, joint[best], paths[best]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kernel", KERNELS)
def test_forward_backward_equals_enumeration(kernel, seed):
    rng = np.random.default_rng(seed)
    k, n_steps = (1, 6) if seed == 0 else (2 + seed % 3, 2 + seed)
    model = _random_model(rng, k, n_steps, zeros=seed % 2 == 1)
    log_prob, gamma, xi, _, _ = _enumerate(*model)
    got = kernel(*model)
    assert got[0] == pytest.approx(log_prob, rel=1e-12)
    np.testing.assert_allclose(got[1], gamma, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(got[2], xi, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("seed", range(6))
def test_viterbi_equals_enumeration(seed):
    rng = np.random.default_rng(100 + seed)
    model = _random_model(rng, 2 + seed % 3, 2 + seed, zeros=seed % 2 == 1)
    _, _, _, best_logp, best_path = _enumerate(*model)
    log_prob, path = hmm.viterbi(*model)
    assert path.tolist() == best_path.tolist()
    assert log_prob == pytest.approx(best_logp, rel=1e-12)


def test_scaling_survives_emissions_far_below_float64s_range():
    """log b = -1e4 would underflow exp() in plain scaling (hmmlearn raises there); the
    per-step shift keeps it exact."""
    rng = np.random.default_rng(7)
    log_start, log_trans, log_emission = _random_model(rng, 3, 40)
    log_emission = log_emission - 1e4
    a, b = hmm.forward_backward_log(log_start, log_trans, log_emission), \
        hmm.forward_backward_scaled(log_start, log_trans, log_emission)
    assert np.isfinite(b[0]) and b[0] == pytest.approx(a[0], rel=1e-14)
    # (log space carries absolute errors of about |log alpha| u = 4e5 x 1e-16 in every
    # log-probability, so its posteriors are the less exact of the two here)
    np.testing.assert_allclose(b[1], a[1], rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(b[1].sum(axis=1), 1.0, rtol=1e-13)


def test_an_impossible_sequence_has_log_probability_minus_infinity_in_both_forms():
    # state 0 can only stay; the start is state 0; step 2 can only be emitted by state 1
    log_start, log_trans = _log([1.0, 0.0]), _log([[1.0, 0.0], [0.5, 0.5]])
    log_emission = _log([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    for kernel in KERNELS:
        assert kernel(log_start, log_trans, log_emission)[0] == -np.inf


def test_an_unobserved_step_is_marginalised():
    """A row of zeros (log 1 for every state) is a missing observation: the likelihood is
    that of the sequence without it, the chain still running through the step."""
    rng = np.random.default_rng(3)
    log_start, log_trans, log_emission = _random_model(rng, 3, 6)
    missing = log_emission.copy()
    missing[2] = 0.0
    log_prob, gamma, _, _, _ = _enumerate(log_start, log_trans, missing)
    for kernel in KERNELS:
        got = kernel(log_start, log_trans, missing)
        assert got[0] == pytest.approx(log_prob, rel=1e-12)
        np.testing.assert_allclose(got[1], gamma, rtol=1e-10)
    # and summing the observed steps' marginal over the hidden one by hand agrees
    trans2 = np.exp(log_trans) @ np.exp(log_trans)
    a = np.exp(log_start + log_emission[0])
    a = (a @ np.exp(log_trans)) * np.exp(log_emission[1])
    a = (a @ trans2) * np.exp(log_emission[3])  # through the unobserved step 2
    for t in (4, 5):
        a = (a @ np.exp(log_trans)) * np.exp(log_emission[t])
    assert np.log(a.sum()) == pytest.approx(log_prob, rel=1e-12)


@pytest.mark.parametrize("implementation", ["log", "scaling"])
def test_hmmlearns_score_posteriors_and_path_on_a_gaussian_hmm(implementation):
    """From the same parameters, hmmlearn's GaussianHMM gives the same log-likelihood,
    posteriors and Viterbi path (the emissions computed here with scipy)."""
    hmmlearn_hmm = pytest.importorskip("hmmlearn.hmm")
    from scipy import stats

    rng = np.random.default_rng(11)
    k, d, n_steps = 3, 2, 300
    model = hmmlearn_hmm.GaussianHMM(k, covariance_type="diag", implementation=implementation,
                                     init_params="", params="")
    model.startprob_ = rng.dirichlet(np.ones(k))
    model.transmat_ = rng.dirichlet(np.ones(k) * 3, size=k)
    model.means_ = rng.normal(0, 3, (k, d))
    model.covars_ = rng.uniform(0.5, 2.0, (k, d))
    X, _ = model.sample(n_steps, random_state=0)
    log_emission = np.column_stack([
        stats.multivariate_normal(model.means_[j], np.diag(model.covars_[j])).logpdf(X)
        for j in range(k)])
    args = (np.log(model.startprob_), np.log(model.transmat_), log_emission)
    kernel = hmm.forward_backward_log if implementation == "log" else hmm.forward_backward_scaled
    log_prob, gamma, _ = kernel(*args)
    ref_logprob, ref_gamma = model.score_samples(X)
    assert log_prob == pytest.approx(ref_logprob, rel=1e-10)
    np.testing.assert_allclose(gamma, ref_gamma, rtol=1e-8, atol=1e-12)
    vit_logprob, path = hmm.viterbi(*args)
    ref_vit_logprob, ref_path = model.decode(X, algorithm="viterbi")
    np.testing.assert_array_equal(path, ref_path)
    assert vit_logprob == pytest.approx(ref_vit_logprob, rel=1e-10)


# ----------------------------------------------------------------- every backend
def _batch(rng, k=3, lengths=(1, 0, 7, 40, 13)):
    log_start, log_trans, _ = _random_model(rng, k, 1, zeros=True)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    log_emission = rng.normal(-2.0, 1.5, size=(offsets[-1], k))
    log_emission[offsets[3]:offsets[4]] -= 1e4  # a sequence far below float64's range
    log_emission[offsets[2] + 3] = 0.0  # an unobserved step
    return log_start, log_trans, log_emission, offsets


@pytest.mark.parametrize("scaled", [True, False])
def test_every_backend_runs_a_batch_of_sequences_as_the_reference(backend, scaled):
    from fastem._dispatch import get_kernels

    rng = np.random.default_rng(21)
    args = _batch(rng)
    n, k, s = args[2].shape[0], args[2].shape[1], args[3].shape[0] - 1
    out = {}
    for name in ("numpy", backend):
        kern = get_kernels(name, "hmm")
        log_prob, post, xi = np.empty(s), np.empty((n, k)), np.empty((s, k, k))
        kern.forward_backward(*args, scaled, log_prob, post, xi, 2)
        vit, path = np.empty(s), np.empty(n, np.int32)
        kern.decode_viterbi(*args, vit, path, 2)
        out[name] = log_prob, post, xi, vit, path
    ref, got = out["numpy"], out[backend]
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-8, atol=1e-13)
    np.testing.assert_allclose(got[2], ref[2], rtol=1e-8, atol=1e-13)
    np.testing.assert_allclose(got[3], ref[3], rtol=1e-12)
    np.testing.assert_array_equal(got[4], ref[4])
    # each sequence alone: the batch's per-sequence results
    for q in range(s):
        a, b = args[3][q], args[3][q + 1]
        if b > a:
            one = hmm.forward_backward_scaled(args[0], args[1], args[2][a:b])
            assert got[0][q] == pytest.approx(one[0], rel=1e-12)


@pytest.mark.parametrize("scaled", [True, False])
def test_a_lent_scratch_gives_the_same_bits_whatever_it_held_before(backend, scaled):
    """The work arrays a fit lends its kernels (``Scratch``) are reused from call to
    call, larger batches first: the results are those of fresh arrays, bit for bit."""
    from fastem._dispatch import get_kernels
    from fastem.kernels._scratch import Scratch

    kern = get_kernels(backend, "hmm")
    rng = np.random.default_rng(5)
    big, small = _batch(rng), _batch(np.random.default_rng(6))
    small = (*small[:2], small[2][:200], np.minimum(small[3], 200))
    scratch = Scratch()

    def run(args, **kw):
        n, k, s = args[2].shape[0], args[2].shape[1], args[3].shape[0] - 1
        fb = np.empty(s), np.empty((n, k)), np.empty((s, k, k))
        kern.forward_backward(*args, scaled, *fb, 2, **kw)
        fw = np.empty(s), np.empty((s, k))
        kern.forward(*args, scaled, *fw, 2, **kw)
        return fb + fw

    run(big, scratch=scratch)  # leaves its values in the buffers
    for got, ref in zip(run(small, scratch=scratch), run(small)):
        np.testing.assert_array_equal(got, ref)


def _edge_models():
    """Models that drive the fast backends off their fast paths, each small enough to
    enumerate: (name, log start, log transmat, log emission)."""
    # step 1 can only be emitted by state 0, at log density -1000: the scaled form's
    # shifted forward sum is exactly zero there, and the sequence goes to log space
    underflow = (_log([1.0, 0.0]), _log([[1.0, 0.0], [0.5, 0.5]]),
                 np.array([[0.0, 0.0], [-1000.0, 0.0], [0.0, -1.0], [-0.5, 0.0]]))
    # state 2 explains every step after the first, but its only way in is from state 1
    # (log alpha_0 = -30) with probability 1e-310: the shifted sums (1e-323) are
    # subnormal, with one digit left, and both forms take the exact log-space route
    tiny = (_log([1.0 - 1e-13, 1e-13, 0.0]),
            _log([[0.5, 0.5, 0.0], [0.5, 0.5, 1e-310], [0.0, 0.0, 1.0]]),
            np.array([[0.0, 0.0, 0.0]] + [[-2000.0, -2000.0, 0.0]] * 4))
    # a switch of probability 1e-150 between two very different regimes: the log form's
    # transition-count factor exp(c + n - log P) ~ exp(345) is too large to apply
    switch = (_log([0.5, 0.5]), _log([[1.0 - 1e-150, 1e-150], [1e-150, 1.0 - 1e-150]]),
              np.array([[0.0, -500.0]] * 3 + [[-500.0, 0.0]] * 3))
    return [("underflow", *underflow), ("tiny", *tiny), ("switch", *switch)]


@pytest.mark.parametrize("scaled", [True, False])
@pytest.mark.parametrize("case", range(3))
def test_every_backend_is_exact_where_its_fast_paths_are_not(backend, scaled, case):
    from fastem._dispatch import get_kernels

    _, log_start, log_trans, log_emission = _edge_models()[case]
    log_prob, gamma, xi, _, _ = _enumerate(log_start, log_trans, log_emission)
    n, k = log_emission.shape
    offsets = np.array([0, n], dtype=np.int64)
    got_lp, got_post, got_xi = np.empty(1), np.empty((n, k)), np.empty((1, k, k))
    get_kernels(backend, "hmm").forward_backward(log_start, log_trans, log_emission, offsets,
                                                 scaled, got_lp, got_post, got_xi, 2)
    # an absolute error in log P is a relative error in P: compare absolutely
    assert got_lp[0] == pytest.approx(log_prob, rel=0, abs=1e-10)
    np.testing.assert_allclose(got_post, gamma, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(got_xi[0], xi, rtol=1e-10, atol=1e-13)
    # the forward pass alone: the same log P, and the last step's filtered distribution
    filtered = np.empty((1, k))
    get_kernels(backend, "hmm").forward(log_start, log_trans, log_emission, offsets, scaled,
                                        got_lp, filtered, 2)
    assert got_lp[0] == pytest.approx(log_prob, rel=0, abs=1e-10)
    np.testing.assert_allclose(filtered[0], gamma[-1], rtol=1e-10, atol=1e-13)
