"""Estimator plumbing shared by every fastem model.

``FastEMEstimator`` gives scikit-learn's estimator protocol (``get_params`` /
``set_params`` / ``clone`` / repr / tags) without importing scikit-learn at run time,
plus the input checks every model needs at its API edge: parameter validation from
the class's declarative ``_parameter_constraints`` table, feature-count and
feature-name consistency between ``fit`` and later calls, and backend/thread
resolution.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import sys
from typing import TYPE_CHECKING, NamedTuple, Optional

import numpy as np

from ._dispatch import get_kernels, resolve_backend
from ._threads import resolve_n_threads
from ._tooling import ToolingMixin, short_repr
from ._validation import (
    Interval,
    NotFittedError,
    Options,
    _dataframe_feature_names,
    check_array,
    validate_params,
)

if TYPE_CHECKING:
    from typing_extensions import Self

    from ._typing import Callback, Data, Floats, Labels, PathOrFile, Weights


def lazy_on_dask(dtype, columns=None):
    """Make a per-row method (predict, transform, ...) lazy on a Dask array: it then
    returns a Dask array of the method applied to every block on the workers.
    ``dtype``: the output's dtype, or "X" for X's float dtype; ``columns``: None for one
    value a row, else a function of the estimator giving the output's width."""
    def decorate(method):
        @functools.wraps(method)
        def run(self, X, *args, **kwargs):
            from .dask import is_dask_array

            if not is_dask_array(X):
                return method(self, X, *args, **kwargs)
            from .dask import map_blocks

            self._check_is_fitted()
            if X.ndim != 2:
                raise ValueError(f"Expected a 2-D Dask array, got {X.ndim} dimensions.")
            self._check_n_features(X.shape[1], reset=False)
            out = (np.float32 if X.dtype == np.float32 else np.float64) if dtype == "X" else dtype
            return map_blocks(getattr(self, method.__name__), X, out,
                              None if columns is None else columns(self))
        return run
    return decorate


def _not_fitted_error_class():
    """fastem's NotFittedError, also a scikit-learn NotFittedError when sklearn is loaded.

    Code that already imported scikit-learn may catch sklearn's class; code that did
    not cannot be catching it, so fastem never imports scikit-learn just for this.
    """
    sk_exceptions = sys.modules.get("sklearn.exceptions")
    if sk_exceptions is None:
        return NotFittedError
    global _SKLEARN_NOT_FITTED
    if _SKLEARN_NOT_FITTED is None:
        _SKLEARN_NOT_FITTED = type(
            "NotFittedError", (NotFittedError, sk_exceptions.NotFittedError),
            {"__module__": NotFittedError.__module__})
    return _SKLEARN_NOT_FITTED


_SKLEARN_NOT_FITTED = None


class FastEMEstimator(ToolingMixin):
    """Base class: scikit-learn's estimator protocol (and what its tooling asks for, in
    ``_tooling.py``) and fastem's API-edge checks."""

    _parameter_constraints: dict = {}
    _estimator_type = None
    _accepts_sparse = False  # scipy.sparse X (tags for scikit-learn's tooling)
    _allows_nan = False  # NaN entries in X (missing values)
    _positive_only = False  # X must be >= 0 (counts, binary data)
    _categorical = False  # X holds category codes

    # ------------------------------------------------------------------ params protocol
    @classmethod
    def _get_param_names(cls):
        sig = inspect.signature(cls.__init__)
        return sorted(
            p.name for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        )

    def get_params(self, deep=True):
        """Constructor parameters as a dict (scikit-learn protocol)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Set constructor parameters (scikit-learn protocol); returns self."""
        valid = self._get_param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"Invalid parameter {key!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {valid!r}."
                )
            setattr(self, key, value)
        return self

    def __repr__(self):
        defaults = {
            p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()
        }
        changed = []
        for name, value in self.get_params().items():
            default = defaults.get(name, inspect.Parameter.empty)
            same = (value is default) or (
                not isinstance(value, np.ndarray) and not isinstance(default, np.ndarray)
                and type(value) is type(default) and value == default
            )
            if not same:
                changed.append(f"{name}={short_repr(value)}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_is_fitted__(self):
        # every fitted attribute, not n_features_in_ alone: a fit that fails after
        # validating X has set that one
        return all(hasattr(self, name) for name in self._required_attributes())

    # ------------------------------------------------------------------ model files
    #: Fitted attributes that ``save`` writes and ``fastem.load`` requires, besides
    #: n_features_in_ (and feature_names_in_ when present); see ``fastem/_persist.py``.
    _fitted_attributes = ()

    #: Per-row fitted attributes, which ``save(..., include_labels=False)`` leaves out
    _per_row_attributes = ()

    def save(self, path: PathOrFile, include_labels: bool = True) -> PathOrFile:
        """Write this fitted model to ``path``: a safe, versioned ``.npz`` (no pickle),
        written atomically (``path`` may also be a binary file object, written as is).
        ``include_labels=False`` leaves out ``labels_`` (4 bytes a row).  Read it back
        with ``fastem.load(path)``."""
        from ._persist import save

        return save(self, path, include_labels=include_labels)

    def _data_fingerprint(self, X):
        """What a checkpoint records of the data (see ``fastem/_checkpoint.py``)."""
        return X.fingerprint()  # X: fastem._stream.Rows

    def _persisted_attributes(self):
        return ("n_features_in_", "feature_names_in_", *self._fitted_attributes)

    def _required_attributes(self):
        return ("n_features_in_", *(a for a in self._fitted_attributes
                                    if a not in self._per_row_attributes))

    def _restore_fitted_state(self):
        """Rebuild attributes derived from the persisted ones (after ``load``)."""

    def _check_fitted_state(self):
        """Validate the fitted attributes (after ``load``); ValueError names the problem."""
        d = self.n_features_in_
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise ValueError(f"n_features_in_ must be a positive int, got {d!r}")
        names = getattr(self, "feature_names_in_", None)
        if names is not None and (names.ndim != 1 or names.shape[0] != d):
            raise ValueError("feature_names_in_ does not have n_features_in_ entries")

    def _fitted_array(self, name, shape, kind="f"):
        """Attribute ``name`` checked: an ndarray of ``shape`` (None: any length), float32 /
        float64 and finite (kind "f") or integer (kind "i")."""
        a = getattr(self, name)
        if not isinstance(a, np.ndarray):
            raise ValueError(f"{name} is not an array")
        if a.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, a.shape)):
            raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
        if kind == "f" and (a.dtype not in (np.float32, np.float64) or not np.isfinite(a).all()):
            raise ValueError(f"{name} must be finite float32/float64, got {a.dtype}")
        if kind == "i" and a.dtype.kind not in "iu":
            raise ValueError(f"{name} must be integers, got {a.dtype}")
        return a

    def __sklearn_tags__(self):
        # Only scikit-learn's own tooling calls this, so importing it here is free for users.
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(
            estimator_type=self._estimator_type,
            target_tags=TargetTags(required=False),
            input_tags=InputTags(sparse=self._accepts_sparse, allow_nan=self._allows_nan,
                                 positive_only=self._positive_only,
                                 categorical=self._categorical, two_d_array=True),
        )

    # ------------------------------------------------------------------ API-edge checks
    def _validate_params(self):
        validate_params(self.get_params(), self._parameter_constraints, type(self).__name__)

    def _check_is_fitted(self):
        if not self.__sklearn_is_fitted__():
            raise _not_fitted_error_class()(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def _validate_data(self, X, *, reset, copy=False):
        """Check X; on ``reset`` record n_features_in_ / feature_names_in_, else compare."""
        names = _dataframe_feature_names(X)
        owner = type(self).__name__
        if reset:
            if names is not None:
                self.feature_names_in_ = names
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        else:
            self._check_feature_names(names)
        X = self._check_input(X, owner=owner, copy=copy)
        self._check_n_features(X.shape[1], reset)
        return X

    def _check_streamed_features(self, n_features, reset):
        """``_check_n_features`` for data read in pieces (``Chunks``, Dask): no feature
        names reach the model, so a refit forgets the old ones."""
        if reset and hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self._check_n_features(n_features, reset)

    def _check_n_features(self, n_features, reset):
        """On ``reset`` record n_features_in_, else refuse a different count."""
        if reset:
            self.n_features_in_ = n_features
        elif n_features != self.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )

    def _validate_rows(self, X, sample_weight, *, reset, copy=False):
        """``_validate_data`` for fitting: X (an array, a memory map or ``Chunks``) and
        its sample weights as ``fastem._stream.Rows``."""
        from ._stream import Chunks, rows_from
        from .dask import is_dask_array

        owner = type(self).__name__
        if not isinstance(X, Chunks) and not is_dask_array(X):
            mapped = isinstance(X, np.memmap)  # never copied whole
            X = self._validate_data(X, reset=reset, copy=copy and not mapped)
            return rows_from(X, lambda a, name, cp: a, owner=owner, sample_weight=sample_weight,
                             mapped=mapped)

        def check(a, name, cp):  # one piece or block of streamed data
            return self._check_input(a, owner=owner, copy=cp, name=name)

        if is_dask_array(X):
            from .dask import dask_rows

            rows = dask_rows(X, check, owner=owner, sample_weight=sample_weight,
                             backend=resolve_backend(self.backend, self._kernel_family))
        else:
            rows = rows_from(X, check, owner=owner, sample_weight=sample_weight)
        self._check_streamed_features(rows.n_features, reset)
        self._check_rows(rows, reset)
        return rows

    def _check_rows(self, rows, reset):
        """Model-specific checks of streamed data that need every row (a pass)."""

    def _check_input(self, X, *, owner, copy, name="X"):
        """The model's data check (dense, finite, float32/float64 by default)."""
        return check_array(X, name=name, owner=owner, copy=copy)

    def _check_feature_names(self, names):
        import warnings

        fitted = getattr(self, "feature_names_in_", None)
        owner = type(self).__name__
        if fitted is None and names is None:
            return
        if fitted is not None and names is None:
            warnings.warn(
                f"X does not have valid feature names, but {owner} was fitted with feature names",
                UserWarning, stacklevel=3,
            )
            return
        if fitted is None:
            warnings.warn(
                f"X has feature names, but {owner} was fitted without feature names",
                UserWarning, stacklevel=3,
            )
            return
        if len(fitted) == len(names) and np.all(fitted == names):
            return
        unseen = sorted(set(names) - set(fitted))
        missing = sorted(set(fitted) - set(names))
        msg = "The feature names should match those that were passed during fit.\n"
        if unseen:
            msg += "Feature names unseen at fit time:\n" + "".join(f"- {n}\n" for n in unseen)
        if missing:
            msg += "Feature names seen at fit time, yet now missing:\n" + "".join(
                f"- {n}\n" for n in missing)
        if not unseen and not missing:
            msg += "Feature names must be in the same order as they were in fit.\n"
        raise ValueError(msg)

    @property
    def _kernel_family(self):
        """The kernel family this estimator runs on (declared in ``fastem/_families.py``)."""
        from ._families import family_of

        return family_of(type(self))

    def _resolve_runtime(self):
        """(backend name, n_threads) for this call, from the parameters and the config."""
        return (resolve_backend(self.backend, self._kernel_family),
                resolve_n_threads(self.n_threads))

    @staticmethod
    def _kernels(backend, family):
        return get_kernels(backend, family)


class Iteration(NamedTuple):
    """What one EM iteration (``_em_iterate``) tells the engine."""
    #: the lower bound under the parameters *before* this iteration's update (None: the
    #: model has no bound per iteration, as K-means, whose run ends with its inertia)
    bound: Optional[float]
    #: None: converged when the bound changed by less than tol (and nothing was re-seeded)
    converged: Optional[bool] = None
    #: the update re-seeded collapsed components (a jump of the bound is then expected)
    reseeded: bool = False
    #: how far the next bound may fall below this one: what the update gave up of the
    #: expected complete log-likelihood (per unit weight) when it is not that function's
    #: maximizer (GaussianMixture's reg_covar); 0 for an exact M-step
    slack: float = 0.0
    #: the model's own fields for the callback (e.g. K-means' center_shift, n_changed)
    report: dict = {}


class Run(NamedTuple):
    """One finished run of the EM loop (one initialization)."""
    score: float  # higher is better: the final lower bound (K-means: -inertia)
    params: tuple  # the model's parameters (``_get_parameters``)
    n_iter: int
    converged: bool
    bounds: list  # the lower bound of every iteration (empty without per-iteration bounds)


class EMEstimator(FastEMEstimator):
    """The EM engine: one loop for every model (mixtures, K-means, and the models to come).

    The engine owns ``n_init`` (the best run is kept), ``max_iter``, ``tol`` (through
    the convergence test), the convergence monitor (the history of the bound and a
    warning if EM ever makes it decrease), warm starts, the callback, checkpoints, the
    choice of the best run and stepwise EM for ``partial_fit`` (``_stepwise_em``).  The
    data is whatever the model's ``fit`` prepared from memory, a memory map, ``Chunks``
    or a Dask array (``fastem._stream.Rows`` and what is built on it); a model supplies:

    - ``_em_initialize(data, random_state)``: starting parameters of a new run;
    - ``_em_iterate(data) -> Iteration``: one E+M iteration.  By default that is
      ``_summarize(data) -> (bound, stats)``, one fused pass giving the bound under the
      current parameters and the additive float64 sufficient statistics (summed over the
      chunks in chunk order), then ``_from_summaries(data, stats)``, the closed-form
      M-step, which returns whether it re-seeded collapsed components;
    - ``_get_parameters()`` / ``_set_parameters(params)``: the parameters as a tuple of
      arrays (what a run's result and a checkpoint hold);
    - optionally ``_em_begin(data, init, n_done)`` (a run starts or resumes), ``_em_end(data,
      bound, converged) -> score`` (a run ended: its score, higher is better; by default
      its last bound) and ``_em_improves(data, run, best)`` (by default a higher score).

    The callback gets a dict after every iteration: ``init``, ``iteration`` (from 1),
    ``converged``, ``elapsed`` (seconds since the fit started), ``lower_bound`` and
    ``change`` (models with a bound per iteration) and the model's own fields; a true
    return value stops the fit (the best run so far is kept).
    """

    #: Fitted counters that add up over the runs of a fit (kept by checkpoints)
    _em_counters = ()

    def _em_iterate(self, data):
        bound, stats = self._summarize(data)
        return Iteration(bound, reseeded=bool(self._from_summaries(data, stats)))

    def _em_begin(self, data, init, n_done):
        """Run ``init`` starts (or resumes after ``n_done`` iterations) from the current
        parameters."""

    def _em_end(self, data, bound, converged):
        return bound

    def _em_improves(self, data, run, best):
        return run.score > best.score

    def _run_em(self, data, *, n_init, initialize, random_state, callback=None, ckpt=None,
                max_iter=None):
        """Run the loop ``n_init`` times (once from the current parameters when not
        ``initialize``), each for at most ``max_iter`` iterations (default: the
        parameter); returns (the best Run, whether the callback stopped the fit), with
        the best run's parameters set.  ``ckpt``: a ``fastem._checkpoint.Checkpointer``."""
        import time
        import warnings

        from ._checkpoint import Checkpointer

        max_iter = self.max_iter if max_iter is None else max_iter
        if ckpt is None:
            ckpt = Checkpointer(self, data, None)
        state = self._unpack_checkpoint(ckpt.resume(random_state))  # a killed run's state
        best = state["best"] if state else None
        for name in self._em_counters:
            setattr(self, name, state["counters"][name] if state else
                    0 if initialize else getattr(self, name, 0))
        started = time.perf_counter()
        stopped = False
        for init in range(state["init"] if state else 0, n_init):
            if state is not None:  # resuming: parameters and history from the checkpoint
                lower_bound, bounds = state["lower_bound"], list(state["bounds"])
                first_iter, reseeded_last = state["n_iter"] + 1, state["reseeded_last"]
                slack = state.get("slack", 0.0)
                state = None
            else:
                if initialize:
                    self._em_initialize(data, random_state)
                lower_bound = -np.inf if initialize else getattr(self, "lower_bound_", -np.inf)
                bounds, first_iter = [], 1
                reseeded_last = True  # the first change is from -inf (or a warm start)
                slack = 0.0
            self._em_begin(data, init, first_iter - 1)
            converged, n_iter = False, first_iter - 1
            if max_iter == 0:
                lower_bound = self._summarize(data)[0]
                bounds.append(lower_bound)
            for n_iter in range(first_iter, max_iter + 1):
                it = self._em_iterate(data)
                info = dict(init=init, iteration=n_iter)
                converged = it.converged
                if it.bound is not None:
                    previous, lower_bound = lower_bound, it.bound
                    bounds.append(lower_bound)
                    change = lower_bound - previous
                    if (change < -1e-9 * max(1.0, abs(lower_bound)) - slack
                            and not reseeded_last):
                        # EM cannot decrease the lower bound (by more than an inexact
                        # M-step gave up): this is a bug, say so loudly
                        warnings.warn(
                            f"{type(self).__name__}: the lower bound decreased by "
                            f"{-change:.3g} at iteration {n_iter}; EM guarantees it cannot. "
                            "Please report this.", RuntimeWarning, stacklevel=4)
                    if self.verbose and n_iter % self.verbose_interval == 0:
                        print(f"  Iteration {n_iter}\t lower bound change {change:.5g}"
                              if self.verbose >= 2 else f"  Iteration {n_iter}")
                    if converged is None:
                        converged = not it.reseeded and abs(change) < self.tol
                    info.update(lower_bound=float(lower_bound), change=float(change))
                reseeded_last, slack = it.reseeded, it.slack
                if callback is not None and callback(dict(
                        info, **it.report, converged=converged,
                        elapsed=time.perf_counter() - started)):
                    stopped, converged = True, False
                    break
                if converged:
                    break
                if n_iter < max_iter and ckpt.path is not None:  # (packing copies parameters)
                    ckpt.maybe_save(n_iter, *self._pack_checkpoint(
                        init, n_iter, lower_bound, bounds, (reseeded_last, slack), best),
                        random_state)
            run = Run(self._em_end(data, lower_bound, converged), self._get_parameters(),
                      n_iter, converged, bounds)
            if best is None or self._em_improves(data, run, best):
                best = run
            if stopped:
                break
        self._set_parameters(best.params)
        return best, stopped

    # ------------------------------------------------------------------ stepwise EM
    def _stepwise_em(self, data):
        """One step of stepwise (online) EM on the batch ``data``: (the batch's lower bound
        under the parameters before the step, the steps made so far).

        The model keeps a running average of the sufficient statistics per unit weight,
        ``s <- (1 - eta_t) s + eta_t s(batch)``, where ``s(batch)`` are the batch's
        expected statistics under the current parameters (``_summarize``), and sets the
        parameters from ``s`` (``_from_summaries``).  ``eta_t = (learning_offset + t) **
        -learning_decay`` for the t-th step after the first, whose statistics start the
        average (eta = 1); without a running average (a new fit) the count restarts.
        """
        lower_bound, stats = self._summarize(data)
        batch = self._stats_per_weight(stats, data.total_weight)
        running = getattr(self, "_running_stats", None)
        steps = getattr(self, "n_steps_", 0) if running is not None else 0
        if running is None:
            running = batch
        else:
            eta = (self.learning_offset + steps) ** -self.learning_decay
            running = tuple(None if r is None else (1 - eta) * r + eta * b
                            for r, b in zip(running, batch))
        self._running_stats = running
        self._from_summaries(data, self._stats_for_batch(running, data.total_weight))
        return lower_bound, steps + 1

    def _stats_per_weight(self, stats, total_weight):
        """A batch's statistics in the frame the running average keeps, per unit weight."""
        return tuple(np.asarray(s, dtype=np.float64) / total_weight if s is not None else None
                     for s in stats)

    def _stats_for_batch(self, running, total_weight):
        """The running average as the statistics of a batch of ``total_weight`` (what
        ``_from_summaries`` takes)."""
        return tuple(None if s is None else s * total_weight for s in running)

    def _pack_checkpoint(self, init, n_iter, lower_bound, bounds, last, best):
        """(JSON state, arrays function) of the EM loop after iteration ``n_iter``;
        ``last``: (the last update re-seeded, its slack)."""
        def arrays():
            out = {f"cur_{i}": np.asarray(a) for i, a in enumerate(self._get_parameters())}
            if best is not None:
                out.update({f"best_{i}": np.asarray(a) for i, a in enumerate(best.params)})
            return out

        state = {"init": init, "n_iter": n_iter, "lower_bound": float(lower_bound),
                 "bounds": [float(v) for v in bounds], "n_params": len(self._get_parameters()),
                 "reseeded_last": bool(last[0]), "slack": float(last[1]),
                 "counters": {name: int(getattr(self, name)) for name in self._em_counters},
                 "best": None if best is None else {
                     "score": float(best.score), "n_iter": int(best.n_iter),
                     "converged": bool(best.converged), "bounds": [float(v) for v in best.bounds]}}
        return state, arrays

    def _unpack_checkpoint(self, saved):
        """Install a checkpoint's parameters; return the loop state (None: no checkpoint)."""
        if saved is None:
            return None
        state, files = saved
        n = state["n_params"]
        self._set_parameters(tuple(files[f"cur_{i}"] for i in range(n)))
        b = state["best"]
        best = None if b is None else Run(
            b["score"], tuple(files[f"best_{i}"] for i in range(n)), b["n_iter"],
            b["converged"], b["bounds"])
        return dict(state, best=best)


def floored_counts(nk, data):
    """The components' weighted counts plus a floor, so that no weight is exactly zero.

    scikit-learn adds ``10 eps`` to every count.  With sample weights the floor here is
    ``10 eps`` times the mean weight (``10 eps`` for unit weights, as scikit-learn): a
    fixed floor would outweigh counts whose total is below about 1e-14 (the weights
    would all come out equal) and would break the fit's invariance to a common factor
    of the weights.
    """
    return nk + _COUNT_FLOOR * (data.total_weight / data.n_rows)


_COUNT_FLOOR = 10 * np.finfo(np.float64).eps


def _mixture_constraints():
    """The constraints of the parameters every mixture shares (scikit-learn's)."""
    from ._config import BACKENDS

    return {
        "n_components": [Interval(numbers.Integral, 1, None)],
        "tol": [Interval(numbers.Real, 0.0, None)],
        "max_iter": [Interval(numbers.Integral, 0, None)],
        "n_init": [Interval(numbers.Integral, 1, None)],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": [Interval(numbers.Integral, 0, None), "boolean"],
        "verbose_interval": [Interval(numbers.Integral, 1, None)],
        "backend": [None, Options(*BACKENDS)],
        "n_threads": [None, Interval(numbers.Integral, 1, None)],
    }


#: The mixtures' shared parameter constraints, and those of their online EM steps
MIXTURE_CONSTRAINTS = _mixture_constraints()
ONLINE_CONSTRAINTS = {
    "learning_decay": [Interval(numbers.Real, 0.5, 1.0, closed="right")],
    "learning_offset": [Interval(numbers.Real, 0.0, None)],
}


def _label_rows(chunk, indices):
    """Label the chunk's rows among ``indices`` with their position there."""
    inside = np.flatnonzero((indices >= chunk.start) & (indices < chunk.stop))
    chunk.state[0][indices[inside] - chunk.start] = inside



class BaseMixture(EMEstimator):
    """What every mixture model shares, on the EM engine (scikit-learn's semantics).

    One iteration is one fused pass over the data (``_summarize``) that evaluates the
    lower bound under the current parameters and accumulates the sufficient
    statistics, followed by the closed-form update (``_from_summaries``).  The lower
    bound recorded for iteration ``n`` is therefore that of the parameters *before*
    its M-step, exactly as scikit-learn reports it.  This class adds the mixtures'
    attributes (``converged_``, ``lower_bound_``, ``lower_bounds_``, ``n_reseeded_``),
    ``partial_fit`` (stepwise EM on the statistics), the final E-step that makes
    ``fit_predict(X)`` equal ``fit(X).predict(X)`` and the inference methods.

    Subclasses implement ``_fit_data``, ``_check_data``, ``_em_initialize``,
    ``_summarize``, ``_from_summaries``, ``_estimate_log_norm``, ``_estimate_log_prob``,
    ``_get_parameters``, ``_set_parameters`` and ``_n_parameters``.
    """

    _estimator_type = "density_estimator"
    _em_counters = ("n_reseeded_",)
    _fitted_attributes = ("weights_", "converged_", "n_iter_", "lower_bound_", "lower_bounds_",
                          "n_reseeded_", "backend_")

    def _check_fitted_state(self):
        super()._check_fitted_state()
        w = self._fitted_array("weights_", (self.n_components,))
        if (w < 0).any() or abs(float(w.astype(np.float64).sum()) - 1.0) > 1e-5:
            raise ValueError("weights_ must be non-negative and sum to 1")
        if not isinstance(self.n_iter_, int) or self.n_iter_ < 0:
            raise ValueError("n_iter_ must be a non-negative int")
        if not isinstance(self.lower_bounds_, list):
            raise ValueError("lower_bounds_ must be a list of floats")

    def _checked_weights_init(self):
        """``weights_init`` as a validated float64 (n_components,) array, or None."""
        if self.weights_init is None:
            return None
        k = self.n_components
        w = np.asarray(self.weights_init, dtype=np.float64)
        if w.shape != (k,):
            raise ValueError(f"weights_init must have shape ({k},), got {w.shape}.")
        if not np.isfinite(w).all() or (w < 0).any() or not np.isclose(w.sum(), 1.0, rtol=1e-6):
            raise ValueError("weights_init must be finite, non-negative and sum to 1; got "
                             f"sum {w.sum():.6g}.")
        return w

    def _sample_rng(self):
        """The generator of ``sample``: seeded from random_state like every other draw
        (None means fresh entropy)."""
        from ._validation import check_random_state

        return np.random.default_rng(None if self.random_state is None else
                                     check_random_state(self.random_state).randint(2**31))

    @staticmethod
    def _check_n_samples(n_samples):
        import numbers

        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be an int >= 1; got {n_samples!r}.")

    def fit(self, X: Data, y: None = None, sample_weight: Weights = None, *,
            callback: Callback = None, checkpoint: Optional[str] = None, checkpoint_every: int = 10,
            checkpoint_seconds: Optional[float] = None) -> Self:
        """Estimate the parameters with EM; returns self.  See ``fit_predict``."""
        from ._threads import limit_blas_threads

        with limit_blas_threads():
            self._fit_predict(X, sample_weight, callback,
                              (checkpoint, checkpoint_every, checkpoint_seconds), labels=False)
        return self

    def fit_predict(self, X: Data, y: None = None, sample_weight: Weights = None, *,
                    callback: Callback = None, checkpoint: Optional[str] = None,
                    checkpoint_every: int = 10,
                    checkpoint_seconds: Optional[float] = None) -> Labels:
        """Fit with EM (best of ``n_init`` runs) and return the most probable component
        of each sample under the fitted model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; an integer weight acts as that many repeated rows.
        callback : callable, default=None
            Called after every EM iteration with a dict: ``init``, ``iteration``,
            ``lower_bound``, ``change``, ``converged``, ``elapsed`` (seconds since fit
            started).  A true return value stops the fit there (``converged_`` stays
            False and the best run so far is kept).
        checkpoint : path, default=None
            Write the fit's state there every ``checkpoint_every`` iterations and/or every
            ``checkpoint_seconds`` seconds.  If the file exists when the fit starts (a
            killed job restarted with the same command), the fit resumes from it and ends
            with the same model as an uninterrupted run.  The file is removed when the fit
            completes.  See ``fastem/_checkpoint.py``.
        """
        from ._threads import limit_blas_threads
        from .dask import is_dask_array

        with limit_blas_threads():
            labels = self._fit_predict(X, sample_weight, callback,
                                       (checkpoint, checkpoint_every, checkpoint_seconds),
                                       labels=not is_dask_array(X))
        # on a Dask array, the final E-step is predict's, lazily on the workers (the labels
        # of every row come from the same kernel, whatever the chunks)
        return self.predict(X) if labels is None else labels

    def _fit_predict(self, X, sample_weight, callback=None, checkpointing=(None, 10, None),
                     labels=True):
        import warnings

        from ._checkpoint import Checkpointer
        from ._validation import check_random_state
        from .exceptions import ConvergenceWarning

        self._validate_params()
        initialize = not (self.warm_start and hasattr(self, "converged_"))
        data = self._fit_input(X, sample_weight, initialize, "")
        ckpt = Checkpointer(self, data, *checkpointing)
        best, stopped = self._run_em(
            data, n_init=self.n_init if initialize else 1, initialize=initialize,
            random_state=check_random_state(self.random_state), callback=callback, ckpt=ckpt)
        if not best.converged and self.max_iter > 0 and not stopped:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning, stacklevel=3)
        self.n_iter_ = best.n_iter
        self.converged_ = best.converged
        self.lower_bound_ = float(best.score)
        self.lower_bounds_ = [float(b) for b in best.bounds]
        self.backend_ = self._runtime[0]
        ckpt.finish()
        # Final E-step: labels consistent with the fitted parameters (fit_predict only).
        return self._fit_labels(data) if labels else None

    def _initial_labels(self, rows, random_state):
        """Hard initial assignment (-1: no component), as per-row state of ``rows``, for
        every ``init_params`` but "random", with scikit-learn's draws; None for "random"."""
        n_samples, k = rows.n_rows, self.n_components
        if self.init_params == "random":
            return None
        if self.init_params == "kmeans":
            from .kmeans import kmeans_labels

            return kmeans_labels(rows, k, random_state, *self._runtime)
        if self.init_params == "k-means++":
            from .kmeans import _kmeans_plusplus

            _, indices = _kmeans_plusplus(rows, k, random_state, None,
                                          self._kernels(self._runtime[0], "kmeans"),
                                          self._runtime[1])
        else:
            indices = random_state.choice(n_samples, size=k, replace=False)
        labels = rows.new_state(-1, np.int32)
        for _ in rows.map(_label_rows, indices, state=(labels,)):
            pass
        return labels

    def _em_begin(self, data, init, n_done):
        if self.verbose:
            print(f"Initialization {init}")

    def _em_end(self, data, bound, converged):
        if self.verbose:
            print(f"Initialization {'converged' if converged else 'did not converge'}. "
                  f"lower bound {bound:.5g}")
        return bound

    def _fit_input(self, X, sample_weight, initialize, context):
        """The data of a fit, validated (see ``_fit_data``), with the backend resolved; a
        model to initialize needs n_components samples."""
        rows = self._validate_rows(X, sample_weight, reset=initialize)
        if initialize and rows.distributed and self.init_params == "random":
            raise ValueError("init_params='random' draws every row's responsibilities in the "
                             "client, which a fit on a Dask array does not do; use "
                             "'random_from_data', 'kmeans' (or, for GaussianMixture, "
                             "'k-means++').")
        if initialize and rows.n_rows < self.n_components:
            raise ValueError(
                f"Expected n_samples >= n_components{context} but got n_components = "
                f"{self.n_components}, n_samples = {rows.n_rows}")
        data = self._fit_data(rows)
        self._runtime = self._resolve_runtime()
        return data

    def _fit_labels(self, data):
        return self._estimate_log_norm(data)[1]

    # ------------------------------------------------------------------ online EM
    def partial_fit(self, X: Data, y: None = None, sample_weight: Weights = None) -> Self:
        """One step of online (stepwise) EM on a batch of samples; returns self.

        The model keeps a running average of the sufficient statistics per unit weight,
        ``s <- (1 - eta_t) s + eta_t s(batch)``, where ``s(batch)`` are the batch's
        expected statistics under the current parameters (its E-step), and sets the
        parameters from ``s`` (the M-step).  The step size decays as
        ``eta_t = (learning_offset + t) ** -learning_decay`` (t = 1, 2, ... counts the
        steps after the first), which satisfies the conditions under which online EM
        converges (Cappe & Moulines 2009: sum eta_t = inf, sum eta_t^2 < inf for a decay
        in (0.5, 1]).  The first call initializes the parameters from its batch (with
        ``init_params``, as ``fit`` does) unless the model is already fitted, and its
        statistics replace the running average (eta = 1).

        Attributes set: the parameters, ``n_steps_`` (batches seen), ``lower_bound_``
        (the mean log-likelihood of the latest batch before its update: a noisy,
        per-batch figure), ``n_iter_`` (= ``n_steps_``), ``converged_`` (always False: a
        stream has no end to converge to).
        """
        from ._threads import limit_blas_threads
        from ._validation import check_random_state
        from .dask import is_dask_array, partial_fit_blocks

        if is_dask_array(X):  # its blocks are the batches
            return partial_fit_blocks(self, X, sample_weight)
        self._validate_params()
        fitted = hasattr(self, "converged_")
        data = self._fit_input(X, sample_weight, not fitted, " in the first batch of partial_fit")
        backend = self._runtime[0]
        with limit_blas_threads():
            if not fitted:
                self.n_reseeded_ = 0
                self._em_initialize(data, check_random_state(self.random_state))
            lower_bound, self.n_steps_ = self._stepwise_em(data)
        self.n_iter_ = self.n_steps_
        self.lower_bound_ = float(lower_bound)
        self.lower_bounds_ = [self.lower_bound_]
        self.converged_ = False
        self.backend_ = backend
        return self

    # ------------------------------------------------------------------ inference
    def _predict_input(self, X):
        self._check_is_fitted()
        X = self._validate_data(X, reset=False)
        X = self._check_data(X)
        self._runtime = self._resolve_runtime()
        return X

    @lazy_on_dask(np.float64)
    def score_samples(self, X: Data) -> Floats:
        """Log-likelihood ``log p(x)`` of each sample under the model."""
        return self._estimate_log_norm(self._predict_input(X))[0]

    def score(self, X: Data, y: None = None, sample_weight: Weights = None) -> float:
        """Mean (weighted) log-likelihood of X under the model."""
        from ._validation import check_sample_weight

        log_norm = self.score_samples(X)
        if not isinstance(log_norm, np.ndarray):  # a Dask array: the mean, computed there
            log_norm = log_norm.compute()
        w = check_sample_weight(sample_weight, log_norm.shape[0], owner=type(self).__name__)
        return float(np.dot(w, log_norm) / w.sum())

    @lazy_on_dask(np.int32)
    def predict(self, X: Data) -> Labels:
        """Most probable component of each sample (int32)."""
        return self._estimate_log_norm(self._predict_input(X))[1]

    @lazy_on_dask(np.float64, lambda est: est.n_components)
    def predict_proba(self, X: Data) -> Floats:
        """Posterior probability of each component for each sample, (n_samples, n_components)."""
        from .kernels.reference.gaussian_mixture import logsumexp_rows

        log_prob = self._estimate_log_prob(self._predict_input(X))
        norm = logsumexp_rows(log_prob)
        with np.errstate(invalid="ignore"):
            resp = np.exp(log_prob - norm[:, None])
        resp[~np.isfinite(norm)] = 0.0
        return resp

    def bic(self, X: Data) -> float:
        """Bayesian information criterion (lower is better)."""
        X_checked = self._predict_input(X)
        n = X_checked.shape[0]
        return float(-2 * self._estimate_log_norm(X_checked)[0].sum() + self._n_parameters()
                     * np.log(n))

    def aic(self, X: Data) -> float:
        """Akaike information criterion (lower is better)."""
        X_checked = self._predict_input(X)
        return float(-2 * self._estimate_log_norm(X_checked)[0].sum() + 2 * self._n_parameters())
