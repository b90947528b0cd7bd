"""Type aliases of the public API, for type checkers only (fastem ships ``py.typed``).

Every module that uses them imports them under ``typing.TYPE_CHECKING`` and has
``from __future__ import annotations``, so nothing here is imported at run time.
"""

import os
from typing import Any, Callable, Mapping, Optional, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import spmatrix, sparray

from ._stream import Chunks

#: What ``fit`` takes: an array-like (numpy, pandas, polars, a memory map), a
#: scipy.sparse matrix (where the model accepts one), ``fastem.Chunks`` or a Dask array
Data = Union[ArrayLike, spmatrix, sparray, Chunks, Any]
#: Per-sample weights: an array-like of n_samples non-negative numbers, or None
Weights = Optional[ArrayLike]
#: ``fit``'s callback: gets the iteration's dict, returns true to stop the fit
Callback = Optional[Callable[[Mapping[str, Any]], Any]]
#: A file path or a binary file object (model files)
PathOrFile = Union[str, "os.PathLike[str]", Any]
Labels = NDArray[np.int32]
Floats = NDArray[np.floating]

__all__ = ["ArrayLike", "Callback", "Data", "Floats", "Labels", "NDArray", "PathOrFile",
           "Weights"]
