"""The mixture's draw: weights honoured, seeded, repeats and subsampling, resume mid-epoch."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from kubesft.api.job import Training
from kubesft_trainer import data
from kubesft_trainer.data import DataPosition, MicroBatchPlan, step_micro_batches
from kubesft_trainer.masking import TokenizedExample
from kubesft_trainer.mixture import MemberExamples, describe_plan, draw_mixture


def lengths(count: int, low: int, high: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(low, high) for _ in range(count)]


# A large chat set, a small code set up-weighted past its size, long replay text.
CHAT = MemberExamples("chat", 0.7, lengths(1000, 20, 80, seed=1))
CODE = MemberExamples("code", 0.25, lengths(300, 40, 160, seed=2))
TEXT = MemberExamples("general-text", 0.05, lengths(50, 200, 400, seed=3))
MEMBERS = [CHAT, CODE, TEXT]


def test_examples_mode_gives_each_member_its_weight_of_the_examples() -> None:
    drawn = draw_mixture(MEMBERS, "examples", seed=7)
    total = sum(len(m.lengths) for m in MEMBERS)
    epoch = sum(len(chosen) for chosen in drawn.indices)
    assert abs(epoch - total) <= len(MEMBERS)  # an epoch is about one pass over all data
    for member, chosen, entry in zip(MEMBERS, drawn.indices, drawn.plan, strict=True):
        assert abs(len(chosen) / epoch - member.weight) <= 1 / epoch, member.name
        assert entry.examples_per_epoch == len(chosen) == round(member.weight * total)
        assert entry.examples == len(member.lengths)
        assert entry.tokens_per_epoch == sum(member.lengths[i] for i in chosen)
        assert entry.repeats == pytest.approx(len(chosen) / len(member.lengths), abs=1e-4)
    assert [e.weight for e in drawn.plan] == pytest.approx([0.7, 0.25, 0.05])


def test_tokens_mode_gives_each_member_its_weight_of_the_tokens() -> None:
    # Replay text rows are ~5x longer than chat: by tokens it gets far fewer examples.
    drawn = draw_mixture(MEMBERS, "tokens", seed=7)
    tokens = [e.tokens_per_epoch for e in drawn.plan]
    total = sum(tokens)
    longest = max(max(m.lengths) for m in MEMBERS)
    for member, got in zip(MEMBERS, tokens, strict=True):
        assert abs(got / total - member.weight) <= longest / total, member.name
    by_examples = draw_mixture(MEMBERS, "examples", seed=7)
    assert drawn.plan[2].examples_per_epoch < by_examples.plan[2].examples_per_epoch


@pytest.mark.parametrize("mix_by", ["examples", "tokens"])
def test_an_up_weighted_member_is_repeated_and_a_down_weighted_one_subsampled(mix_by) -> None:
    big = MemberExamples("big", 1.0, lengths(1000, 45, 55, seed=4))
    small = MemberExamples("small", 1.0, lengths(100, 45, 55, seed=5))
    drawn = draw_mixture([big, small], mix_by, seed=7)
    many, few = (Counter(chosen) for chosen in drawn.indices)
    # big asks for about 550 of its 1000 examples: distinct ones, a subset.
    assert max(many.values()) == 1 and len(many) == drawn.plan[0].examples_per_epoch
    assert 500 < len(many) < 600 and drawn.plan[0].repeats < 1
    # small asks for about 550 of its 100: five copies of each, half of them a sixth time.
    assert set(few) == set(range(100)) and set(few.values()) == {5, 6}
    assert sum(few.values()) == drawn.plan[1].examples_per_epoch
    assert 5 < drawn.plan[1].repeats < 6


def test_a_member_asking_for_several_copies_gets_whole_copies_first() -> None:
    small = MemberExamples("small", 3.0, [10] * 4)
    big = MemberExamples("big", 1.0, [10] * 96)
    drawn = draw_mixture([small, big], "examples", seed=0)
    # small wants 0.75 * 100 = 75 examples of 4: 18 copies and 3 more.
    assert Counter(Counter(drawn.indices[0]).values()) == {19: 3, 18: 1}
    assert drawn.plan[0].repeats == 18.75


@pytest.mark.parametrize("mix_by", ["examples", "tokens"])
def test_every_member_keeps_at_least_one_example(mix_by) -> None:
    tiny = MemberExamples("tiny", 1e-6, [30, 40])
    drawn = draw_mixture([CHAT, tiny], mix_by, seed=7)
    assert len(drawn.indices[1]) == 1


@pytest.mark.parametrize("mix_by", ["examples", "tokens"])
def test_the_draw_is_fixed_by_the_seed(mix_by) -> None:
    first = draw_mixture(MEMBERS, mix_by, seed=7)
    assert draw_mixture(MEMBERS, mix_by, seed=7) == first
    other = draw_mixture(MEMBERS, mix_by, seed=8)
    assert other.indices != first.indices  # the subsets differ


def test_weights_are_relative() -> None:
    scaled = [MemberExamples(m.name, m.weight * 100, m.lengths) for m in MEMBERS]
    assert draw_mixture(scaled, "examples", seed=7) == draw_mixture(MEMBERS, "examples", seed=7)


def test_a_members_draw_depends_on_its_name_not_its_position() -> None:
    a = MemberExamples("a", 1.0, lengths(100, 5, 9, seed=4))
    b = MemberExamples("b", 1.0, lengths(100, 5, 9, seed=5))
    c = MemberExamples("c", 2.0, lengths(100, 5, 9, seed=6))
    forward = draw_mixture([a, b, c], "examples", seed=3)
    backward = draw_mixture([c, b, a], "examples", seed=3)
    assert forward.indices == backward.indices[::-1]


@pytest.mark.parametrize("mix_by", ["examples", "tokens"])
@pytest.mark.parametrize("weight", [1.0, 5.0])
def test_a_single_dataset_is_every_example_once_in_order(mix_by, weight) -> None:
    drawn = draw_mixture([MemberExamples("only", weight, CODE.lengths)], mix_by, seed=11)
    assert drawn.indices == [list(range(300))]
    (entry,) = drawn.plan
    assert (entry.weight, entry.repeats, entry.examples_per_epoch) == (1.0, 1.0, 300)


def test_bad_members_are_refused() -> None:
    with pytest.raises(ValueError, match="'empty' has no training examples"):
        draw_mixture([CHAT, MemberExamples("empty", 1.0, [])], "examples", seed=0)
    with pytest.raises(ValueError, match="'zero': weight must be > 0"):
        draw_mixture([MemberExamples("zero", 0.0, [3])], "examples", seed=0)


def test_the_plan_says_what_was_repeated_and_subsampled() -> None:
    text = describe_plan(draw_mixture(MEMBERS, "examples", seed=7).plan, "examples", 7)
    assert "mixture of 3 datasets by examples (seed 7)" in text
    assert "chat: weight 0.7, 945 examples of 1000 (subsampled to 94.5%)" in text
    assert "code: weight 0.25, 338 examples of 300 (repeated x1.1267)" in text


def mixed_examples(seed: int) -> list[TokenizedExample]:
    """The mixture's examples as `members.mix_members` lays them out (member order)."""
    drawn = draw_mixture(MEMBERS, "examples", seed=seed)
    return [
        TokenizedExample([m_index] * member.lengths[i], [m_index] * member.lengths[i])
        for m_index, (member, chosen) in enumerate(zip(MEMBERS, drawn.indices, strict=True))
        for i in chosen
    ]


def micro_batch_plan(seed: int, *, packing: bool) -> tuple[list[TokenizedExample], MicroBatchPlan]:
    """What a (re)started trainer builds: the draw, the units, the shuffling plan."""
    training = Training(max_seq_length=512, packing=packing, micro_batch_size=2)
    examples = mixed_examples(seed)
    units = data.build_units(examples, training)
    return examples, MicroBatchPlan(units, micro_batch_size=2, world_size=2, rank=1, seed=seed)


def steps_from(plan: MicroBatchPlan, position: DataPosition, steps: int) -> list[list[list[int]]]:
    out = []
    for _ in range(steps):
        groups, position = step_micro_batches(plan, position, accumulation=3)
        out.append(groups)
    return out


@pytest.mark.parametrize("packing", [True, False])
def test_a_restarted_run_continues_the_same_order_mid_epoch(packing: bool) -> None:
    examples, straight = micro_batch_plan(seed=7, packing=packing)
    run = steps_from(straight, DataPosition(), straight.per_rank)  # past one epoch
    # A new process rebuilds everything from the config alone and resumes at step 5.
    rebuilt_examples, rebuilt = micro_batch_plan(seed=7, packing=packing)
    assert rebuilt_examples == examples
    resumed = steps_from(rebuilt, DataPosition(epoch=0, micro_batch=15), len(run) - 5)
    assert resumed == run[5:]
    assert straight.epoch(1) != straight.epoch(0)  # reshuffled every epoch
