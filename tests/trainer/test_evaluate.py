"""Evaluation: token-weighted loss and accuracy, greedy samples, and mode restoration."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model

from kubesft_trainer.chat_template import load_builtin_template
from kubesft_trainer.collate import collate_packed, collate_padded
from kubesft_trainer.evaluate import (
    EvalResult,
    eval_prompts,
    evaluate_loss,
    generate_samples,
    loss_sums,
    stop_token_ids,
)
from kubesft_trainer.masking import IGNORE_INDEX, TokenizedExample, tokenize_example

CHATML = load_builtin_template("chatml")
PARIS = {
    "messages": [
        {"role": "user", "content": "what is the weather in paris"},
        {"role": "assistant", "content": "sunny and warm"},
    ]
}


def graded(ids: list[int], graded_from: int) -> TokenizedExample:
    return TokenizedExample(ids, [IGNORE_INDEX] * graded_from + ids[graded_from:])


def hand_computed_loss(model, rows: list[TokenizedExample]) -> float:
    """Mean cross-entropy over every graded token of every row, one position at a time."""
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for row in rows:
            logits = model(input_ids=torch.tensor([row.input_ids])).logits[0]
            for t in range(1, len(row)):
                if row.labels[t] != IGNORE_INDEX:
                    total -= float(F.log_softmax(logits[t - 1], dim=-1)[row.labels[t]])
                    count += 1
    return total / count


def test_loss_is_token_weighted_cross_entropy(tiny_model) -> None:
    rows = [graded(list(range(10, 22)), 3), graded(list(range(40, 45)), 4)]
    batches = [collate_padded(rows[:1], pad_token_id=1), collate_padded(rows[1:], pad_token_id=1)]

    result = evaluate_loss(tiny_model, batches, "sdpa")

    assert result.tokens == 9 + 1
    assert result.loss == pytest.approx(hand_computed_loss(tiny_model, rows), rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(result.loss))


def test_packed_and_padded_batches_give_the_same_metrics(tiny_model) -> None:
    rows = [graded(list(range(10, 22)), 3), graded(list(range(40, 47)), 2)]
    packed = evaluate_loss(tiny_model, [collate_packed(rows)], "sdpa")
    padded = evaluate_loss(tiny_model, [collate_padded(rows, pad_token_id=1)], "sdpa")
    assert packed.tokens == padded.tokens
    assert packed.loss == pytest.approx(padded.loss, rel=1e-5)
    assert packed.token_accuracy == padded.token_accuracy


def test_sums_combine_like_an_all_reduce(tiny_model) -> None:
    rows = [graded(list(range(10, 22)), 3), graded(list(range(40, 45)), 1)]
    shards = [loss_sums(tiny_model, [collate_padded([row], 1)], "sdpa") for row in rows]
    combined = EvalResult.from_sums(*(sum(values) for values in zip(*shards, strict=True)))
    whole = evaluate_loss(tiny_model, [collate_padded(rows, 1)], "sdpa")
    assert combined.loss == pytest.approx(whole.loss, rel=1e-5)
    assert combined.tokens == whole.tokens


def test_perplexity_is_capped_and_empty_eval_is_an_error() -> None:
    assert math.isfinite(EvalResult.from_sums(1e6, 0, 1).perplexity)
    with pytest.raises(ValueError, match="graded no tokens"):
        EvalResult.from_sums(0.0, 0, 0)


def test_eval_ignores_dropout_works_through_peft_and_restores_train_mode(tiny_model) -> None:
    for module in tiny_model.modules():
        if hasattr(module, "attention_dropout"):
            module.attention_dropout = 0.5
    model = get_peft_model(
        tiny_model, LoraConfig(r=4, lora_dropout=0.5, target_modules="all-linear")
    )
    batch = collate_padded([graded(list(range(10, 30)), 2)], pad_token_id=1)
    model.train()
    with torch.no_grad():
        noisy = [model(**batch.model_inputs("sdpa")).logits for _ in range(2)]
    assert not torch.equal(*noisy), "dropout should be active in training mode"

    first = evaluate_loss(model, [batch], "sdpa")
    second = evaluate_loss(model, [batch], "sdpa")

    assert first == second
    assert model.training
    assert all(module.training for module in model.modules())


@pytest.fixture(scope="module")
def overfit_model(tiny_model_dir, tiny_tokenizer):
    """The tiny model trained until it answers the Paris question word for word."""
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    example = tokenize_example(
        PARIS, tiny_tokenizer, loss_on="assistant", max_seq_length=64, chat_template=CHATML
    )
    batch = collate_padded([example], tiny_tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(40):
        logits = model(**batch.model_inputs("sdpa")).logits[0, :-1]
        loss = F.cross_entropy(logits, batch.labels[0, 1:], ignore_index=IGNORE_INDEX)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, batch


def test_perfect_predictor_has_token_accuracy_one(overfit_model) -> None:
    model, batch = overfit_model
    result = evaluate_loss(model, [batch], "sdpa")
    assert result.token_accuracy == 1.0
    assert result.loss < 0.05


def test_generation_is_greedy_stops_at_end_of_turn_and_restores_mode(
    overfit_model, tiny_tokenizer
) -> None:
    model, _ = overfit_model
    prompts, references = eval_prompts([{"text": "no prompt here"}, PARIS], n=4)
    assert references == ["sunny and warm"]
    model.train()

    first = generate_samples(model, tiny_tokenizer, prompts, CHATML, max_new_tokens=30)
    second = generate_samples(model, tiny_tokenizer, prompts, CHATML, max_new_tokens=30)

    # Without stopping at <|im_end|> the 30 new tokens would run on past the answer.
    assert first == second == ["sunny and warm"]
    assert model.training


def test_eval_prompts_cut_before_the_last_answer() -> None:
    conversation = {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "sum of two plus two"},
            {"role": "assistant", "content": "4"},
        ]
    }
    pair = {"prompt": "1 plus 1 equals", "completion": " 2"}
    prompts, references = eval_prompts([conversation, pair, pair], n=2)
    assert prompts == [{"messages": conversation["messages"][:3]}, {"prompt": "1 plus 1 equals"}]
    assert references == ["4", " 2"]


def test_stop_tokens_include_end_of_turn_markers_and_eos(tiny_tokenizer) -> None:
    ids = stop_token_ids(tiny_tokenizer)
    tokens = set(tiny_tokenizer.convert_ids_to_tokens(ids))
    assert tokens == {"<|im_end|>", "<|eot_id|>", "<|endoftext|>"}
