"""Input and parameter checks: the only place fastem validates anything.

Everything that reaches a kernel has passed through here: C-contiguous float32 or
float64 data without NaN/inf, of a magnitude whose squared distances cannot
overflow, and sample weights that are finite, non-negative and not all zero.
Errors name the parameter and say what to do.
"""

import numbers

import numpy as np

#: The values of every ``backend`` parameter and setting.
BACKENDS = ("auto", "numba", "cython", "numpy")


class InvalidParameterError(ValueError, TypeError):
    """A constructor parameter has a bad value or type (a ValueError and a TypeError)."""


class NotFittedError(ValueError, AttributeError):
    """The estimator is used before ``fit``."""


# ----------------------------------------------------------------- parameter constraints
class Interval:
    """Numbers of a given kind in [left, right] (either end may be None = unbounded)."""

    def __init__(self, kind, left, right, closed="both"):
        self.kind, self.left, self.right, self.closed = kind, left, right, closed

    def is_satisfied_by(self, value):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, self.kind):
            return False
        if isinstance(value, numbers.Real) and not np.isfinite(value):
            return False
        lo_ok = self.left is None or (
            value >= self.left if self.closed in ("both", "left") else value > self.left
        )
        hi_ok = self.right is None or (
            value <= self.right if self.closed in ("both", "right") else value < self.right
        )
        return lo_ok and hi_ok

    def __str__(self):
        kind = "an int" if self.kind is numbers.Integral else "a float"
        lo = "-inf" if self.left is None else self.left
        hi = "inf" if self.right is None else self.right
        lb = "[" if self.closed in ("both", "left") and self.left is not None else "("
        rb = "]" if self.closed in ("both", "right") and self.right is not None else ")"
        return f"{kind} in the range {lb}{lo}, {hi}{rb}"


class Options:
    """One of a fixed set of strings."""

    def __init__(self, *options):
        self.options = options

    def is_satisfied_by(self, value):
        return isinstance(value, str) and value in self.options

    def __str__(self):
        return "a str among " + ", ".join(repr(o) for o in self.options)


def _satisfies(value, constraint):
    if constraint is None:
        return value is None
    if constraint == "boolean":
        return isinstance(value, (bool, np.bool_))
    if constraint == "callable":
        return callable(value)
    if constraint == "str":
        return isinstance(value, str)
    if constraint == "array-like":
        return isinstance(value, np.ndarray) or (
            hasattr(value, "__array__") or isinstance(value, (list, tuple))
        ) and not isinstance(value, str)
    if constraint == "random_state":
        return (
            value is None
            or isinstance(value, np.random.RandomState)
            or (isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
                and 0 <= value < 2**32)
        )
    return constraint.is_satisfied_by(value)


def _describe(constraint):
    return {
        None: "None",
        "boolean": "a bool",
        "callable": "a callable",
        "str": "a str",
        "array-like": "an array-like",
        "random_state": "None, an int in [0, 2**32 - 1] or a numpy RandomState",
    }.get(constraint, None) if not hasattr(constraint, "is_satisfied_by") else str(constraint)


def validate_params(params, constraints, owner):
    """Check every parameter against its list of allowed constraints (declarative table)."""
    for name, allowed in constraints.items():
        value = params[name]
        if any(_satisfies(value, c) for c in allowed):
            continue
        choices = [_describe(c) for c in allowed]
        expected = choices[0] if len(choices) == 1 else ", ".join(choices[:-1]) + " or " + choices[-1]
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be {expected}. Got {value!r} instead."
        )


def check_backend_name(backend, name="backend"):
    if isinstance(backend, str) and backend.strip().lower() in BACKENDS:
        return backend.strip().lower()
    raise InvalidParameterError(f"{name} must be one of {BACKENDS}; got {backend!r}.")


def check_chunk_bytes(chunk_bytes):
    if isinstance(chunk_bytes, numbers.Integral) and not isinstance(
            chunk_bytes, (bool, np.bool_)) and chunk_bytes >= 1:
        return int(chunk_bytes)
    raise ValueError(f"chunk_bytes must be an int >= 1; got {chunk_bytes!r}.")


def check_n_threads(n_threads, name="n_threads"):
    if (
        isinstance(n_threads, numbers.Integral)
        and not isinstance(n_threads, (bool, np.bool_))
        and n_threads >= 1
    ):
        return int(n_threads)
    raise InvalidParameterError(
        f"{name} must be None or an int >= 1 (the number of threads); got {n_threads!r}."
    )


def check_random_state(seed):
    """Turn ``random_state`` into a numpy ``RandomState`` (scikit-learn's semantics)."""
    if seed is None:
        return np.random.mtrand._rand
    if isinstance(seed, np.random.RandomState):
        return seed
    return np.random.RandomState(seed)


# --------------------------------------------------------------------------- arrays
def _is_sparse(X):
    return hasattr(X, "tocsr") and hasattr(X, "nnz") or type(X).__module__.startswith("scipy.sparse")


def _is_dataframe(X):
    """A pandas or polars DataFrame (or another with the dataframe interchange protocol)."""
    return getattr(X, "columns", None) is not None and (
        hasattr(X, "iloc") or hasattr(X, "__dataframe__")
        or type(X).__module__.startswith("polars"))


def _dataframe_feature_names(X):
    """Column names of a DataFrame-like X (pandas, polars) if they are all strings, else
    None."""
    if not _is_dataframe(X):
        return None
    columns = X.columns
    names = np.asarray(list(columns), dtype=object)
    types = {type(n) for n in names}
    if types and all(issubclass(t, str) for t in types):
        return names
    if any(issubclass(t, str) for t in types):
        raise TypeError(
            "Feature names are only supported if all input features have string names, but "
            f"your input has {sorted(t.__name__ for t in types)} as feature name / column name "
            "types. Convert all column names to strings, e.g. X.columns = X.columns.astype(str)."
        )
    return None


def row_blocks(n_rows, n_features, elements=2**16):
    """(start, stop) row ranges of about ``elements`` entries each (at least one row).

    Whole-array checks and conversions allocate temporaries as large as the data; done
    block by block they stay at a fixed, small size whatever N is."""
    step = max(1, elements // max(1, n_features))
    for start in range(0, n_rows, step):
        yield start, min(start + step, n_rows)


def check_csr(X, *, name="X", owner="this estimator", copy=False):
    """Validate a scipy.sparse matrix and return it as canonical CSR: float32 data stays
    float32, other numbers become float64; indices sorted within each row, duplicates
    summed, finite values; ``indices`` and ``indptr`` of one integer type.  The kernels
    on CSR rows rely on all of it.  Another sparse format is converted; the matrix is
    never densified (and copied only when it must change or ``copy`` asks)."""
    import scipy.sparse as sp

    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D sparse matrix for {name}, got {X.ndim} dimensions.")
    csr = X.tocsr()
    if csr.shape[0] < 1 or csr.shape[1] < 1:
        raise ValueError(f"Found a sparse {name} of shape {csr.shape} while {owner} needs at "
                         "least one sample and one feature.")
    try:
        csr.check_format(full_check=True)  # indices in range, indptr monotone
    except ValueError as exc:
        raise ValueError(f"{name} is not a valid CSR matrix: {exc}") from exc
    data = csr.data
    if data.dtype.kind not in "biuf":
        raise TypeError(f"{name} must contain numbers; got dtype {data.dtype}.")
    if data.dtype not in (np.float32, np.float64):
        data = data.astype(np.float64)
    if not all(np.isfinite(data[a:b]).all() for a, b in row_blocks(data.size, 1, 2**20)):
        raise ValueError(f"Input {name} contains NaN or infinity.")
    index = np.result_type(csr.indices.dtype, csr.indptr.dtype)
    out = sp.csr_matrix((data, csr.indices.astype(index, copy=False),
                         csr.indptr.astype(index, copy=False)), shape=csr.shape)
    if copy or not out.has_canonical_format:
        out = out.copy()  # the caller's matrix is never changed
        out.sum_duplicates()  # sorts the indices too
    return out


def check_array_or_csr(X, *, name="X", owner="this estimator", copy=False):
    """``check_csr`` for a scipy.sparse X, else ``check_array``."""
    if _is_sparse(X):
        return check_csr(X, name=name, owner=owner, copy=copy)
    return check_array(X, name=name, owner=owner, copy=copy)


def check_array(X, *, name="X", owner="this estimator", dtype="numeric", min_samples=1,
                copy=False, allow_nan=False):
    """Validate a 2-D data array and return it C-contiguous, finite, float32 or float64.

    float32 stays float32 and float64 stays float64; every other numeric type (ints,
    bools, float16, ...) becomes float64.  Fortran-ordered and strided inputs are
    accepted and copied to C order.  With ``allow_nan``, NaN entries (missing values)
    pass; infinities never do.
    """
    if _is_sparse(X):
        raise TypeError(
            f"Sparse input is not supported by {owner}: {name} is a {type(X).__name__}. "
            f"Pass a dense array instead, e.g. {name}.toarray(), if it fits in memory."
        )
    if isinstance(X, (str, bytes)) or X is None:
        raise TypeError(f"{name} must be a 2-D array-like of numbers; got {type(X).__name__}.")
    if hasattr(X, "iloc") and hasattr(X, "to_numpy") and any(
            not isinstance(t, np.dtype) for t in getattr(X, "dtypes", ())):
        # pandas' nullable columns (Int64, Float64, boolean) hold pd.NA, which numpy cannot
        # turn into a number: missing entries become NaN, checked below like any NaN
        try:
            X = X.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must contain numbers: {exc}") from exc
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be converted to a 2-D numeric array: {exc}") from exc
    if np.iscomplexobj(arr):
        raise ValueError(f"Complex data not supported: {name} has dtype {arr.dtype}.")
    if arr.dtype.kind in "OUSV" or arr.dtype.kind == "M" or arr.dtype.kind == "m":
        if arr.dtype.kind == "O":
            arr = arr.astype(np.float64)  # raises TypeError for non-numbers, as numpy does
        else:
            raise TypeError(
                f"{name} must contain numbers; got dtype {arr.dtype}. Encode strings, dates and "
                "categories as numbers first."
            )
    if arr.ndim != 2:
        if arr.ndim <= 1:
            raise ValueError(
                f"Expected 2D array for {name}, got {'scalar' if arr.ndim == 0 else '1D'} array "
                "instead. Reshape your data either using array.reshape(-1, 1) if your data has a "
                "single feature or array.reshape(1, -1) if it contains a single sample."
            )
        raise ValueError(f"Expected 2D array for {name}, got a {arr.ndim}-D array with shape "
                         f"{arr.shape}. Reshape it to (n_samples, n_features).")
    if arr.shape[0] < min_samples:
        raise ValueError(
            f"Found array with {arr.shape[0]} sample(s) (shape={arr.shape}) while a minimum of "
            f"{min_samples} is required by {owner}: {name} is empty."
        )
    if arr.shape[1] < 1:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required "
            f"by {owner}."
        )
    target = arr.dtype if arr.dtype in (np.float32, np.float64) else np.float64
    if dtype is not None and dtype != "numeric":
        target = np.dtype(dtype)
    out = np.require(arr, dtype=target, requirements="C")
    if copy and np.may_share_memory(out, arr):
        out = out.copy()
    # row blocks bound the boolean temporaries (a full-size one is N x D bytes)
    chunks = [out[a:b] for a, b in row_blocks(*out.shape)]
    if allow_nan and out.dtype.kind == "f":
        if any(np.isinf(c).any() for c in chunks):
            raise ValueError(f"Input {name} contains infinity; only NaN (a missing entry) is "
                             "allowed.")
    elif not all(np.isfinite(c).all() for c in chunks):
        kind = "NaN" if any(np.isnan(c).any() for c in chunks) else "infinity"
        raise ValueError(
            f"Input {name} contains {kind} (NaN or inf values are not allowed). Remove or impute "
            "those entries before calling fastem."
        )
    return out


def check_magnitude(X, sample_weight=None, name="X", also=None, per_row=False):
    """Refuse data whose squared distances (or weighted sums of them) would overflow.

    K-means works with ``||x - c||^2 <= 4 * n_features * max|x - mean|^2``; the
    assignment computes ``||x||^2 + ||c||^2`` in X's dtype and the inertia sums
    ``w * d^2`` in float64.  Both must stay finite, with headroom.  ``also`` (rows of
    the same width, e.g. centers) is checked as if stacked under X (unit weights),
    without copying X.  ``per_row`` checks only what each row needs on its own (labels,
    distances, per-sample log-likelihoods: no sum over rows), which every X a fit
    accepted passes whatever its weights.
    """
    arrays = [a for a in (X, also) if a is not None and a.size]
    if not arrays:
        return
    # Rounding errors of centering and of the expansion scale with |x|, not with the
    # spread of the data, so bound the largest magnitude.
    span = max(max(abs(float(a.max())), abs(float(a.min()))) for a in arrays)  # no |X| copy
    if per_row:
        total_w = 1.0
    else:
        total_w = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
        if also is not None:
            total_w += also.shape[0]
    message = magnitude_error(span, X.shape[1], X.dtype, total_w, name)
    if message:
        raise ValueError(message)


def magnitude_error(span, n_features, dtype, total_weight, name="X"):
    """The error message of ``check_magnitude`` for data of largest magnitude ``span``,
    or None if squared distances are safe.

    Each row's own squared distance must stay below 1e300 whatever the weights (so
    predicting on the data a fit accepted never fails); the weighted sum of them too."""
    worst_sq = 4.0 * n_features * span * span
    dtype_max = float(np.finfo(dtype).max)
    if not np.isfinite(worst_sq) or worst_sq > min(dtype_max / 16, 1e300):
        return (
            f"{name} has values too large in magnitude (max |value| {span:.3g}) for squared "
            f"distances in {np.dtype(dtype)} and their float64 sums: they would overflow. "
            f"Rescale {name}, e.g. divide by its standard deviation"
            f"{'' if np.dtype(dtype) == np.float64 else ', or use float64'}.")
    if worst_sq * total_weight > 1e300:
        return (
            f"{name}'s squared distances (up to {worst_sq:.3g}) weighted by sample_weight "
            f"(total {total_weight:.3g}) would overflow float64. Rescale sample_weight (a "
            "K-means or Gaussian-mixture fit depends on it only up to a common factor), e.g. "
            f"divide it by its maximum, or rescale {name}.")
    return None


def check_enough_samples(n_samples, n_positive, n_clusters):
    """A clustering of ``n_clusters`` needs as many samples, each cluster one of positive
    weight (``n_positive``: the samples of positive weight)."""
    if n_samples < n_clusters:
        raise ValueError(f"n_samples={n_samples} should be >= n_clusters={n_clusters}.")
    if n_positive < n_clusters:
        raise ValueError(
            f"sample_weight has only {n_positive} positive entries but n_clusters={n_clusters}; "
            "each cluster needs a sample of positive weight.")


#: The range of a fit's total sample weight: the float64 sums it weights (statistics up
#: to about 1e8 a row, log-likelihoods, squared distances checked by ``magnitude_error``)
#: stay finite above it and keep their precision (no subnormals) below it.
MAX_TOTAL_WEIGHT = 1e300
MIN_TOTAL_WEIGHT = 1e-290


def check_sample_weight(sample_weight, n_samples, *, owner="this estimator"):
    """Return ``sample_weight`` as a float64 array of shape (n_samples,), validated.

    None means all ones; a scalar is broadcast.  Weights must be finite and
    non-negative with a positive sum.
    """
    if sample_weight is None:
        return np.ones(n_samples, dtype=np.float64)
    if _is_sparse(sample_weight):
        raise TypeError("sample_weight must be a dense 1-D array, not a sparse matrix.")
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"sample_weight must be numeric: {exc}") from exc
    if w.ndim == 0:
        w = np.full(n_samples, float(w), dtype=np.float64)
    if w.ndim != 1:
        raise ValueError(f"sample_weight must be 1-D; got shape {w.shape}.")
    if w.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight has {w.shape[0]} entries but X has {n_samples} samples; pass one "
            "weight per sample (sample_weight.shape == (n_samples,))."
        )
    if not np.isfinite(w).all():
        raise ValueError("sample_weight contains NaN or infinity; weights must be finite.")
    if (w < 0).any():
        raise ValueError("sample_weight contains negative values; weights must be >= 0.")
    with np.errstate(over="ignore"):  # an overflowing total is reported below
        total = float(w.sum())
    if not total > 0:
        raise ValueError("sample_weight sums to zero; at least one sample needs a positive weight.")
    if not total <= MAX_TOTAL_WEIGHT or not total >= MIN_TOTAL_WEIGHT:
        raise ValueError(
            f"sample_weight sums to {total:.3g}: the weighted sums of a fit would "
            f"{'overflow' if not total <= MAX_TOTAL_WEIGHT else 'underflow'} in float64 "
            f"(the total must lie in [{MIN_TOTAL_WEIGHT:g}, {MAX_TOTAL_WEIGHT:g}]). Rescale "
            "them, e.g. sample_weight / sample_weight.max() (K-means and Gaussian mixtures "
            "depend on the weights only up to a common factor).")
    return np.ascontiguousarray(w)
