"""Micro-batches: reproducible per-epoch order, equal work per rank, explicit positions."""

from __future__ import annotations

from kubesft_trainer.data import DataPosition, MicroBatchPlan, step_micro_batches

UNITS = [[i] for i in range(7)]


def plan(rank: int = 0, world_size: int = 1, units=UNITS, size: int = 1) -> MicroBatchPlan:
    return MicroBatchPlan(units, micro_batch_size=size, world_size=world_size, rank=rank, seed=5)


def test_epoch_order_is_reproducible_and_reshuffled_each_epoch() -> None:
    assert plan().epoch(0) == plan().epoch(0)
    assert plan().epoch(0) != plan().epoch(1)
    assert sorted(i for batch in plan().epoch(3) for i in batch) == list(range(7))


def test_every_rank_runs_the_same_number_of_micro_batches_covering_the_epoch() -> None:
    ranks = [plan(rank, world_size=3).epoch(0) for rank in range(3)]

    assert [len(r) for r in ranks] == [3, 3, 3]  # 7 micro-batches padded to 9 by wrapping
    assert {i for r in ranks for batch in r for i in batch} == set(range(7))


def test_ranks_of_a_step_hold_the_micro_batches_one_process_would() -> None:
    """With accumulation A on W ranks a step uses the same micro-batches as A*W on one."""
    single = plan(size=2).epoch(0)
    ranks = [plan(rank, world_size=2, size=2).epoch(0) for rank in range(2)]

    assert sorted(single[:2]) == sorted([ranks[0][0], ranks[1][0]])


def test_steps_walk_the_epoch_and_the_last_step_may_be_short() -> None:
    position, sizes = DataPosition(), []
    for _ in range(4):
        batches, position = step_micro_batches(plan(), position, accumulation=3)
        sizes.append(len(batches))

    assert sizes == [3, 3, 1, 3]
    assert position == DataPosition(epoch=1, micro_batch=3)


def test_a_position_rescaled_to_more_ranks_continues_from_the_same_place() -> None:
    assert DataPosition(2, 6).rescaled(1, 2) == DataPosition(2, 3)
    _, position = step_micro_batches(plan(), DataPosition(0, 9), accumulation=2)
    assert position == DataPosition(1, 2)  # past the end of epoch 0: the next epoch starts
