"""The synthetic instruction task: held out for real, and learnt through the trainer CLI."""

from __future__ import annotations

import pytest

from bench.synthetic_task import MAX_WORDS, MIN_WORDS, WORDS, Scale, make_splits, run


def test_held_out_prompts_use_word_sets_never_trained_on() -> None:
    train, held_out = make_splits(500, 32, seed=3)

    def words(example: dict) -> list[str]:
        return example["messages"][0]["content"].split(":", 1)[1].split()

    trained = {frozenset(words(e)) for e in train}
    assert len(train) == 500 and len(held_out) == 32
    assert not trained & {frozenset(words(e)) for e in held_out}
    for example in [*train, *held_out]:
        asked = words(example)
        assert MIN_WORDS <= len(asked) <= MAX_WORDS and set(asked) <= set(WORDS)
        assert example["messages"][1]["content"].split()[1:] == asked[::-1]
    assert make_splits(500, 32, seed=3) == (train, held_out)


@pytest.mark.slow
def test_full_fine_tuning_teaches_a_tiny_llama_to_reverse_unseen_word_sets(tmp_path) -> None:
    # Smaller than the benchmark's defaults; the loss falls steeply around step 150.
    result = run(tmp_path, Scale(train=1000, evals=32, steps=300))

    assert result.exact_before <= 0.05, result.summary()
    assert result.exact_after >= 0.9, result.summary()
    assert result.loss_drop >= 0.5, result.summary()
