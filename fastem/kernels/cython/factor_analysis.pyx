"""Factor-analysis kernels, Cython backend: the moments pass, the hidden Markov models'
``weighted_moments`` (see ``reference/factor_analysis.py``)."""

from fastem.kernels.cython.hmm import (  # noqa: F401
    BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES, weighted_moments)
