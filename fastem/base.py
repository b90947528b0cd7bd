"""Estimator plumbing shared by every fastem model.

``FastEMEstimator`` gives scikit-learn's estimator protocol (``get_params`` /
``set_params`` / ``clone`` / repr / tags) without importing scikit-learn at run time,
plus the input checks every model needs at its API edge: parameter validation from
the class's declarative ``_parameter_constraints`` table, feature-count and
feature-name consistency between ``fit`` and later calls, and backend/thread
resolution.
"""

import inspect
import sys

import numpy as np

from ._dispatch import get_kernels, resolve_backend
from ._threads import resolve_n_threads
from ._validation import (
    NotFittedError,
    _dataframe_feature_names,
    check_array,
    validate_params,
)


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


class FastEMEstimator:
    """Base class: scikit-learn's estimator protocol and fastem's API-edge checks."""

    _parameter_constraints: dict = {}
    _estimator_type = None

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
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_is_fitted__(self):
        return hasattr(self, "n_features_in_")

    def __sklearn_tags__(self):
        # Only scikit-learn's own tooling calls this, so importing it here is free for users.
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(
            estimator_type=self._estimator_type,
            target_tags=TargetTags(required=False),
            input_tags=InputTags(sparse=False, allow_nan=False, two_d_array=True),
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
        X = check_array(X, owner=owner, copy=copy)
        if reset:
            self.n_features_in_ = X.shape[1]
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {owner} is expecting {self.n_features_in_} "
                "features as input."
            )
        return X

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

    def _resolve_runtime(self):
        """(backend name, n_threads) for this call, from the parameters and the config."""
        return resolve_backend(self.backend), resolve_n_threads(self.n_threads)

    @staticmethod
    def _kernels(backend, family):
        return get_kernels(backend, family)
