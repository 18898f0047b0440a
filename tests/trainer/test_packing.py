"""Best-fit-decreasing packing: valid bins, no worse than first-fit, fast at dataset scale."""

from __future__ import annotations

import math
import random
import time

import pytest

from kubesft_trainer.packing import pack_examples, packing_stats


def first_fit(lengths: list[int], max_seq_length: int) -> list[list[int]]:
    """Reference: first-fit in the given order, the naive packer BFD must not lose to."""
    bins: list[list[int]] = []
    loads: list[int] = []
    for index, length in enumerate(lengths):
        for b, load in enumerate(loads):
            if load + length <= max_seq_length:
                bins[b].append(index)
                loads[b] += length
                break
        else:
            bins.append([index])
            loads.append(length)
    return bins


def random_lengths(count: int, max_seq_length: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    # Chat data is skewed: many short examples, a tail of long ones.
    return [min(max_seq_length, int(rng.paretovariate(1.2) * 40)) for _ in range(count)]


@pytest.mark.parametrize("seed", range(5))
def test_bins_fit_place_every_example_once_and_beat_first_fit(seed: int) -> None:
    max_seq_length = 512
    lengths = random_lengths(300, max_seq_length, seed)
    bins = pack_examples(lengths, max_seq_length)
    assert all(sum(lengths[i] for i in members) <= max_seq_length for members in bins)
    assert sorted(i for members in bins for i in members) == list(range(len(lengths)))
    assert len(bins) <= len(first_fit(lengths, max_seq_length))
    # BFD is within 11/9 OPT + 6/9, and OPT is at least the total over the capacity.
    lower_bound = math.ceil(sum(lengths) / max_seq_length)
    assert len(bins) <= 11 / 9 * lower_bound + 6 / 9 + 1e-9


def test_exact_fit_is_found_where_first_fit_in_order_fails() -> None:
    lengths = [3, 6, 4, 7, 5, 5]
    assert len(first_fit(lengths, 10)) == 4
    bins = pack_examples(lengths, 10)
    assert sorted(sorted(lengths[i] for i in members) for members in bins) == [
        [3, 7],
        [4, 6],
        [5, 5],
    ]


def test_fifty_thousand_examples_pack_well_under_a_second() -> None:
    lengths = random_lengths(50_000, 2048, seed=1)
    started = time.perf_counter()
    bins = pack_examples(lengths, 2048)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"packing took {elapsed:.2f}s"
    assert packing_stats(bins, lengths, 2048).efficiency > 0.99


def test_stats_report_share_of_real_tokens() -> None:
    lengths = [6, 4, 5, 2]
    bins = pack_examples(lengths, 10)
    stats = packing_stats(bins, lengths, 10)
    assert (stats.num_examples, stats.num_bins) == (4, 2)
    assert (stats.real_tokens, stats.capacity_tokens) == (17, 20)
    assert stats.efficiency == pytest.approx(0.85)


def test_empty_input_packs_into_no_bins() -> None:
    assert pack_examples([], 16) == []
    assert packing_stats([], [], 16).efficiency == 0.0


def test_example_longer_than_max_is_rejected() -> None:
    with pytest.raises(ValueError, match="example 1 has length 17"):
        pack_examples([3, 17], 16)
