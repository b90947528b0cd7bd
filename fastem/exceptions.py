"""Warnings and errors raised by fastem."""

from ._dispatch import BackendFallbackWarning
from ._validation import InvalidParameterError, NotFittedError


class ConvergenceWarning(UserWarning):
    """A fit stopped before converging, or found fewer distinct clusters than asked for."""


__all__ = ["BackendFallbackWarning", "ConvergenceWarning", "InvalidParameterError", "NotFittedError"]
