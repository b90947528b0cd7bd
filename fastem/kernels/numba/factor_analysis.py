"""Factor-analysis kernels in numba: the moments pass, the hidden Markov models'
``weighted_moments`` (see ``reference/factor_analysis.py``)."""

from .hmm import BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES, weighted_moments  # noqa: F401
