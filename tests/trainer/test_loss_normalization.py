"""A step's loss is token-weighted over the whole step, however it is cut into micro-batches."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator
from transformers import LlamaForCausalLM

from kubesft_trainer.collate import collate_packed, collate_padded
from kubesft_trainer.loop import backward_step, summed_token_loss
from kubesft_trainer.masking import IGNORE_INDEX, TokenizedExample

LENGTHS = [5, 17, 9, 12]  # different lengths: a per-micro-batch mean would weigh them wrongly
PAD_ID = 1


def make_examples(vocab_size: int) -> list[TokenizedExample]:
    generator = torch.Generator().manual_seed(3)
    examples = []
    for length in LENGTHS:
        ids = torch.randint(8, vocab_size, (length,), generator=generator).tolist()
        prompt = length // 3
        examples.append(TokenizedExample(ids, [IGNORE_INDEX] * (prompt + 1) + ids[prompt + 1 :]))
    return examples


def collate(examples, packing: bool):
    return collate_packed(examples) if packing else collate_padded(examples, PAD_ID)


def step_gradients(model, batches) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    result = backward_step(Accelerator(cpu=True), model, batches, "sdpa")
    return result.loss, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("packing", [True, False], ids=["packed", "padded"])
def test_accumulation_4x1_equals_microbatch_4(tiny_model_dir, packing: bool) -> None:
    model = LlamaForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    examples = make_examples(model.config.vocab_size)

    loss_4x1, grads_4x1 = step_gradients(model, [collate([e], packing) for e in examples])
    loss_1x4, grads_1x4 = step_gradients(model, [collate(examples, packing)])

    assert loss_4x1 == pytest.approx(loss_1x4, abs=1e-5)
    for name, grad in grads_1x4.items():
        torch.testing.assert_close(grads_4x1[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_step_loss_is_the_mean_over_all_label_tokens(tiny_model_dir) -> None:
    model = LlamaForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    examples = make_examples(model.config.vocab_size)
    batches = [collate_packed(examples[:1]), collate_packed(examples[1:])]

    loss, _ = step_gradients(model, batches)

    with torch.no_grad():
        solo = [collate_packed([e]) for e in examples]
        total = sum(
            float(summed_token_loss(model(**b.model_inputs("sdpa")).logits, b.labels)) for b in solo
        )
    assert loss == pytest.approx(total / sum(b.num_label_tokens for b in solo), abs=1e-5)
