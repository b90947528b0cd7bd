"""Blocks and reduction slots of the numba kernels (see ``kernels/_determinism.py``)."""

from .._determinism import BLOCK_SIZE, MAX_SLOTS, SLOT_BUDGET_BYTES
from ._jit import helper

__all__ = ["BLOCK_SIZE", "MAX_SLOTS", "SLOT_BUDGET_BYTES", "_n_slots", "_reduce_slots",
           "_slot_samples"]


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
