"""The ``fastem`` command: ``fit``, ``predict``, ``info``, ``warmup``.

    fastem fit [MODEL] [DATA] [-k K] [model options] [-o MODEL_FILE] [--json]
    fastem predict MODEL_FILE DATA -o OUT [--proba] [--json]
    fastem info [MODEL_FILE] [--json]
    fastem warmup [--json]

MODEL is kmeans (the default), minibatch (MiniBatchKMeans), gmm, bernoulli, multinomial
or categorical.  DATA is a
``.npy`` array (memory-mapped), a ``.csv`` file of numbers (an optional header row is
used as feature names and stored in the model, which ``predict`` then checks; quoted
numbers; ``nan`` or an empty field marks a missing entry), a ``.parquet`` file of numeric
columns (with the ``parquet`` extra; read in batches, float32 kept), a ``.npz`` sparse matrix written by
``scipy.sparse.save_npz``, or a directory / glob of chunk files of one such format
(read one file at a time, in sorted order; sparse chunks are stacked); with no DATA, ``fit`` runs on the bundled iris
data.  Human output goes to stdout; errors go to stderr with exit code 2 and say what
to fix (1 is left for anything unexpected).  Every file written is written atomically.
"""

import argparse
import json
import os
import sys
import time
import warnings

from ._families import CLI_NAMES


class CLIError(Exception):
    """A problem the user can fix; printed without a traceback."""


# ----------------------------------------------------------------- data
DATA_FORMATS = (".npy", ".csv", ".txt", ".npz", ".parquet")


def _load_data(path, stream=False, sparse_stream=False):
    """(X, description, feature names or None) for a data path (None: bundled iris).

    A directory or a glob pattern names several chunk files of one format, read in
    sorted order: with ``stream`` X is a ``fastem.Chunks`` that reads one file at a time
    (sparse ``.npz`` chunks are stacked in memory, unless ``sparse_stream``: the topic
    models stream them too)."""
    if path is None:
        from .datasets import load_iris

        X, names = load_iris()
        return X, "iris (bundled: 150 flowers x 4 measurements)", names
    files = _chunk_files(path)
    if files is None:
        return _load_file(path, stream)
    first = _load_file(files[0])
    if stream and (sparse_stream or os.path.splitext(files[0])[1].lower() != ".npz"):
        from . import Chunks

        npy = files[0].lower().endswith(".npy")  # memory-mapped one file at a time
        return (Chunks(files if npy else lambda: (_load_file(f)[0] for f in files)),
                f"{path} ({len(files)} chunks, streamed)", first[2])
    return _stack_chunks(path, files)


def _chunk_files(path):
    """The sorted chunk files of a directory or glob, or None for a single file."""
    import glob

    if not (os.path.isdir(path) or (glob.has_magic(path) and not os.path.exists(path))):
        if not os.path.exists(path):
            raise CLIError(f"data file not found: {path}")
        return None
    pattern = os.path.join(path, "*") if os.path.isdir(path) else path
    files = sorted(f for f in glob.glob(pattern)
                   if os.path.splitext(f)[1].lower() in DATA_FORMATS)
    if not files:
        raise CLIError(f"no data files ({', '.join(DATA_FORMATS)}) in {path}")
    exts = {os.path.splitext(f)[1].lower() for f in files}
    if len(exts) > 1:
        raise CLIError(f"{path} mixes data formats {sorted(exts)}; use one format per data set")
    return files


def _stack_chunks(path, files):
    import numpy as np

    parts = [_load_file(f) for f in files]
    widths = {p[0].shape[1] for p in parts}
    if len(widths) > 1:
        sizes = ", ".join(f"{os.path.basename(f)}: {p[0].shape[1]}" for f, p in zip(files, parts))
        raise CLIError(f"the chunks of {path} have different numbers of columns ({sizes})")
    if files[0].lower().endswith(".npz"):
        import scipy.sparse as sp

        X = sp.vstack([p[0] for p in parts], format="csr")
    else:
        X = np.concatenate([np.asarray(p[0]) for p in parts])
    return X, f"{path} ({len(files)} chunks)", parts[0][2]


def _load_file(path, stream=False):
    import numpy as np

    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        try:
            X = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise CLIError(f"cannot read {path} as a numeric .npy array: {exc}") from exc
        return X, path, None
    if ext == ".npz":
        import scipy.sparse as sp

        try:
            return sp.load_npz(path).tocsr(), path, None
        except (ValueError, KeyError, OSError) as exc:
            raise CLIError(f"cannot read {path} as a sparse matrix saved with "
                           f"scipy.sparse.save_npz: {exc}") from exc
    if ext in (".csv", ".txt"):
        return _load_csv(path)
    if ext == ".parquet":
        return _load_parquet(path, stream)
    raise CLIError(f"unsupported data format {ext!r} for {path}; use .npy, .csv, .parquet or "
                   ".npz (scipy.sparse.save_npz)")


def _csv_header(path):
    """The first row's fields (quotes removed) and whether they are a header (not all
    numbers; an empty field counts as a number, a missing value)."""
    import csv

    with open(path, newline="") as fh:
        first = next(csv.reader(fh), [])
    fields = [f.strip() for f in first]
    try:
        [float(f) for f in fields if f]
        return fields, False
    except ValueError:
        return fields, True


def _csv_number(text):
    """A CSV field as a float: empty (how pandas writes NaN) is NaN."""
    text = text.strip()
    return float(text) if text else float("nan")


def _load_csv(path):
    """A CSV of numbers: an optional header row (feature names), quoted numbers, empty
    fields and ``nan`` as missing entries.  pyarrow's reader when it is installed (fast,
    multithreaded); numpy's ``loadtxt`` otherwise."""
    import numpy as np

    fields, header = _csv_header(path)
    names = fields if header else None
    try:
        import pyarrow.csv as pacsv
    except ImportError:
        pacsv = None
    if pacsv is not None:
        return _pyarrow_csv(pacsv, path, header), path, names
    try:
        X = np.loadtxt(path, delimiter=",", skiprows=int(header), dtype=np.float64, ndmin=2,
                       quotechar='"', converters=_csv_number)
    except ValueError as exc:
        raise CLIError(f"cannot parse {path} as numeric CSV: {exc}") from exc
    return X, path, names


def _pyarrow_csv(pacsv, path, header):
    import numpy as np
    import pyarrow as pa

    read = pacsv.ReadOptions(autogenerate_column_names=not header)
    convert = pacsv.ConvertOptions(strings_can_be_null=True, quoted_strings_can_be_null=True,
                                   null_values=["", "nan", "NaN", "NA"])
    try:
        table = pacsv.read_csv(path, read_options=read, convert_options=convert)
        columns = []
        for name, column in zip(table.column_names, table.columns):
            if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
                    or pa.types.is_null(column.type)):
                column = column.cast(pa.float64())  # quoted numbers arrive as strings
            columns.append(column.to_numpy(zero_copy_only=False).astype(np.float64))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise CLIError(f"cannot parse {path} as numeric CSV: {exc}") from exc
    if not columns:
        raise CLIError(f"{path} has no columns")
    return np.column_stack(columns)


#: Rows per Parquet batch read at a time (a batch is one chunk of a streamed fit)
PARQUET_BATCH_ROWS = 1 << 18


def _parquet_dtype(schema, path):
    """float32 when every column is float32 (or narrower), else float64; non-numeric
    columns are refused."""
    import numpy as np
    import pyarrow.types as pat

    narrow = True
    for field in schema:
        if not (pat.is_integer(field.type) or pat.is_floating(field.type)
                or pat.is_boolean(field.type)):
            raise CLIError(f"column {field.name!r} of {path} is not numeric ({field.type}); "
                           "encode it as numbers or drop it")
        narrow &= pat.is_float32(field.type) or pat.is_float16(field.type)
    return np.float32 if narrow else np.float64


def _parquet_batches(pq, path, dtype):
    """The file's rows, batch by batch, as arrays of ``dtype`` (nulls become NaN)."""
    import numpy as np

    for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH_ROWS):
        yield np.column_stack([np.asarray(c.to_numpy(zero_copy_only=False), dtype=dtype)
                               for c in batch.columns])


def _load_parquet(path, stream=False):
    """Numeric columns of a Parquet file (nulls become NaN), with their names: read in
    batches of row groups, float32 kept when every column is float32; with ``stream``, a
    ``fastem.Chunks`` of the batches (the file is never held whole)."""
    import numpy as np

    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise CLIError("reading .parquet needs pyarrow: pip install 'fastem[parquet]'") from exc
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
        raise CLIError(f"cannot read {path} as Parquet: {exc}") from exc
    if not len(schema):
        raise CLIError(f"{path} has no columns")
    dtype = _parquet_dtype(schema, path)
    if stream:
        from . import Chunks

        return Chunks(lambda: _parquet_batches(pq, path, dtype)), path, list(schema.names)
    parts = list(_parquet_batches(pq, path, dtype))
    X = np.concatenate(parts) if parts else np.empty((0, len(schema)), dtype=dtype)
    return X, path, list(schema.names)


# ----------------------------------------------------------------- models
MODELS = CLI_NAMES
HMM_MODELS = tuple(name for name in MODELS if name.endswith("-hmm"))
TOPIC_MODELS = ("lda", "plsa")


def _estimator(args, X):
    """The estimator of ``fastem fit`` from its options (only those the model takes)."""
    import fastem

    common = dict(random_state=args.random_state, backend=args.backend,
                  n_threads=args.n_threads)
    for name in ("tol", "n_init", "max_iter"):  # given: passed on; else the model's default
        if getattr(args, name) is not None:
            common[name] = getattr(args, name)
    k = args.k if args.k is not None else (3 if args.data is None else 8)
    if args.model in ("kmeans", "minibatch"):
        extra = {"init": args.init} if args.init else {}
        if args.model == "minibatch":
            return fastem.MiniBatchKMeans(n_clusters=k, batch_size=args.batch_size, **common,
                                          **extra)
        if args.algorithm:
            extra["algorithm"] = args.algorithm
        return fastem.KMeans(n_clusters=k, **common, **extra)
    if args.model == "lda":
        given = [f"--{n.replace('_', '-')}" for n in ("tol", "n_init") if n in common]
        if given or args.init:
            raise CLIError(f"{', '.join(given or ['--init'])} is not an option of lda (it "
                           "runs max_iter passes from its random_state's draws)")
        return fastem.LatentDirichletAllocation(k, **common)
    if args.model == "plsa":
        if "n_init" in common or args.init:
            raise CLIError("--n-init and --init are not options of plsa (one run from its "
                           "random_state's draws)")
        return fastem.PLSA(k, **common)
    if args.model == "ppca":
        given = [f"--{n.replace('_', '-')}" for n in ("tol", "n_init", "max_iter") if n in common]
        if given or args.init:
            raise CLIError(f"{', '.join(given or ['--init'])} is not an option of ppca (its fit "
                           "is in closed form)")
        return fastem.PPCA(k, backend=args.backend, n_threads=args.n_threads)
    if args.model == "fa":
        if "n_init" in common or args.init:
            raise CLIError("--n-init and --init are not options of fa (its fit is one run "
                           "from unit noise variances)")
        return fastem.FactorAnalysis(k, **common)
    if args.init:
        common["init_params"] = args.init
    if args.model in HMM_MODELS:
        return _hmm_estimator(args, k, common)
    if args.model == "gmm":
        return fastem.GaussianMixture(k, covariance_type=args.covariance_type or "full",
                                      **common)
    if args.model == "mfa":
        return fastem.MixtureOfFactorAnalyzers(k, n_factors=args.factors,
                                               noise_type=args.noise_type, **common)
    if args.alpha is not None:
        common["alpha"] = args.alpha
    if args.model == "bernoulli":
        return fastem.BernoulliMixture(k, n_trials=args.n_trials or 1, **common)
    if args.model == "multinomial":
        return fastem.MultinomialMixture(k, **common)
    return fastem.CategoricalMixture(k, **common)


def _hmm_estimator(args, k, common):
    """A hidden Markov model from ``fastem fit``'s options: --max-iter is its n_iter, and
    the covariance type, when not given, hmmlearn's default ("diag")."""
    from ._families import estimator_classes

    if "n_init" in common:
        raise CLIError("--n-init is not an option of the hidden Markov models (they fit "
                       "once, from init_params)")
    if "max_iter" in common:
        common["n_iter"] = common.pop("max_iter")
    if args.implementation:
        common["implementation"] = args.implementation
    if args.model in ("gaussian-hmm", "gmm-hmm") and args.covariance_type:
        common["covariance_type"] = args.covariance_type
    if args.model == "gmm-hmm":
        common["n_mix"] = args.n_mix
    if args.model == "multinomial-hmm" and args.n_trials is not None:
        common["n_trials"] = args.n_trials
    return estimator_classes()[args.model](k, **common)


def _load_lengths(path, n_rows):
    """The sequence lengths of ``--lengths``: a .npy, .csv or .txt of one integer per
    sequence (in the order the sequences are stacked in the data)."""
    import numpy as np

    try:
        if path.lower().endswith(".npy"):
            lengths = np.load(path, allow_pickle=False)
        else:
            lengths = np.loadtxt(path, delimiter=",", ndmin=1)
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot read the sequence lengths from {path}: {exc}") from exc
    lengths = np.asarray(lengths).ravel()
    if lengths.dtype.kind == "f" and np.all(lengths == np.round(lengths)):
        lengths = lengths.astype(np.int64)
    if lengths.dtype.kind not in "iu" or n_rows is not None and int(lengths.sum()) != n_rows:
        raise CLIError(f"{path} must hold one integer length per sequence, summing to the "
                       f"data's {n_rows} rows; it sums to {lengths.sum()}")
    return lengths


def _summary(model):
    """JSON-ready fitted figures of any fastem model."""
    n_iter = getattr(model, "n_iter_", None)
    n_iter = getattr(model, "n_steps_", 0) if n_iter is None else n_iter
    out = {"model": type(model).__name__, "n_features": int(model.n_features_in_),
           "n_iter": int(n_iter), "backend": model.backend_}
    if hasattr(model, "inertia_"):
        out.update(n_clusters=int(model.n_clusters), inertia=float(model.inertia_),
                   cluster_centers=model.cluster_centers_.tolist())
    elif hasattr(model, "exp_dirichlet_component_"):  # LDA
        out.update(n_components=int(model.n_components),
                   perplexity=float(model.bound_) if hasattr(model, "bound_") else None)
    elif type(model).__name__ == "PLSA":
        out.update(n_components=int(model.n_components), converged=bool(model.converged_),
                   log_likelihood=float(model.lower_bound_))
    elif hasattr(model, "loglike_"):  # FactorAnalysis, PPCA
        loglike, noise = model.loglike_, model.noise_variance_
        out.update(n_components=int(model.components_.shape[0]),
                   log_likelihood=float(loglike[-1] if isinstance(loglike, list) else loglike),
                   noise_variance=noise.tolist() if hasattr(noise, "tolist") else float(noise),
                   components=model.components_.tolist())
    elif hasattr(model, "transmat_"):
        out.update(n_components=int(model.n_components),
                   converged=bool(model.monitor_.converged),
                   log_likelihood=float(model.monitor_.history[-1]),
                   startprob=model.startprob_.tolist(), transmat=model.transmat_.tolist())
        if getattr(model, "means_", None) is not None and model.means_.ndim == 2:
            out["means"] = model.means_.tolist()
    else:
        out.update(n_components=int(model.n_components), converged=bool(model.converged_),
                   lower_bound=float(model.lower_bound_),
                   weights=[float(w) for w in model.weights_])
        if hasattr(model, "means_"):
            out["means"] = model.means_.tolist()
    return out


def _print_summary(s, names, sizes):
    """Per-cluster (K-means) or per-component (mixtures) lines of a ``_summary``, with
    the center or mean when there are at most 12 features."""
    print(f"backend {s['backend']}, {s['n_iter']} iterations")
    if "inertia" in s:
        print(f"inertia {s['inertia']:.6g}")
        rows, first, head = s["cluster_centers"], [f"{n:>6}" for n in sizes], "cluster    size"
    elif s["model"] in ("LatentDirichletAllocation", "PLSA"):
        if "perplexity" not in s:
            print(f"log-likelihood {s['log_likelihood']:.6g}")
        elif s["perplexity"] is not None:  # (None: a partial_fit model)
            print(f"perplexity {s['perplexity']:.6g} on the training documents")
        rows, first, head = None, [f"{n:>6}" for n in sizes], "    topic    documents"
    elif s["model"] in ("FactorAnalysis", "PPCA"):
        print(f"log-likelihood {s['log_likelihood']:.6g}")
        rows, first = s["components"], [""] * len(s["components"])
        head = "   factor" if s["model"] == "FactorAnalysis" else "     axis"
    elif "transmat" in s:
        state = "converged" if s["converged"] else "not converged"
        print(f"log-likelihood {s['log_likelihood']:.6g}, {state}")
        rows, first, head = s.get("means"), [f"{p:>6.3f}" for p in s["startprob"]], \
            "    state   start"
    else:
        state = "converged" if s["converged"] else "not converged"
        print(f"lower bound {s['lower_bound']:.6g} per sample, {state}")
        rows, first, head = s.get("means"), [f"{w:>6.3f}" for w in s["weights"]], \
            "component  weight"
    show = rows is not None and len(rows[0]) <= 12
    label = (" center" if "inertia" in s else " mean" if "components" not in s
             else " loadings" if s["model"] == "FactorAnalysis" else " direction")
    print(head + (label + (f" ({', '.join(names)})" if names else "") if show else ""))
    for j, lead in enumerate(first):
        vector = " [" + ", ".join(f"{v:.4g}" for v in rows[j]) + "]" if show else ""
        print(f"{j:>9}  {lead}{vector}")


# ----------------------------------------------------------------- commands
def _stop_on_sigterm():
    """SIGTERM (a batch scheduler's notice) makes a checkpointed fit write its checkpoint
    at the end of the current iteration and stop: ``main`` then exits with 143."""
    import signal

    from ._checkpoint import request_stop

    def handler(signum, frame):
        request_stop()

    signal.signal(signal.SIGTERM, handler)


def _cmd_fit(args):
    import numpy as np

    from . import Chunks

    if args.data is None and not args.quiet:
        print("fastem: no DATA given: fitting the bundled iris demo data (150 x 4)",
              file=sys.stderr)
    X, source, names = _load_data(args.data, stream=True,
                                  sparse_stream=args.model in TOPIC_MODELS)
    model = _estimator(args, X)
    hmm = args.model in HMM_MODELS
    # (chunk files: the model checks that the lengths sum to their rows, in its first pass)
    lengths = _hmm_lengths(args, hmm, lambda: None if isinstance(X, Chunks) else X.shape[0])
    if args.checkpoint is not None:
        _stop_on_sigterm()
    mode = args.progress
    if args.quiet:
        mode = "none"
    elif mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "log"
    progress = _Progress(model, mode)
    fit_options = dict(callback=progress, checkpoint=args.checkpoint,
                       checkpoint_every=args.checkpoint_every,
                       checkpoint_seconds=args.checkpoint_seconds)
    start = time.perf_counter()
    try:
        with _quiet_warnings(args):
            if hmm:
                labels = model.fit(X, lengths, **fit_options).predict(X, lengths)
            elif args.model == "kmeans":
                labels = model.fit(X, **fit_options).labels_
            elif args.model == "minibatch":
                labels = _fit_minibatch(model, X, args)
            elif args.model in ("fa", "ppca"):  # no clusters: the factors
                if args.checkpoint:
                    raise CLIError(f"--checkpoint is not supported for {args.model} (its "
                                   "iterations never read the data)")
                labels = None
                model.fit(X, **({"callback": progress} if args.model == "fa" else {}))
            elif args.model in TOPIC_MODELS:  # each document's main topic
                if args.checkpoint:
                    raise CLIError(f"--checkpoint is not supported for {args.model} yet")
                model.fit(X, callback=progress)
                labels = (model.doc_topic_ if args.model == "plsa" else
                          model.transform(X)).argmax(axis=1)
            else:
                labels = model.fit_predict(X, **fit_options)
            progress.close()
    except (ValueError, TypeError) as exc:
        raise CLIError(str(exc)) from exc
    elapsed = time.perf_counter() - start
    if names is not None and len(names) == model.n_features_in_:
        # kept in the model file: predict checks the columns of its data by name
        model.feature_names_in_ = np.asarray(names, dtype=object)
    k = model.n_clusters if args.model in ("kmeans", "minibatch") else model.n_components
    sizes = None if labels is None else np.bincount(labels, minlength=k)
    if args.output:
        _write_model(model, args.output)
    summary = _summary(model)
    n_samples = model._n_fit_rows if labels is None else labels.shape[0]
    n_features = model.n_features_in_
    result = {**summary, "model": args.model, "data": source, "n_samples": int(n_samples),
              "seconds": round(elapsed, 4), "output": args.output}
    if sizes is not None:
        result["cluster_sizes"] = sizes.tolist()
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{type(model).__name__} on {source}: {n_samples} samples x {n_features} features, "
          f"k={k}")
    unit = "state" if hmm else "topic" if args.model in TOPIC_MODELS else "cluster"
    print(f"{elapsed:.3f} s" + ("" if sizes is None else f"; {unit} sizes {sizes.tolist()}"))
    _print_summary(summary, names, sizes)
    if args.output:
        print(f"model written to {args.output}")
    return 0


def _hmm_lengths(args, hmm, n_rows):
    """``--lengths`` for a hidden Markov model (None: one sequence), checked against
    ``n_rows()`` rows (None: not here); refused for the other models."""
    if not hmm:
        if args.lengths:
            raise CLIError(f"--lengths is an option of the hidden Markov models "
                           f"({', '.join(HMM_MODELS)})")
        return None
    return _load_lengths(args.lengths, n_rows()) if args.lengths else None


def _fit_minibatch(model, X, args):
    """MiniBatchKMeans: ``fit`` on an array (or memory map); on chunk files, ``partial_fit``
    on each file in turn, ``--max-iter`` passes (default 1).  Returns the labels."""
    import numpy as np

    from . import Chunks

    if args.checkpoint:
        raise CLIError("--checkpoint is not supported for minibatch (its fit is short; "
                       "stream chunk files instead)")
    if not isinstance(X, Chunks):
        return model.fit(X).labels_
    for _ in range(args.max_iter or 1):
        for piece in X:
            model.partial_fit(piece)
    labels, inertia = [], 0.0
    for piece in X:  # one assignment pass gives both (predict and score would make two)
        Xp, centers = model._predict_input(piece)
        lab, part = model._labels_inertia(Xp, centers, np.ones(Xp.shape[0]))
        labels.append(lab)
        inertia += part
    model.inertia_ = float(inertia)
    return np.concatenate(labels)


def _write_model(model, path):
    try:
        model.save(path)
    except OSError as exc:
        raise CLIError(f"cannot write the model to {path}: {exc}") from exc


def _read_model(path):
    from . import load

    try:
        return load(path)
    except FileNotFoundError as exc:
        raise CLIError(f"model file not found: {path}") from exc
    except ValueError as exc:
        raise CLIError(str(exc)) from exc


def _column_order(model, names, source):
    """How to reorder the data's columns to the model's (None: as they are).  A model
    fitted on named columns (a CSV header, a Parquet schema) refuses data whose names
    differ, and takes the same names in another order by name; data without names (a
    .npy file) is taken as it is."""
    fitted = getattr(model, "feature_names_in_", None)
    if fitted is None or names is None:
        return None
    fitted, names = [str(n) for n in fitted], list(names)
    if names == fitted:
        return None
    missing = [n for n in fitted if n not in names]
    extra = [n for n in names if n not in fitted]
    if missing or extra or len(set(names)) != len(names):
        raise CLIError(
            f"the columns of {source} do not match the model's: missing {missing}, "
            f"unexpected {extra}" + (" (repeated names)" if not (missing or extra) else "")
            + f"; the model was fitted on {fitted}")
    print(f"fastem: note: the columns of {source} are in another order than the model's; "
          "matched by name", file=sys.stderr)
    return [names.index(n) for n in fitted]


def _cmd_predict(args):
    import numpy as np

    from ._persist import atomic_write
    from ._topics import Documents

    model = _read_model(args.model_file)
    hmm = hasattr(model, "transmat_")
    files = _chunk_files(args.data)
    if files is None:
        X, _, names = _load_data(args.data)
        parts, source = [X], args.data
    else:  # one chunk file in memory at a time
        names = _load_file(files[0])[2]
        parts, source = (_load_file(f)[0] for f in files), f"{args.data} ({len(files)} chunks)"
    order = _column_order(model, names, source)
    lengths = _hmm_lengths(args, hmm, lambda: None if files else parts[0].shape[0])
    try:
        with _quiet_warnings(args), warnings.catch_warnings():
            # the columns were matched by name above; the arrays passed on have none
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            if isinstance(model, Documents):  # a topic model: topic mixtures
                def predict(X):
                    mix = model.transform(X)
                    return mix if args.proba else mix.argmax(axis=1).astype(np.int32)
            elif not hasattr(model, "predict"):  # factor analysis: each row's factors
                if args.proba:
                    raise CLIError(f"{type(model).__name__} has no probabilities: predict "
                                   "writes each row's factors E[z | x]; drop --proba")
                predict = model.transform
            else:
                predict = model.predict_proba if args.proba else model.predict
            if hmm and files:  # sequences may run across the files: read as one
                from . import Chunks

                out = predict(Chunks(lambda: (_load_file(f)[0] if order is None else
                                              _load_file(f)[0][:, order] for f in files)),
                              lengths)
            elif hmm:  # one array: its sequences by --lengths
                out = predict(parts[0] if order is None else parts[0][:, order], lengths)
            else:
                out = np.concatenate([predict(X if order is None else X[:, order])
                                      for X in parts])
    except AttributeError as exc:
        raise CLIError(f"{type(model).__name__} has no probabilities; drop --proba") from exc
    except (ValueError, TypeError) as exc:
        raise CLIError(f"cannot predict {source} with {args.model_file}: {exc}") from exc
    ext = os.path.splitext(args.output)[1].lower()
    if ext == ".npy":
        write = lambda fh: np.save(fh, out)  # noqa: E731
    elif ext in (".csv", ".txt"):
        fmt = "%d" if out.ndim == 1 else "%.10g"
        write = lambda fh: np.savetxt(fh, out, fmt=fmt, delimiter=",")  # noqa: E731
    else:
        raise CLIError(f"unsupported output format {ext!r} for {args.output}; use .npy or .csv")
    try:
        atomic_write(args.output, write)
    except OSError as exc:
        raise CLIError(f"cannot write {args.output}: {exc}") from exc
    summary = {"model": type(model).__name__, "data": source, "n_samples": int(out.shape[0]),
               "output": args.output, "what": "probabilities" if args.proba else
               "labels" if hasattr(model, "predict") else "factors"}
    print(json.dumps(summary) if args.json else
          f"{summary['what']} of {out.shape[0]} samples written to {args.output}")
    return 0


def _cmd_info(args):
    if args.model_file:
        model = _read_model(args.model_file)
        data = {"file": args.model_file, "params": {k: v for k, v in model.get_params().items()
                                                    if not hasattr(v, "shape")},
                **_summary(model)}
    else:
        from ._info import info

        data = info()
    if args.json:
        print(json.dumps(data))
        return 0
    for key, value in data.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k2, v2 in value.items():
                print(f"  {k2}: {v2}")
        else:
            print(f"{key}: {value}")
    return 0


def _cmd_warmup(args):
    from ._info import warmup

    start = time.perf_counter()
    done = warmup()
    msg = {"warmed": done, "seconds": round(time.perf_counter() - start, 3)}
    print(json.dumps(msg) if args.json else
          f"compiled kernels for {', '.join(done) or 'no backend'} in {msg['seconds']} s")
    return 0


class _Progress:
    """Per-iteration progress on stderr: initialization, iteration, the lower bound and
    its change (mixtures) or the center shift and the labels that changed (K-means),
    iterations per second of the current initialization, and an upper bound on the time
    it has left (the iterations left before max_iter; fits usually stop sooner).

    ``mode``: "bar" rewrites one line, cut to the terminal's width; "log" writes a line
    every ``interval`` seconds (and the first iteration of each initialization), for
    batch logs; "none" writes nothing."""

    def __init__(self, model, mode, interval=10.0, clock=time.monotonic):
        self.model, self.mode, self.interval, self.clock = model, mode, interval, clock
        self.shown, self.init, self.init_start, self.last_log = False, None, 0.0, None
        # (the hidden Markov models call it n_iter, as hmmlearn does)
        # (PPCA's closed form has no iterations)
        self.max_iter = getattr(model, "max_iter", getattr(model, "n_iter", 1))

    def __call__(self, info):
        if self.mode == "none":
            return False
        if info["init"] != self.init:  # the clock of this initialization starts here
            self.init, self.init_start = info["init"], self.previous_elapsed(info)
            self.last_log = None
        self.elapsed = info["elapsed"]
        rate = info["iteration"] / max(info["elapsed"] - self.init_start, 1e-9)
        left = (self.max_iter - info["iteration"]) / rate
        if "lower_bound" in info:
            figures = f"lower bound {info['lower_bound']:.6g}  change {info['change']:.2e}"
        elif "center_shift" in info:
            figures = (f"center shift {info['center_shift']:.2e}  {info['n_changed']} labels "
                       "changed")
        else:  # (a topic model between its perplexity evaluations)
            figures = "no bound this iteration"
        line = (f"init {info['init'] + 1}  iteration {info['iteration']}/{self.max_iter}"
                f"  {figures}  {rate:.1f} it/s  <= {left:.0f} s left")
        if self.mode == "bar":
            import shutil

            width = shutil.get_terminal_size((80, 24)).columns
            sys.stderr.write("\r" + ("  " + line)[:max(10, width - 1)].ljust(width - 1))
            self.shown = True
        else:
            now = self.clock()
            self.unlogged = line
            if self.last_log is None or now - self.last_log >= self.interval:
                sys.stderr.write(f"fastem: {line}\n")
                self.last_log, self.unlogged = now, None
        sys.stderr.flush()
        return False

    def previous_elapsed(self, info):
        """Where the new initialization's clock starts: the last iteration seen of the
        previous one (0 for the first)."""
        return getattr(self, "elapsed", 0.0) if info["init"] else 0.0

    def close(self):
        """End the bar's line; in a log, write the last iteration if it was not."""
        if self.shown:
            sys.stderr.write("\n")
        if self.mode == "log" and getattr(self, "unlogged", None):
            sys.stderr.write(f"fastem: {self.unlogged}\n")


class _quiet_warnings:
    """Route fastem's warnings (e.g. not converged) to stderr as one line each, or drop
    them with --quiet."""

    def __init__(self, args):
        self.quiet = getattr(args, "quiet", False)

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings(record=True)
        self._caught = self._ctx.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        if not self.quiet:
            for w in self._caught:
                print(f"fastem: warning: {w.message}", file=sys.stderr)
        return False


# ----------------------------------------------------------------- parser
def _split_target(target):
    """``fit [MODEL] [DATA]``: the model name is optional, so ``fit data.csv`` works."""
    if target and target[0] in MODELS:
        model, rest = target[0], target[1:]
    else:
        model, rest = "kmeans", list(target)
    if len(rest) > 1:
        raise CLIError(f"expected [MODEL] [DATA], got {' '.join(target)!r}; models: "
                       f"{', '.join(MODELS)}")
    return model, (rest[0] if rest else None)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser():
    from . import __version__

    parser = argparse.ArgumentParser(prog="fastem", description="Fast EM clustering on the CPU.")
    parser.add_argument("--version", action="version", version=f"fastem {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="fit a model, print a summary, optionally save it")
    fit.add_argument("target", nargs="*", metavar="[MODEL] [DATA]",
                     help=f"model ({', '.join(MODELS)}; default kmeans) and a .npy, .csv, "
                          ".parquet or .npz data file, or a directory / glob of such chunks "
                          "(default: the bundled iris dataset)")
    fit.add_argument("-k", "--n-components", "--n-clusters", dest="k", type=_positive_int,
                     default=None, help="clusters / components (default 3 for iris, else 8)")
    fit.add_argument("-o", "--output", metavar="MODEL_FILE",
                     help="save the fitted model here (see fastem.load)")
    fit.add_argument("--n-init", type=_positive_int, default=None,
                     help="runs from different seeds, the best kept (default: the model's, "
                          "as in scikit-learn)")
    fit.add_argument("--max-iter", type=_positive_int, default=None,
                     help="most iterations per run (default: the model's)")
    fit.add_argument("--tol", type=float, default=None,
                     help="convergence tolerance (default: the model's)")
    fit.add_argument("--random-state", type=int, default=0,
                     help="seed of the initialization (default 0, so that a rerun gives the "
                          "same model)")
    fit.add_argument("--init", default=None,
                     help="kmeans: k-means++, k-means|| or random; mixtures: their init_params")
    fit.add_argument("--algorithm", default=None,
                     choices=["auto", "lloyd", "hamerly", "yinyang", "elkan"],
                     help="kmeans only (default auto); every choice gives the same model")
    fit.add_argument("--covariance-type", default=None,
                     choices=["full", "tied", "diag", "spherical"],
                     help="gmm (default full), gaussian-hmm and gmm-hmm (default diag)")
    fit.add_argument("--lengths", metavar="LENGTHS", default=None,
                     help="hidden Markov models: a .npy or .csv of the length of each "
                          "sequence stacked in DATA (default: DATA is one sequence)")
    fit.add_argument("--n-mix", type=_positive_int, default=1,
                     help="gmm-hmm: Gaussians in each state's mixture (default 1)")
    fit.add_argument("--factors", type=_positive_int, default=2, metavar="Q",
                     help="mfa: factors per component (default 2)")
    fit.add_argument("--noise-type", choices=["per_component", "shared"],
                     default="per_component",
                     help="mfa: a diagonal noise per component (default) or one shared")
    fit.add_argument("--implementation", choices=["log", "scaling"], default=None,
                     help="hidden Markov models: forward-backward in log space (default) "
                          "or scaled")
    fit.add_argument("--alpha", type=float, default=None,
                     help="bernoulli, multinomial, categorical: smoothing pseudo-count")
    fit.add_argument("--n-trials", type=_positive_int, default=None,
                     help="bernoulli (default 1) and multinomial-hmm (default: each row's "
                          "total)")
    fit.add_argument("--batch-size", type=_positive_int, default=1024,
                     help="minibatch only (with chunk files: each file is a partial_fit batch; "
                          "--max-iter passes over them, default 1)")
    fit.add_argument("--backend", choices=["auto", "numba", "cython", "numpy"], default=None,
                     help="kernels (default auto: cython, else numba, else numpy)")
    fit.add_argument("--n-threads", type=_positive_int, default=None,
                     help="kernel threads (default: every CPU this process may use)")
    fit.add_argument("--checkpoint", metavar="PATH", default=None,
                     help="kmeans, mixtures and HMMs: write the fit's state here as it goes; "
                          "rerunning the same command after a crash resumes from it; SIGTERM "
                          "writes it at the end of the iteration and exits with 143")
    fit.add_argument("--checkpoint-every", type=_positive_int, default=10, metavar="N",
                     help="iterations between checkpoints (default 10)")
    fit.add_argument("--checkpoint-seconds", type=float, default=None, metavar="S",
                     help="also write a checkpoint when S seconds have passed")
    fit.add_argument("--json", action="store_true", help="machine-readable output")
    fit.add_argument("--quiet", action="store_true",
                     help="no warnings and no progress display")
    fit.add_argument("--progress", choices=["auto", "bar", "log", "none"], default="auto",
                     help="progress on stderr: a line rewritten in place (bar), a line every "
                          "10 seconds for batch logs (log), or none; auto: bar on a terminal, "
                          "else log")
    fit.set_defaults(func=_cmd_fit)

    pred = sub.add_parser("predict", help="labels (or probabilities) from a saved model")
    pred.add_argument("model_file", metavar="MODEL_FILE")
    pred.add_argument("data", metavar="DATA", help="a data file, or a directory / glob of "
                                                    "chunk files")
    pred.add_argument("--lengths", metavar="LENGTHS", default=None,
                      help="hidden Markov models: the sequence lengths of DATA, as for fit")
    pred.add_argument("-o", "--output", required=True, metavar="OUT",
                      help="where to write them: .npy or .csv")
    pred.add_argument("--proba", action="store_true",
                      help="write the component probabilities (mixtures) instead of labels")
    pred.add_argument("--json", action="store_true", help="machine-readable output")
    pred.add_argument("--quiet", action="store_true", help="no warnings")
    pred.set_defaults(func=_cmd_predict)

    inf = sub.add_parser("info", help="versions, backends, threading; or a model file's summary")
    inf.add_argument("model_file", nargs="?", metavar="MODEL_FILE")
    inf.add_argument("--json", action="store_true", help="machine-readable output")
    inf.set_defaults(func=_cmd_info)

    warm = sub.add_parser("warmup", help="compile the numba kernels into the on-disk cache")
    warm.add_argument("--json", action="store_true", help="machine-readable output")
    warm.set_defaults(func=_cmd_warmup)
    return parser


#: exit codes: 2 a problem the user can fix; 130 interrupted (Ctrl-C); 143 stopped by
#: SIGTERM after writing the fit's checkpoint; 1 anything unexpected
EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 130, 143


def _os_error_message(exc):
    """One line for a file the command could not read or write."""
    what = exc.strerror or str(exc)
    return f"{what}: {exc.filename}" if exc.filename else what


def main(argv=None):
    from ._checkpoint import Interrupted

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "fit":
            args.model, args.data = _split_target(args.target)
        return args.func(args)
    except CLIError as exc:
        print(f"fastem: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        print(f"fastem: error: {_os_error_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # e.g. a full disk: not the user's input, but no traceback
        print(f"fastem: error: {_os_error_message(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fastem: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Interrupted as exc:
        print(f"fastem: terminated: {exc}; rerun the same command to resume",
              file=sys.stderr)
        return EXIT_TERMINATED


if __name__ == "__main__":
    sys.exit(main())
