"""Mini-batch K-means: ``MiniBatchKMeans``, a drop-in for scikit-learn's (with ``partial_fit``).

Each step assigns a small batch of samples to their nearest centers and moves every
center that received samples to the weighted mean of all the samples it has received
so far (Sculley 2010).  With ``W_k`` the weight center ``k`` has accumulated, and
``S_k``, ``w_k`` the weighted sum and the weight of its samples in this batch,

    c_k <- (W_k c_k + S_k) / (W_k + w_k),        W_k <- W_k + w_k,

a per-center learning rate ``w_k / (W_k + w_k)`` that decays like 1 / count.  ``S_k``
and ``w_k`` come from the ``lloyd_step`` kernel, in float64 whatever X's dtype.

``fit`` is scikit-learn's algorithm with its random draws in the same order: a
validation sample of ``init_size`` random rows; ``n_init`` candidate initializations,
each made on its own random sample of ``init_size`` rows and scored by its inertia on
the validation sample; then ``max_iter * n_samples // batch_size`` steps, each on a
batch drawn with replacement with probability proportional to ``sample_weight`` (the
batch itself then has unit weights), with random reassignment of centers that gather
little weight and early stopping on the center change (``tol``) or on a smoothed batch
inertia (``max_no_improvement``).  The same ``random_state`` gives scikit-learn's
centers up to floating-point rounding.

Precision: the assignment kernels use ``||x||^2 - 2 x.c + ||c||^2``, which loses digits
far from the origin.  As ``KMeans`` centers its data, every batch here is shifted by a
fixed reference point near the data (a copy, in X's dtype) and the centers live in the
shifted coordinates; the published ``cluster_centers_`` add the point back.  ``fit``
uses the mean of its validation sample; ``partial_fit`` the mean of each batch it is
given (it converts the centers to and from that batch's coordinates, so it needs no
state beyond scikit-learn's); ``predict`` / ``score`` / ``labels_`` the mean of the
centers.  A shift changes no distance, so the answers are the same as unshifted, only
more accurate.
"""

from __future__ import annotations

import numbers
import warnings
from typing import TYPE_CHECKING

import numpy as np

from ._threads import limit_blas_threads
from ._validation import (
    Interval,
    Options,
    _is_sparse,
    check_enough_samples,
    check_magnitude,
    check_random_state,
    check_sample_weight,
    row_blocks,
)
from .base import Iteration
from .kmeans import KMeans, _dense_rows, _KMeansBase, _kmeans_plusplus, _on_rows, _tolerance

if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Union

    from typing_extensions import Self

    from ._typing import ArrayLike, Callback, Data, Labels, Weights


#: Size in elements of the shifted copies of X made by ``predict``, ``score`` and ``labels_``.
_SHIFT_BLOCK = 2**20
#: Length of ``_rng_state``: MT19937's 624 key words, position, has_gauss, and the cached
#: Gaussian as two uint32 words.
_RNG_STATE_LEN = 628


#: Rows per thread below which a batch runs on fewer threads: starting and joining the
#: kernels' threads costs more than they save on a small batch (measured: 1,024-row
#: batches ran 100x slower on 2 threads than on 1 while another process held a CPU).
#: The kernels' results do not depend on the thread count.
_MIN_ROWS_PER_THREAD = 2048


def _threads_for(n_rows, n_threads):
    """Threads for a kernel call on ``n_rows`` rows: at most ``n_threads``."""
    return max(1, min(n_threads, n_rows // _MIN_ROWS_PER_THREAD))


def _rows(X, sample_weight=None):
    """X as the ``fastem._stream.Rows`` that the helpers of ``fastem.kmeans`` take (X is
    already validated)."""
    from ._stream import rows_from

    return rows_from(X, lambda a, name, copy: a, owner="MiniBatchKMeans",
                     sample_weight=sample_weight)


def _reference_point(X):
    """The point the kernels' rows are shifted to (``||x||^2 - 2 x.c + ||c||^2`` loses
    precision far from the origin): X's mean; the origin for a CSR matrix, which
    shifting would densify (scikit-learn does not shift sparse data either)."""
    if _is_sparse(X):
        return np.zeros(X.shape[1], dtype=X.dtype)
    return X.mean(axis=0, dtype=np.float64).astype(X.dtype)


def _shifted(X, ref):
    """X - ref, as a new array; a CSR matrix (whose ``ref`` is the origin) as it is."""
    return X if _is_sparse(X) else X - ref


def _sampling_probabilities(sample_weight, dtype):
    """``sample_weight / sum`` computed in X's dtype, as scikit-learn does (its weights
    have X's dtype): with float32 data the sampling probabilities, hence the batches
    drawn, are then exactly scikit-learn's."""
    w = sample_weight.astype(dtype)
    return (w / np.sum(w)).astype(np.float64)


def _shifted_labels_inertia(X, centers, sample_weight, kern, n_threads):
    """Nearest center of every row of X and (with ``sample_weight``) the weighted inertia.

    Rows go through the kernels in blocks shifted by the mean of the centers, so that
    ``||x||^2 - 2 x.c + ||c||^2`` is computed near the origin; the copies stay small.
    """
    ref = (np.zeros(X.shape[1], X.dtype) if _is_sparse(X) else
           centers.mean(axis=0, dtype=np.float64).astype(X.dtype))
    shifted_centers = centers - ref
    labels = np.empty(X.shape[0], dtype=np.int32)
    inertia = 0.0
    for start, stop in row_blocks(X.shape[0], X.shape[1], _SHIFT_BLOCK):
        block = _shifted(X[start:stop], ref)
        threads = _threads_for(stop - start, n_threads)
        _on_rows(block, kern.assign_labels, kern.assign_labels_csr, shifted_centers,
                 labels[start:stop], np.empty(stop - start, np.float64), threads)
        if sample_weight is not None:
            inertia += _on_rows(block, kern.inertia, kern.inertia_csr,
                                sample_weight[start:stop], shifted_centers, labels[start:stop],
                                threads)
    return labels, inertia


def _reassign_due(counts, n_since, batch_size, n_clusters):
    """scikit-learn's schedule of random reassignments: (new counter, due?).

    Due once ``10 * n_clusters`` samples have gone by since the last one (counted in
    steps of the fit's batch size), and whenever a center has received nothing yet.
    """
    n_since += batch_size
    if (counts == 0).any() or n_since >= 10 * n_clusters:
        return 0, True
    return n_since, False


def _reassign_low_weight(X, centers, counts, ratio, random_state, verbose):
    """Move centers whose accumulated weight is below ``ratio * max`` onto random rows of
    the batch X (at most half the batch), and raise their weight to the smallest weight
    kept, so that they are not reassigned again at once.
    """
    low = counts < ratio * counts.max()
    half = X.shape[0] // 2
    if np.count_nonzero(low) > half:
        # keep only the ``half`` lowest; scikit-learn's (unstable) argsort decides ties
        low[np.argsort(counts)[half:]] = False
    n_low = int(np.count_nonzero(low))
    if n_low:
        rows = random_state.choice(X.shape[0], replace=False, size=n_low)
        if verbose:
            print(f"[MiniBatchKMeans] Reassigning {n_low} cluster centers.")
        centers[low] = _dense_rows(X, rows)
    kept = counts[~low]
    if kept.size:  # scikit-learn fails here when every center is low (ratio > 1)
        counts[low] = kept.min()


def _minibatch_step(X, sample_weight, centers, counts, kern, n_threads, *, reassign,
                    reassignment_ratio, random_state, verbose):
    """One mini-batch update of ``centers`` (X's dtype) and ``counts`` (float64), in place.

    Returns the batch's weighted inertia under the centers *before* the update (what
    scikit-learn's early stopping watches).
    """
    n_clusters, n_features = centers.shape
    n_threads = _threads_for(X.shape[0], n_threads)
    labels = np.empty(X.shape[0], dtype=np.int32)
    sums = np.empty((n_clusters, n_features), dtype=np.float64)
    weights = np.empty(n_clusters, dtype=np.float64)
    _on_rows(X, kern.lloyd_step, kern.lloyd_step_csr, sample_weight, centers, labels, sums,
             weights, n_threads)
    inertia = _on_rows(X, kern.inertia, kern.inertia_csr, sample_weight, centers, labels,
                       n_threads)
    # c <- (W c + S) / (W + w) for the centers that received weight; the others stay.
    # Multiplying by the reciprocal rounds as scikit-learn does.
    hit = weights > 0
    total = counts[hit] + weights[hit]
    moved = centers[hit].astype(np.float64) * counts[hit, None] + sums[hit]
    centers[hit] = moved * (1.0 / total)[:, None]
    counts[hit] = total
    if reassign and reassignment_ratio > 0:
        _reassign_low_weight(X, centers, counts, reassignment_ratio, random_state, verbose)
    return inertia


class _EarlyStopping:
    """scikit-learn's stopping rule for ``MiniBatchKMeans.fit``.

    The batch inertia per sample is smoothed by an exponentially weighted average with
    ``alpha = min(1, 2 * batch_size / (n_samples + 1))`` (about one pass over the data);
    the first step is ignored (its inertia is that of the initialization).  The fit
    stops when the squared center change of a step is at most ``tol`` (when tol > 0),
    or when the average has not reached a new minimum for ``max_no_improvement`` steps.
    """

    def __init__(self, batch_size, n_samples, tol, max_no_improvement, verbose):
        self.batch_size = batch_size
        self.alpha = min(batch_size * 2.0 / (n_samples + 1), 1.0)
        self.tol, self.max_no_improvement, self.verbose = tol, max_no_improvement, verbose
        self.ewa = self.ewa_min = None
        self.no_improvement = 0

    def __call__(self, step, n_steps, shift, batch_inertia):
        """True if the fit should stop after ``step`` (counted from 0)."""
        mean_inertia = batch_inertia / self.batch_size
        step += 1
        if step == 1:
            if self.verbose:
                print(f"Minibatch step {step}/{n_steps}: mean batch inertia: {mean_inertia}")
            return False
        self.ewa = mean_inertia if self.ewa is None else (
            self.ewa * (1 - self.alpha) + mean_inertia * self.alpha)
        if self.verbose:
            print(f"Minibatch step {step}/{n_steps}: mean batch inertia: {mean_inertia}, "
                  f"ewa inertia: {self.ewa}")
        if self.tol > 0.0 and shift <= self.tol:
            if self.verbose:
                print(f"Converged (small centers change) at step {step}/{n_steps}")
            return True
        if self.ewa_min is None or self.ewa < self.ewa_min:
            self.no_improvement = 0
            self.ewa_min = self.ewa
        else:
            self.no_improvement += 1
        if (self.max_no_improvement is not None
                and self.no_improvement >= self.max_no_improvement):
            if self.verbose:
                print(f"Converged (lack of improvement in inertia) at step {step}/{n_steps}")
            return True
        return False


class MiniBatchKMeans(_KMeansBase):
    """Mini-batch K-means, a drop-in for ``sklearn.cluster.MiniBatchKMeans``.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters.
    init : {"k-means++", "random"}, callable or array-like of shape (n_clusters, n_features)
        "k-means++": greedy k-means++ seeding on a random sample of ``init_size`` rows;
        "random": ``n_clusters`` rows of that sample, drawn with probability
        proportional to ``sample_weight``; a callable ``init(X_sample, n_clusters,
        random_state)`` returning centers; or the initial centers themselves.
    max_iter : int, default=100
        Maximum passes over the data: ``fit`` makes at most
        ``max_iter * n_samples // batch_size`` steps.
    batch_size : int, default=1024
        Samples per step (at most n_samples).
    verbose : int, default=0
        Print the inertia of every step.
    compute_labels : bool, default=True
        After ``fit`` / ``partial_fit``, assign every sample of X to its nearest center
        (``labels_``) and compute ``inertia_`` on all of X.
    random_state : None, int or numpy RandomState
        Seeds the samples, the initialization and the reassignments; the same seed
        gives scikit-learn's result.
    tol : float, default=0.0
        Stop when the squared change of the centers in one step is at most ``tol``
        times the mean per-feature variance of X (0 disables this test).
    max_no_improvement : int or None, default=10
        Stop after this many steps without a new minimum of the smoothed batch inertia
        (None disables this test).
    init_size : int, default=None
        Rows sampled for each initialization and for scoring the candidates; None means
        ``3 * batch_size`` (at least ``3 * n_clusters``), at most n_samples.
    n_init : "auto" or int, default="auto"
        Candidate initializations; the one with the lowest inertia on the validation
        sample is kept.  "auto" is 1 for "k-means++" and an array, 3 for "random" and a
        callable.
    reassignment_ratio : float, default=0.01
        A center whose accumulated weight falls below this fraction of the largest is
        moved onto a random sample of the current batch (checked every
        ``10 * n_clusters`` samples).  0 disables reassignment.
    backend : {"auto", "numba", "cython", "numpy"}, default=None
        Kernel implementation; None uses ``fastem.config_context`` / ``FASTEM_BACKEND``.
    n_threads : int, default=None
        Threads for the kernels; None means every CPU this process may use.  A batch
        gets one thread per 2,048 rows at most (threads cost more than they save on
        small batches).  Results are bit-identical for any value.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features), X's float dtype
    labels_ : ndarray of shape (n_samples,), int32
        Labels of the last X given to ``fit`` / ``partial_fit`` (only if compute_labels).
    inertia_ : float
        Weighted inertia of that X (with compute_labels); without compute_labels,
        ``fit`` sets the smoothed batch inertia times the total weight and
        ``partial_fit`` sets nothing.
    n_iter_ : int
        Passes over the data made by ``fit`` (not set by ``partial_fit``).
    n_steps_ : int
        Mini-batch steps made (``partial_fit`` adds one per call).
    n_features_in_ : int
    feature_names_in_ : ndarray of str (only when X had string column names)
    backend_ : str
        Backend that ran the last fit or step.
    """

    #: Always set after fit / partial_fit; a model file must hold them.
    _always_fitted = ("cluster_centers_", "n_steps_", "backend_", "_n_features_out", "_counts",
                      "_n_since_last_reassign", "_batch_size")
    #: Also saved when present: labels_ / inertia_ (compute_labels), n_iter_ (fit), and the
    #: random generator of partial_fit, so that a loaded model continues the same stream.
    _fitted_attributes = _always_fitted + ("labels_", "inertia_", "n_iter_", "_rng_state")

    _parameter_constraints = {
        **{name: KMeans._parameter_constraints[name] for name in (
            "n_clusters", "n_init", "max_iter", "tol", "verbose", "random_state", "backend",
            "n_threads")},
        "init": [Options("k-means++", "random"), "callable", "array-like"],
        "batch_size": [Interval(numbers.Integral, 1, None)],
        "compute_labels": ["boolean"],
        "max_no_improvement": [None, Interval(numbers.Integral, 0, None)],
        "init_size": [None, Interval(numbers.Integral, 1, None)],
        "reassignment_ratio": [Interval(numbers.Real, 0, None)],
    }

    def __init__(self, n_clusters: int = 8, *,
                 init: Union[str, ArrayLike, Callable[..., Any]] = "k-means++", max_iter: int = 100,
                 batch_size: int = 1024, verbose: int = 0, compute_labels: bool = True,
                 random_state: Any = None, tol: float = 0.0, max_no_improvement: Optional[int] = 10,
                 init_size: Optional[int] = None, n_init: Union[int, str] = "auto",
                 reassignment_ratio: float = 0.01, backend: Optional[str] = None,
                 n_threads: Optional[int] = None) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.verbose = verbose
        self.compute_labels = compute_labels
        self.random_state = random_state
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.init_size = init_size
        self.n_init = n_init
        self.reassignment_ratio = reassignment_ratio
        self.backend = backend
        self.n_threads = n_threads

    # ------------------------------------------------------------------ model files
    def __sklearn_is_fitted__(self):
        # n_features_in_ alone is not enough: a first partial_fit may fail after setting it
        return hasattr(self, "cluster_centers_")

    def _required_attributes(self):
        return ("n_features_in_", *self._always_fitted)

    def _check_fitted_state(self):
        super()._check_fitted_state()
        k = self.n_clusters
        self._fitted_array("cluster_centers_", (k, self.n_features_in_))
        counts = self._fitted_array("_counts", (k,))
        if (counts < 0).any():
            raise ValueError("_counts must be >= 0")
        for name, low in (("n_steps_", 1), ("_batch_size", 1), ("_n_since_last_reassign", 0),
                          ("n_iter_", 1)):
            value = getattr(self, name, low)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an int >= {low}")
        if hasattr(self, "labels_"):
            labels = self._fitted_array("labels_", (None,), kind="i")
            if labels.size and (labels.min() < 0 or labels.max() >= k):
                raise ValueError(f"labels_ must lie in [0, {k})")
        inertia = getattr(self, "inertia_", 0.0)
        if not (isinstance(inertia, float) and np.isfinite(inertia) and inertia >= 0):
            raise ValueError("inertia_ must be a finite float >= 0")
        if self._n_features_out != k:
            raise ValueError("_n_features_out must equal n_clusters")

    @property
    def _rng_state(self):
        """State of partial_fit's random generator as uint32 words (for model files)."""
        if "_random_state" not in self.__dict__:
            raise AttributeError("_rng_state")  # partial_fit has not run: nothing to save
        _, keys, pos, has_gauss, gauss = self._random_state.get_state()
        return np.concatenate([keys, [pos, has_gauss],
                               np.array([gauss], np.float64).view(np.uint32)]).astype(np.uint32)

    @_rng_state.setter
    def _rng_state(self, words):
        words = np.ascontiguousarray(words)
        if words.shape != (_RNG_STATE_LEN,) or words.dtype != np.uint32 or words[624] > 624:
            raise ValueError("_rng_state is not a random generator state")
        self._random_state = np.random.RandomState()
        self._random_state.set_state(("MT19937", words[:624], int(words[624]), int(words[625]),
                                      float(words[626:].view(np.float64)[0])))

    # ------------------------------------------------------------------ helpers
    def _sizes(self, n_samples):
        """scikit-learn's effective batch size, init sample size and number of inits."""
        k = self.n_clusters
        batch_size = min(self.batch_size, n_samples)
        init_size = self.init_size
        if init_size is None:
            init_size = 3 * batch_size if 3 * batch_size >= k else 3 * k
        elif init_size < k:
            warnings.warn(f"init_size={init_size} should be larger than n_clusters={k}. "
                          "Setting it to min(3*n_clusters, n_samples)", RuntimeWarning,
                          stacklevel=3)
            init_size = 3 * k
        init_size = min(init_size, n_samples)
        init_is_array = not isinstance(self.init, str) and not callable(self.init)
        if self.n_init == "auto":
            n_init = 3 if (isinstance(self.init, str) and self.init == "random"
                           or callable(self.init)) else 1
        else:
            n_init = self.n_init
        if init_is_array and n_init != 1:
            warnings.warn(
                "Explicit initial center position passed: performing only one init in "
                f"{type(self).__name__} instead of n_init={n_init}.", RuntimeWarning,
                stacklevel=3)
            n_init = 1
        return batch_size, init_size, n_init

    def _fit_input(self, X, sample_weight, first):
        """(X, sample_weight, init) of ``fit`` / ``partial_fit`` checked: X validated (in
        the dtype of the centers after the first call), the first call's requirements,
        and an array init as an array of X's dtype.  ``fastem.Chunks`` and Dask arrays
        get a clear error: batches are drawn from anywhere in X (random access)."""
        from ._stream import Chunks
        from .dask import is_dask_array

        owner = type(self).__name__
        if is_dask_array(X):
            raise TypeError(
                f"{owner}.fit does not take a Dask array yet: give its blocks to partial_fit "
                "one by one (for block in X.blocks: est.partial_fit(block)), or use "
                "fastem.KMeans, which fits Dask arrays on the workers.")
        if isinstance(X, Chunks):
            raise TypeError(
                f"{owner} needs random access to the rows of X, which fastem.Chunks does not "
                "give: pass an array or a memory map (np.load(path, mmap_mode='r'), read batch "
                "by batch), or pass each piece to partial_fit.")
        X = self._validate_data(X, reset=first)
        if not first and X.dtype != self.cluster_centers_.dtype:
            X = X.astype(self.cluster_centers_.dtype)
        sample_weight = check_sample_weight(sample_weight, X.shape[0], owner=owner)
        init = self.init
        if first:
            check_enough_samples(X.shape[0], int(np.count_nonzero(sample_weight)),
                                 self.n_clusters)
            if not isinstance(init, str) and not callable(init):
                # (the one-row Rows gives the check X's dtype and width)
                init = self._check_centers(init, _rows(X[:1]), "the initial centers (init)")
                check_magnitude(X[:1], None, name="init", also=init)
        check_magnitude(X, sample_weight,
                        also=None if first else self.cluster_centers_.astype(X.dtype))
        return X, sample_weight, init

    def _initial_centers(self, X, sample_weight, init, ref, init_size, random_state, kern,
                         n_threads):
        """One candidate initialization (scikit-learn's _init_centroids), in X's
        coordinates and dtype: rows of X exactly, for "k-means++" and "random".

        The sample of ``init_size`` rows is drawn whatever ``init`` is, as scikit-learn
        does, so that the later draws stay in step.  k-means++ runs on the sample
        shifted by ``ref``; a callable gets it as it is.
        """
        if init_size < X.shape[0]:
            rows = random_state.randint(0, X.shape[0], init_size)
            X, sample_weight = X[rows], sample_weight[rows]
        n_threads = _threads_for(X.shape[0], n_threads)
        if callable(init):
            return self._check_centers(init(X, self.n_clusters, random_state=random_state),
                                       _rows(X[:1]), "the centers returned by the init callable")
        if not isinstance(init, str):
            return init
        if init == "k-means++":
            _, seeds = _kmeans_plusplus(_rows(_shifted(X, ref), sample_weight),
                                        self.n_clusters, random_state, None, kern, n_threads)
        else:
            seeds = random_state.choice(X.shape[0], size=self.n_clusters, replace=False,
                                        p=_sampling_probabilities(sample_weight, X.dtype))
        return _dense_rows(X, seeds)

    def _best_init(self, X, sample_weight, init, init_size, n_init, random_state, kern,
                   n_threads):
        """``fit``'s initialization: (centers relative to the reference point, the point).

        A validation sample of ``init_size`` random rows scores the ``n_init`` candidates
        (lowest weighted inertia wins); its mean is the fit's fixed reference point.
        """
        rows = random_state.randint(0, X.shape[0], init_size)
        X_valid, w_valid = X[rows], sample_weight[rows]
        ref = _reference_point(X_valid)
        X_valid = _shifted(X_valid, ref)
        labels = np.empty(init_size, dtype=np.int32)
        valid_threads = _threads_for(init_size, n_threads)
        best = None
        for init_no in range(n_init):
            if self.verbose:
                print(f"Init {init_no + 1}/{n_init} with method {init}")
            candidate = self._initial_centers(X, sample_weight, init, ref, init_size,
                                              random_state, kern, n_threads) - ref
            _on_rows(X_valid, kern.assign_labels, kern.assign_labels_csr, candidate, labels,
                     np.empty(init_size), valid_threads)
            inertia = _on_rows(X_valid, kern.inertia, kern.inertia_csr, w_valid, candidate,
                               labels, valid_threads)
            if self.verbose:
                print(f"Inertia for init {init_no + 1}/{n_init}: {inertia}")
            if best is None or inertia < best[1]:
                best = (candidate, inertia)
        return best[0], ref

    def _finish(self, X, sample_weight, cluster_centers, backend, kern, n_threads):
        """Publish the centers and, with compute_labels, the labels and inertia of X."""
        self.cluster_centers_ = cluster_centers
        self._n_features_out = self.n_clusters
        self.backend_ = backend
        if self.compute_labels:
            self.labels_, inertia = _shifted_labels_inertia(X, self.cluster_centers_,
                                                            sample_weight, kern, n_threads)
            self.inertia_ = float(inertia)
        elif hasattr(self, "labels_"):
            del self.labels_  # they would describe another X

    # ------------------------------------------------------------------ API
    def fit(self, X: Data, y: None = None, sample_weight: Weights = None, *,
            callback: Callback = None) -> Self:
        """Compute the centers on X by mini-batches.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            float32 stays float32; other numeric types become float64.
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights: batches are drawn with probability proportional to
            them.  Not used by a callable or array ``init``.
        callback : callable, default=None
            Called after every step with a dict: ``init`` (0), ``iteration`` (the step,
            from 1), ``batch_inertia``, ``center_shift`` (squared; 0 unless tol > 0),
            ``converged`` (the stopping rule fired), ``elapsed`` (seconds).  A true
            return value stops the fit there.

        Returns
        -------
        self
        """
        self._validate_params()
        X, sample_weight, init = self._fit_input(X, sample_weight, first=True)
        n_samples = X.shape[0]
        batch_size, init_size, n_init = self._sizes(n_samples)
        backend, n_threads = self._resolve_runtime()
        tol = _tolerance(_rows(X), self.tol) if self.tol > 0 else 0.0
        # Batches are drawn as RandomState.choice(n_samples, batch_size, p=p) draws them
        # (inverse CDF of one uniform per row: the same numbers), but with the cumulative
        # distribution computed once instead of at every step.
        cdf = np.cumsum(_sampling_probabilities(sample_weight, X.dtype))
        cdf /= cdf[-1]
        # what the engine's hooks below read (the random state is theirs too)
        self._fit_state = s = dict(
            sample_weight=sample_weight, init=init, init_size=init_size, n_init=n_init,
            batch_size=batch_size, kern=self._kernels(backend, "kmeans"), n_threads=n_threads,
            tol=tol, cdf=cdf, unit_weights=np.ones(batch_size),
            stop=_EarlyStopping(batch_size, n_samples, tol, self.max_no_improvement,
                                self.verbose), n_steps=(self.max_iter * n_samples) // batch_size)
        try:
            with limit_blas_threads():
                best, _ = self._run_em(X, n_init=1, initialize=True, max_iter=s["n_steps"],
                                       random_state=check_random_state(self.random_state),
                                       callback=callback)
                centers, self._counts, ref = best.params
                self._n_since_last_reassign = s["n_since"]
                self._batch_size = int(batch_size)
                self.n_steps_ = best.n_iter
                # passes over the data, rounded up: ceil(n_steps_ * batch_size / n_samples)
                self.n_iter_ = -(-self.n_steps_ * batch_size // n_samples)
                self._finish(X, sample_weight, centers + ref, backend, s["kern"], n_threads)
            if not self.compute_labels:
                # scikit-learn fails when the fit made a single step (no average yet)
                ewa = s["stop"].ewa if s["stop"].ewa is not None else s["last"] / batch_size
                self.inertia_ = float(ewa * np.sum(sample_weight))
        finally:
            self.__dict__.pop("_fit_state", None)
        return self

    # ------------------------------------------------------------------ the engine's hooks
    # fit's parameters: (centers relative to the reference point, their counts, the point)
    def _em_initialize(self, X, random_state):
        s = self._fit_state
        centers, ref = self._best_init(X, s["sample_weight"], s["init"], s["init_size"],
                                       s["n_init"], random_state, s["kern"], s["n_threads"])
        s.update(params=(centers, np.zeros(self.n_clusters), ref), n_since=0, step=0,
                 random_state=random_state)

    def _em_iterate(self, X):
        """One mini-batch step: a batch drawn by weight, assigned, and the centers moved."""
        s = self._fit_state
        centers, counts, ref = s["params"]
        random_state, batch_size, tol = s["random_state"], s["batch_size"], s["tol"]
        rows = s["cdf"].searchsorted(random_state.random_sample(batch_size), side="right")
        X_batch = X[rows]
        if not _is_sparse(X_batch):
            X_batch -= ref
        s["n_since"], reassign = _reassign_due(counts, s["n_since"], batch_size,
                                               self.n_clusters)
        previous = centers.astype(np.float64) if tol > 0 else None
        s["last"] = _minibatch_step(
            X_batch, s["unit_weights"], centers, counts, s["kern"], s["n_threads"],
            reassign=reassign, reassignment_ratio=self.reassignment_ratio,
            random_state=random_state, verbose=self.verbose)
        shift = float(np.sum((centers - previous) ** 2)) if tol > 0 else 0.0
        step, s["step"] = s["step"], s["step"] + 1
        stop = s["stop"](step, s["n_steps"], shift, s["last"])
        return Iteration(None, stop, report=dict(batch_inertia=float(s["last"]),
                                                 center_shift=shift))

    def _em_end(self, X, bound, converged):
        return 0.0  # one run: nothing to compare

    def _get_parameters(self):
        return self._fit_state["params"]

    def _set_parameters(self, params):
        self._fit_state["params"] = params

    def partial_fit(self, X: Data, y: None = None, sample_weight: Weights = None) -> Self:
        """Update the centers with one mini-batch X (initializing them on the first one).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The batch.  Its dtype is that of the first batch: later batches are
            converted to it.
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the batch's samples.  Not used by a callable or
            array ``init``.

        Returns
        -------
        self
        """
        from .dask import is_dask_array, partial_fit_blocks

        if is_dask_array(X):  # its blocks are the batches
            return partial_fit_blocks(self, X, sample_weight)
        self._validate_params()
        first = not hasattr(self, "cluster_centers_")
        X, sample_weight, init = self._fit_input(X, sample_weight, first=first)
        backend, n_threads = self._resolve_runtime()
        kern = self._kernels(backend, "kmeans")
        if "_random_state" not in self.__dict__:
            self._random_state = check_random_state(self.random_state)
        # This batch's mean is the reference point of this step.
        ref = _reference_point(X)
        with limit_blas_threads():
            if first:
                batch_size, init_size, _ = self._sizes(X.shape[0])
                self._batch_size = int(batch_size)
                start = self._initial_centers(X, sample_weight, init, ref, init_size,
                                              self._random_state, kern, n_threads)
                self._counts = np.zeros(self.n_clusters)
                self._n_since_last_reassign = 0
                self.n_steps_ = 0
            else:
                start = self.cluster_centers_
            centers = start - ref
            before = centers.copy()
            self._n_since_last_reassign, reassign = _reassign_due(
                self._counts, self._n_since_last_reassign, self._batch_size, self.n_clusters)
            _minibatch_step(_shifted(X, ref), sample_weight, centers, self._counts, kern,
                            n_threads, reassign=reassign,
                            reassignment_ratio=self.reassignment_ratio,
                            random_state=self._random_state, verbose=self.verbose)
            # A center the batch left alone keeps its exact value, as in scikit-learn
            # (c - ref + ref may differ from c in the last bit).
            published = centers + ref
            kept = (centers == before).all(axis=1)
            published[kept] = start[kept]
            self.n_steps_ += 1
            self._finish(X, sample_weight, published, backend, kern, n_threads)
            if not self.compute_labels and hasattr(self, "inertia_"):
                del self.inertia_  # it would describe another batch
        return self

    def fit_predict(self, X: Data, y: None = None, sample_weight: Weights = None) -> Labels:
        """Fit, then return the label of every sample (equal to ``fit(X).predict(X)``)."""
        self.fit(X, sample_weight=sample_weight)
        return self.labels_ if self.compute_labels else self.predict(X)

    def _labels_inertia(self, X, centers, sample_weight):
        """(labels, inertia) of X under ``centers``, computed as ``labels_`` is."""
        backend, n_threads = self._resolve_runtime()
        with limit_blas_threads():
            return _shifted_labels_inertia(X, centers, sample_weight,
                                           self._kernels(backend, "kmeans"), n_threads)
