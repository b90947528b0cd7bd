"""What scikit-learn's tooling asks of an estimator beyond get_params / set_params:
metadata routing requests, ``set_output``, the HTML repr of notebooks and versioned
pickles.  scikit-learn is imported only when its own tooling calls in (it is not a
dependency of fastem)."""

from __future__ import annotations

import inspect
import sys
import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from typing import Optional

    from typing_extensions import Self


class InconsistentVersionWarning(UserWarning):
    """A pickled fastem estimator is loaded by another fastem version: its behaviour and
    fitted state are not guaranteed to carry over (``save`` / ``fastem.load`` files are
    versioned and checked instead)."""


_UNCHANGED = "$UNCHANGED$"  # scikit-learn's sentinel value for "leave this request as is"


class _Requests(dict):
    """{method: {"sample_weight": request}}, as an estimator's ``_metadata_request``
    (which scikit-learn's ``clone`` carries over by cloning it)."""

    def __sklearn_clone__(self):
        return _Requests({method: dict(r) for method, r in self.items()})


class _RequestSetter:
    """``set_fit_request``, ``set_partial_fit_request``, ``set_score_request``: present
    on a class only when that method takes ``sample_weight`` (as scikit-learn generates
    them), each recording how metadata routing should pass ``sample_weight`` to it."""

    def __init__(self, method):
        self.method = method

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner):
        method = getattr(owner, self.method, None)
        if method is None or "sample_weight" not in inspect.signature(method).parameters:
            raise AttributeError(f"{owner.__name__}.{self.method} takes no sample_weight")
        if instance is None:
            return self

        def set_request(*, sample_weight=_UNCHANGED):
            if isinstance(sample_weight, str) and sample_weight == _UNCHANGED:
                return instance
            if not (sample_weight is None or isinstance(sample_weight, (bool, str))):
                raise TypeError("sample_weight must be True, False, None or an alias (str)")
            instance.__dict__.setdefault("_metadata_request", _Requests()).setdefault(
                self.method, {})["sample_weight"] = sample_weight
            return instance

        set_request.__name__ = self.name
        set_request.__doc__ = (f"Request ``sample_weight`` for ``{self.method}`` when "
                               "scikit-learn's metadata routing is enabled; returns self.")
        return set_request


class ToolingMixin:
    """Metadata routing, ``set_output``, HTML repr and versioned pickles."""

    set_fit_request = _RequestSetter("fit")
    set_partial_fit_request = _RequestSetter("partial_fit")
    set_score_request = _RequestSetter("score")

    # ------------------------------------------------------------------ metadata routing
    def get_metadata_routing(self):
        """scikit-learn's ``MetadataRequest``: which methods consume ``sample_weight``
        and how (as set by ``set_*_request``; unset means an error if it is passed)."""
        from sklearn.utils.metadata_routing import MetadataRequest

        request = MetadataRequest(owner=type(self).__name__)
        chosen = self.__dict__.get("_metadata_request", {})
        for method in ("fit", "partial_fit", "score"):
            func = getattr(type(self), method, None)
            if func is not None and "sample_weight" in inspect.signature(func).parameters:
                getattr(request, method).add_request(
                    param="sample_weight", alias=chosen.get(method, {}).get("sample_weight"))
        return request

    # ------------------------------------------------------------------ set_output
    def set_output(self, *, transform: Optional[str] = None) -> Self:
        """Output container of ``transform`` / ``fit_transform``: "default" (numpy),
        "pandas" or "polars" (columns named by ``get_feature_names_out``); None leaves
        it as it is.  Returns self."""
        if transform is not None:
            if transform not in ("default", "pandas", "polars"):
                raise ValueError(f"transform must be 'default', 'pandas', 'polars' or None; "
                                 f"got {transform!r}")
            self._sklearn_output_config = {"transform": transform}
        return self

    def _wrap_output(self, out, X):
        """``out`` in the container ``set_output`` (else scikit-learn's global
        ``transform_output`` setting) asks for, indexed like a pandas X."""
        container = getattr(self, "_sklearn_output_config", {}).get("transform")
        if container is None:
            config = sys.modules.get("sklearn._config")
            container = config.get_config()["transform_output"] if config else "default"
        if container == "default" or not isinstance(out, np.ndarray):
            return out
        columns = list(self.get_feature_names_out())
        if container == "pandas":
            import pandas as pd

            index = X.index if isinstance(X, pd.DataFrame) else None
            return pd.DataFrame(out, index=index, columns=columns)
        import polars as pl

        return pl.DataFrame(out, schema=columns)

    # ------------------------------------------------------------------ notebooks
    def _repr_html_(self):
        """scikit-learn's HTML diagram of the estimator when scikit-learn is installed,
        else its repr (escaped)."""
        try:
            from sklearn.utils import estimator_html_repr
        except ImportError:
            import html

            return f"<pre>{html.escape(repr(self))}</pre>"
        return estimator_html_repr(self)

    def _repr_mimebundle_(self, **kwargs):
        return {"text/plain": repr(self), "text/html": self._repr_html_()}

    # ------------------------------------------------------------------ pickles
    def __getstate__(self):
        from . import __version__

        state = dict(self.__dict__)
        state["_fastem_version"] = __version__
        return state

    def __setstate__(self, state):
        from . import __version__

        version = state.pop("_fastem_version", "pre-0.1")
        if version != __version__:
            warnings.warn(
                f"Trying to unpickle estimator {type(self).__name__} from fastem version "
                f"{version} when using version {__version__}. This might lead to breaking "
                "code or invalid results. Use at your own risk; fastem's model files "
                "(est.save / fastem.load) are versioned and validated instead.",
                InconsistentVersionWarning, stacklevel=2)
        self.__dict__.update(state)


def short_repr(value):
    """repr of a parameter value, arrays abbreviated as numpy does past a few items (the
    repr of an estimator with a 1,000 x 16 ``means_init`` stays one short line)."""
    if isinstance(value, np.ndarray):
        with np.printoptions(threshold=6, edgeitems=2):
            return " ".join(repr(value).split())
    return repr(value)
