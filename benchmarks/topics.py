"""Topic models: fastem's LatentDirichletAllocation against scikit-learn's (batch and
online) and gensim's LdaMulticore, in one run, perplexity beside time.

    python benchmarks/topics.py                          # issue 17's corpus (slow)
    python benchmarks/topics.py --docs 20000 --repeats 1 # a tenth of it
    python benchmarks/topics.py --repeats 1 --passes 0   # per batch iteration only

The corpus is drawn from LDA itself: ``--docs`` documents over ``--words`` words (a
Dirichlet(0.05) distribution per topic over the words, Dirichlet(0.2) per document over
``--true-topics`` topics), about ``--length`` words each, as a CSR matrix.  Every model
has K = ``--topics`` and the same priors (1/K, scikit-learn's and gensim's defaults).

- Per batch iteration: the slope between a 1- and a 3-iteration batch fit from the same
  ``random_state`` (set-up and the final perplexity pass cancel out), fastem against
  scikit-learn, median of ``--repeats``.
- To a perplexity: ``--passes`` passes of each method (fastem batch, scikit-learn batch
  and online, fastem online, gensim LdaMulticore with 2 workers), each model's
  perplexity on the training corpus measured by one yardstick (fastem's bound from its
  topic-word parameters; gensim's lambda taken as ``components_``), beside its time.
"""

import argparse
import statistics
import time

import numpy as np
import scipy.sparse as sp


def corpus(n_docs, n_words, length, n_topics, seed=0):
    """An LDA-generated CSR corpus of ``n_docs`` documents."""
    rng = np.random.default_rng(seed)
    topic_cdf = np.cumsum(rng.dirichlet(np.full(n_words, 0.05), n_topics), axis=1)
    rows, cols = [], []
    for a in range(0, n_docs, 5000):
        n = min(5000, n_docs - a)
        theta_cdf = np.cumsum(rng.dirichlet(np.full(n_topics, 0.2), n), axis=1)
        lengths = rng.poisson(length, n) + 1
        doc = np.repeat(np.arange(n), lengths)
        z = (rng.random(doc.size)[:, None] > theta_cdf[doc]).sum(axis=1).clip(0, n_topics - 1)
        u = rng.random(doc.size)
        w = np.empty(doc.size, dtype=np.int64)
        for t in range(n_topics):
            sel = z == t
            w[sel] = np.searchsorted(topic_cdf[t], u[sel]).clip(0, n_words - 1)
        rows.append(doc + a)
        cols.append(w)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    X = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n_docs, n_words))
    X.sum_duplicates()
    return X


def _yardstick(X, components, k, threads):
    """Perplexity of X under topic-word parameters ``components`` (fastem's bound)."""
    import fastem

    m = fastem.LatentDirichletAllocation(k, max_iter=0, random_state=0, n_threads=threads)
    m.fit(X[:2])  # sets the fitted state; the topics are replaced below
    m.components_ = np.asarray(components, dtype=np.float64)
    from fastem.lda import _dirichlet_expectation

    m.exp_dirichlet_component_ = np.exp(_dirichlet_expectation(m.components_))
    return m.perplexity(X)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=200_000)
    p.add_argument("--words", type=int, default=20_000)
    p.add_argument("--length", type=int, default=100)
    p.add_argument("--true-topics", type=int, default=50)
    p.add_argument("--topics", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--skip-gensim", action="store_true")
    args = p.parse_args(argv)

    import warnings

    from sklearn.decomposition import LatentDirichletAllocation as SK
    from threadpoolctl import threadpool_limits

    import fastem

    warnings.simplefilter("ignore")
    X = corpus(args.docs, args.words, args.length, args.true_topics)
    k = args.topics
    print(f"## corpus: {X.shape[0]:,} documents x {X.shape[1]:,} words, {X.nnz:,} non-zeros, "
          f"{int(X.sum()):,} words; K = {k}")

    def fit(cls, method, n_iter, **kw):
        return cls(n_components=k, learning_method=method, max_iter=n_iter, random_state=0,
                   **kw).fit(X)

    fastem.LatentDirichletAllocation(k, max_iter=1).fit(X[:200])  # compile / load
    per_iter = {}
    with threadpool_limits(limits=None):
        for _ in range(args.repeats):
            for name, cls in (("scikit-learn", SK), ("fastem", fastem.LatentDirichletAllocation)):
                t0 = time.perf_counter()
                fit(cls, "batch", 1)
                t1 = time.perf_counter()
                fit(cls, "batch", 3)
                t2 = time.perf_counter()
                per_iter.setdefault(name, []).append(((t2 - t1) - (t1 - t0)) / 2)
    ref = statistics.median(per_iter["scikit-learn"])
    print("\n| batch iteration | s/iter (median of %d) | scikit-learn / this |" % args.repeats)
    print("|---|---|---|")
    for name, times in per_iter.items():
        t = statistics.median(times)
        print(f"| {name} | {t:.3f} | {ref / t:.2f}x |")
    if args.passes <= 0:  # (--passes 0: the per-iteration figures only)
        return

    rows = []
    runs = [("fastem batch", lambda: fit(fastem.LatentDirichletAllocation, "batch",
                                         args.passes)),
            ("fastem online", lambda: fit(fastem.LatentDirichletAllocation, "online",
                                          args.passes, batch_size=2048,
                                          total_samples=X.shape[0])),
            ("scikit-learn batch", lambda: fit(SK, "batch", args.passes)),
            ("scikit-learn online", lambda: fit(SK, "online", args.passes, batch_size=2048,
                                                total_samples=X.shape[0]))]
    if not args.skip_gensim:
        def gensim_fit():
            from gensim.matutils import Sparse2Corpus
            from gensim.models import LdaMulticore

            docs = Sparse2Corpus(X, documents_columns=False)
            return LdaMulticore(docs, num_topics=k, workers=2, passes=args.passes,
                                chunksize=2048, random_state=0, alpha="symmetric",
                                eta=1.0 / k)
        runs.append(("gensim LdaMulticore (2 workers)", gensim_fit))
    for name, run in runs:
        t0 = time.perf_counter()
        model = run()
        elapsed = time.perf_counter() - t0
        comp = (model.state.get_lambda() if name.startswith("gensim") else model.components_)
        rows.append((name, elapsed, _yardstick(X, comp, k, None)))
    print(f"\n| {args.passes} passes | seconds | perplexity (one yardstick) |")
    print("|---|---|---|")
    for name, elapsed, perp in rows:
        print(f"| {name} | {elapsed:.1f} | {perp:.2f} |")
    print(f"\n(at {time.strftime('%Y-%m-%d %H:%M')}, 2 cores)")


if __name__ == "__main__":
    main()
