"""Factor-analysis kernels, the specification: the moments pass.

A factor model's likelihood depends on its rows only through their weighted count,
mean and covariance (``fastem/factor_analysis.py``), which ``weighted_moments`` gives a
chunk at a time (with one column of weights: a single set).  The kernel is the hidden
Markov models' M-step kernel (``hmm.weighted_moments``: one implementation per backend,
listed in both families so that each family's contract tests and warm-up run it).
"""

from .hmm import weighted_moments  # noqa: F401
