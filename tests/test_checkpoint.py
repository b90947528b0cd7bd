"""Callbacks and checkpoints of mixture fits: stopping from a callback, resuming a fit
that died (in-process, and a real subprocess killed with SIGKILL), and refusing to
resume a different fit."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

import fastem
from fastem.exceptions import ConvergenceWarning


def blobs(seed=0):
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(c, 1.0, (400, 3)) for c in (0.0, 2.5, 5.0)])


KW = dict(n_components=3, n_init=3, max_iter=40, tol=0.0, random_state=0, init_params="random")


class Killed(Exception):
    pass


def _fit(model, X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, **kw)


def _same_model(a, b):
    for name in a._fitted_attributes:
        va, vb = getattr(a, name), getattr(b, name)
        assert (np.array_equal(va, vb) if isinstance(va, np.ndarray) else va == vb), name


def test_callback_sees_every_iteration_and_can_stop_the_fit():
    seen = []

    def callback(info):
        seen.append(info)
        return info["iteration"] == 4

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a requested stop is not news
        gm = fastem.GaussianMixture(3, max_iter=50, tol=0.0, random_state=0).fit(
            blobs(), callback=callback)
    assert [i["iteration"] for i in seen] == [1, 2, 3, 4]
    assert gm.n_iter_ == 4 and not gm.converged_ and len(gm.lower_bounds_) == 4
    assert seen[-1]["lower_bound"] == gm.lower_bounds_[-1]
    assert seen[1]["change"] == pytest.approx(gm.lower_bounds_[1] - gm.lower_bounds_[0])


@pytest.mark.parametrize("model", ["gmm", "categorical", "kmeans", "kmeans-hamerly"])
def test_resumed_fit_equals_uninterrupted_fit(tmp_path, model):
    if model == "gmm":
        make, X = (lambda: fastem.GaussianMixture(**KW)), blobs()
    elif model.startswith("kmeans"):
        X = np.random.default_rng(2).standard_normal((3000, 4)).astype(np.float32)
        algorithm = "hamerly" if model == "kmeans-hamerly" else "lloyd"
        make = lambda: fastem.KMeans(8, n_init=3, max_iter=40, tol=0.0,  # noqa: E731
                                     random_state=0, algorithm=algorithm)
    else:
        X = np.random.default_rng(1).integers(-1, 4, (600, 5))
        make = lambda: fastem.CategoricalMixture(**KW)  # noqa: E731
    reference = _fit(make(), X)
    if model == "kmeans-hamerly":  # a resumed bounded run rebuilds its bounds: still Lloyd's
        _same_model(reference, _fit(fastem.KMeans(8, n_init=3, max_iter=40, tol=0.0,
                                                  random_state=0, algorithm="lloyd"), X))
    path = tmp_path / "fit.ckpt"
    iterations = []

    def dies_at_the_50th_iteration(info):
        iterations.append(info["iteration"])
        if len(iterations) == 50:  # in the second initialization
            raise Killed

    with pytest.raises(Killed):
        _fit(make(), X, callback=dies_at_the_50th_iteration, checkpoint=path,
             checkpoint_every=4)
    assert path.exists()
    resumed = _fit(make(), X, checkpoint=path, checkpoint_every=4)
    _same_model(resumed, reference)
    assert not path.exists()  # removed once the fit completed


def test_kmeans_callback_sees_every_iteration_and_can_stop():
    X = np.random.default_rng(3).standard_normal((2000, 3))
    seen = []
    km = fastem.KMeans(6, n_init=1, max_iter=100, tol=0.0, random_state=0).fit(
        X, callback=lambda info: seen.append(info) or info["iteration"] == 3)
    assert [i["iteration"] for i in seen] == [1, 2, 3] and km.n_iter_ == 3
    assert seen[0]["n_changed"] == 2000 and seen[-1]["center_shift"] > 0
    full = fastem.KMeans(6, n_init=1, max_iter=100, tol=0.0, random_state=0).fit(
        X, callback=lambda info: seen.append(info))
    assert seen[-1]["converged"] and seen[-1]["n_changed"] == 0 and full.n_iter_ > 3


def test_checkpoint_of_another_fit_is_refused(tmp_path):
    path = tmp_path / "fit.ckpt"
    with pytest.raises(Killed):
        _fit(fastem.GaussianMixture(**KW), blobs(), checkpoint=path, checkpoint_every=2,
             callback=lambda info: (_ for _ in ()).throw(Killed) if info["iteration"] == 5
             else None)
    for model, X in ((fastem.GaussianMixture(**KW), blobs(seed=1)),
                     (fastem.GaussianMixture(**dict(KW, tol=1e-3)), blobs())):
        with pytest.raises(ValueError, match="different fit"):
            _fit(model, X, checkpoint=path)
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="unreadable"):
        _fit(fastem.GaussianMixture(**KW), blobs(), checkpoint=path)


def test_bad_checkpoint_options(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_every"):
        fastem.GaussianMixture(2).fit(blobs(), checkpoint=tmp_path / "x.ckpt", checkpoint_every=0)
    with pytest.raises(ValueError, match="not a writable directory"):  # before any work
        fastem.KMeans(2).fit(blobs(), checkpoint=tmp_path / "no" / "x.ckpt")


CHILD = textwrap.dedent("""
    import sys, time, warnings
    import numpy as np
    import fastem
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(c, 1.0, (400, 3)) for c in (0.0, 2.5, 5.0)])
    slow, out, ckpt, progress = sys.argv[1] == "slow", sys.argv[2], sys.argv[3], sys.argv[4]
    def callback(info):
        with open(progress, "a") as fh:
            fh.write(f"{info['init']} {info['iteration']}\\n")
        if slow:
            time.sleep(0.05)
    gm = fastem.GaussianMixture(3, n_init=2, max_iter=40, tol=0.0, random_state=0,
                                init_params="random")
    gm.fit(X, callback=callback, checkpoint=ckpt, checkpoint_every=5)
    gm.save(out)
""")


def test_job_killed_with_sigkill_resumes_to_the_same_model(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(CHILD)
    ckpt, progress = tmp_path / "fit.ckpt", tmp_path / "progress.txt"

    def job(mode, out):
        return [sys.executable, str(script), mode, str(out), str(ckpt), str(progress)]

    # the job must import the fastem under test, whatever else the interpreter can find
    # (a script's own directory, not the working directory, heads its sys.path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [os.path.dirname(os.path.dirname(fastem.__file__)),
                      os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(job("slow", tmp_path / "killed.npz"), env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill it well into the second initialization
        lines = progress.read_text().split() if progress.exists() else []
        if len(lines) >= 2 * 52 and ckpt.exists():
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and ckpt.exists()
    assert not (tmp_path / "killed.npz").exists()
    done_before_kill = len(progress.read_text().split()) // 2
    progress.unlink()

    resumed = subprocess.run(job("fast", tmp_path / "resumed.npz"), capture_output=True,
                             text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr
    redone = len(progress.read_text().split()) // 2
    assert redone < 80 - done_before_kill + 5  # it resumed; it did not start over
    progress.unlink()
    fresh = subprocess.run(job("fast", tmp_path / "fresh.npz"), capture_output=True, text=True,
                           timeout=300, env=env)
    assert fresh.returncode == 0, fresh.stderr
    _same_model(fastem.load(tmp_path / "resumed.npz"), fastem.load(tmp_path / "fresh.npz"))
    assert not ckpt.exists()


def test_minibatch_callback_sees_every_step_and_a_stop_equals_a_shorter_fit():
    X = blobs()[:640]
    params = dict(n_clusters=3, batch_size=64, random_state=0, max_no_improvement=None)
    seen = []
    stopped = fastem.MiniBatchKMeans(max_iter=3, **params).fit(
        X, callback=lambda info: seen.append(info) or info["iteration"] == 10)
    assert [i["iteration"] for i in seen] == list(range(1, 11))
    assert all(i["batch_inertia"] > 0 and not i["converged"] for i in seen)
    # 10 steps of 64 rows are one pass over the 640 rows: max_iter=1 makes the same draws
    short = fastem.MiniBatchKMeans(max_iter=1, **params).fit(X)
    assert stopped.n_steps_ == short.n_steps_ == 10
    np.testing.assert_array_equal(stopped.cluster_centers_, short.cluster_centers_)
    assert stopped.inertia_ == short.inertia_


def test_a_requested_stop_writes_the_checkpoint_at_once_and_raises_interrupted(tmp_path):
    """What SIGTERM does in the command: the iteration's end writes the checkpoint, even
    when none is due, and the fit stops with Interrupted; rerun, it resumes to the model
    an uninterrupted fit gives."""
    from fastem import _checkpoint

    X = blobs()
    make = lambda: fastem.GaussianMixture(3, max_iter=60, tol=0, random_state=0)  # noqa: E731
    path = tmp_path / "fit.ckpt"
    seen = []

    def stop_at_7(info):
        seen.append(info["iteration"])
        if info["iteration"] == 7:
            _checkpoint.request_stop()

    with pytest.raises(_checkpoint.Interrupted, match="after iteration 7"):
        make().fit(X, checkpoint=path, checkpoint_every=1000, callback=stop_at_7)
    assert path.exists() and seen[-1] == 7
    resumed = make().fit(X, checkpoint=path)
    _same_model(resumed, make().fit(X))
    assert resumed.n_iter_ == 60 and not path.exists()
