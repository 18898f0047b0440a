"""Best-fit-decreasing packing of examples into bins of `maxSeqLength` tokens."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PackingStats:
    """How well the bins are filled; `efficiency` is the share of real (non-padding) tokens."""

    num_examples: int
    num_bins: int
    real_tokens: int
    capacity_tokens: int

    @property
    def efficiency(self) -> float:
        return self.real_tokens / self.capacity_tokens if self.capacity_tokens else 0.0


def pack_examples(lengths: Sequence[int], max_seq_length: int) -> list[list[int]]:
    """Group example indices into bins whose total length is at most `max_seq_length`.

    Each example goes, longest first, into the fullest bin it still fits. Bins are kept
    grouped by remaining capacity in a sorted list of distinct capacities, so a lookup is a
    bisect over at most `max_seq_length` values, not a scan over all bins.
    """
    if max_seq_length < 1:
        raise ValueError(f"spec.training.maxSeqLength must be >= 1 (got {max_seq_length})")
    for index, length in enumerate(lengths):
        if not 0 <= length <= max_seq_length:
            raise ValueError(
                f"example {index} has length {length}, outside [0, {max_seq_length}]; "
                "truncate examples to spec.training.maxSeqLength before packing"
            )
    order = sorted(range(len(lengths)), key=lambda index: (-lengths[index], index))
    bins: list[list[int]] = []
    capacities: list[int] = []  # sorted distinct remaining capacities that have open bins
    bins_with: dict[int, list[int]] = {}  # remaining capacity -> ids of bins with it
    for index in order:
        length = lengths[index]
        position = bisect.bisect_left(capacities, length)
        if position < len(capacities):
            remaining = capacities[position]
            holders = bins_with[remaining]
            bin_id = holders.pop()
            if not holders:
                del bins_with[remaining]
                del capacities[position]
        else:
            bin_id, remaining = len(bins), max_seq_length
            bins.append([])
        bins[bin_id].append(index)
        left = remaining - length
        if left > 0:
            if left not in bins_with:
                bisect.insort(capacities, left)
                bins_with[left] = []
            bins_with[left].append(bin_id)
    return bins


def packing_stats(
    bins: Sequence[Sequence[int]], lengths: Sequence[int], max_seq_length: int
) -> PackingStats:
    """Tokens used versus tokens the bins could hold."""
    return PackingStats(
        num_examples=sum(len(members) for members in bins),
        num_bins=len(bins),
        real_tokens=sum(lengths[index] for members in bins for index in members),
        capacity_tokens=len(bins) * max_seq_length,
    )
