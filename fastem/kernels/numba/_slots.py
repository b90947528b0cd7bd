"""Blocks and reduction slots of the numba kernels (see ``kernels/_determinism.py``)."""

import numpy as np

from .._determinism import BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES
from ._jit import helper

__all__ = ["BLOCK_SIZE", "MAX_SLOTS", "SLOT_BUDGET_BYTES", "_n_slots", "_reduce_slots",
           "_slot_samples", "_sum_slots_into", "_center_sum_slots"]


@helper
def _n_slots(n_blocks, bytes_per_slot):
    """Number of reduction slots: a function of the problem size only."""
    by_budget = max(1, SLOT_BUDGET_BYTES // max(1, bytes_per_slot))
    return max(1, min(n_blocks, MAX_SLOTS, by_budget))


@helper
def _slot_samples(slot, n_slots, n_blocks, n_samples):
    """Sample range [start, stop) of a slot: a contiguous run of whole blocks."""
    b0 = slot * n_blocks // n_slots
    b1 = (slot + 1) * n_blocks // n_slots
    return b0 * BLOCK_SIZE, min(b1 * BLOCK_SIZE, n_samples)


@helper
def _reduce_slots(part_sums, part_weights, sums, weight_sums):
    """Add the slots in slot order: bit-identical for any thread count."""
    sums[:] = 0.0
    weight_sums[:] = 0.0
    for slot in range(part_sums.shape[0]):
        sums += part_sums[slot]
        weight_sums += part_weights[slot]


@helper
def _sum_slots_into(partial, out):
    """out[t] = sum over slots of partial[slot, t], in slot order."""
    for t in range(partial.shape[1]):
        acc = 0.0
        for slot in range(partial.shape[0]):
            acc += partial[slot, t]
        out[t] = acc


@helper
def _center_sum_slots(n_samples, n_clusters, n_features):
    """The slots of a per-center sum (the dense Lloyd and bounded steps, so that equal
    labels give equal sums): (n_blocks, n_slots, zeroed partial sums, partial weights
    and changed-label counts)."""
    n_blocks = (n_samples + BLOCK_SIZE - 1) // BLOCK_SIZE
    n_slots = _n_slots(n_blocks, 8 * n_clusters * (n_features + 1))
    return (n_blocks, n_slots, np.zeros((n_slots, n_clusters, n_features)),
            np.zeros((n_slots, n_clusters)), np.zeros(n_slots, dtype=np.int64))
