"""The training loss at graded positions only equals the loss over the whole logits."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import LlamaForCausalLM

from kubesft import sizing
from kubesft_trainer.collate import collate_packed, collate_padded
from kubesft_trainer.graded_loss import install_graded_loss, summed_head_loss
from kubesft_trainer.loop import summed_graded_loss, summed_token_loss
from kubesft_trainer.masking import IGNORE_INDEX, TokenizedExample

PAD_ID = 1


def chat_like_examples(vocab_size: int) -> list[TokenizedExample]:
    """Examples whose first ~40% of tokens are an ungraded prompt, as in chat data."""
    generator = torch.Generator().manual_seed(7)
    examples = []
    for length in (23, 9, 31, 14):
        ids = torch.randint(8, vocab_size, (length,), generator=generator).tolist()
        prompt = int(length * 0.4)
        examples.append(TokenizedExample(ids, [IGNORE_INDEX] * prompt + ids[prompt:]))
    return examples


def loss_and_grads(model: nn.Module, loss_of) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = loss_of()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def assert_same(reference, graded) -> None:
    (loss_ref, grads_ref), (loss, grads) = reference, graded
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    assert grads.keys() == grads_ref.keys()
    for name, grad in grads_ref.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def compare(model: nn.Module, batch) -> None:
    def full_logits():
        return summed_token_loss(model(**batch.model_inputs("sdpa")).logits, batch.labels)

    reference = loss_and_grads(model, full_logits)
    graded = loss_and_grads(
        model, lambda: summed_graded_loss(model, batch, "sdpa", torch.device("cpu"))
    )
    assert_same(reference, graded)


@pytest.mark.parametrize("packing", [True, False], ids=["packed", "padded"])
def test_graded_loss_and_gradients_equal_full_logits(tiny_model, packing: bool) -> None:
    examples = chat_like_examples(tiny_model.config.vocab_size)
    batch = collate_packed(examples) if packing else collate_padded(examples, PAD_ID)
    compare(tiny_model, batch)


def test_chunks_of_a_few_rows_equal_one_chunk(tiny_model, monkeypatch) -> None:
    monkeypatch.setattr(sizing, "MIN_LOSS_CHUNK_ROWS", 3)
    monkeypatch.setattr(sizing, "LOSS_CHUNK_LOGITS", 3)
    assert sizing.loss_chunk_rows(tiny_model.config.vocab_size) == 3
    compare(tiny_model, collate_packed(chat_like_examples(tiny_model.config.vocab_size)))


def test_tied_head_gets_both_gradients(tiny_model) -> None:
    config = tiny_model.config
    config.tie_word_embeddings = True
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    compare(model, collate_packed(chat_like_examples(model.config.vocab_size)))


@pytest.mark.parametrize("modules_to_save", [None, ["lm_head"]], ids=["lora", "lora-head"])
def test_lora_gradients_equal_full_logits(tiny_model, modules_to_save) -> None:
    from peft import LoraConfig, get_peft_model

    install_graded_loss(tiny_model)  # as model.load_model does, before peft wraps it
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules="all-linear",
        modules_to_save=modules_to_save,
        task_type="CAUSAL_LM",  # as model.lora_config: peft's forward then passes labels=None
    )
    model = get_peft_model(tiny_model, config)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # B starts at zero: make the adapters matter
            nn.init.normal_(param, std=0.02)
    compare(model, collate_packed(chat_like_examples(tiny_model.config.vocab_size)))


def test_nothing_graded_gives_zero_loss_with_gradients(tiny_model) -> None:
    ids = list(range(8, 20))
    batch = collate_packed([TokenizedExample(ids, [IGNORE_INDEX] * len(ids))])
    loss = summed_graded_loss(tiny_model, batch, "sdpa", torch.device("cpu"))
    loss.backward()
    assert float(loss) == 0.0
    assert tiny_model.lm_head.weight.grad is not None


def test_fused_head_matches_autograd_with_bias_and_bf16() -> None:
    torch.manual_seed(0)
    head = nn.Linear(16, 50, bias=True).to(torch.bfloat16)
    hidden = torch.randn(37, 16, dtype=torch.bfloat16, requires_grad=True)
    targets = torch.randint(0, 50, (37,))

    def reference():
        return nn.functional.cross_entropy(head(hidden).float(), targets, reduction="sum")

    expected = reference()
    expected.backward()
    grads = [t.grad.clone() for t in (hidden, head.weight, head.bias)]
    for t in (hidden, head.weight, head.bias):
        t.grad = None
    loss = summed_head_loss(head, hidden, targets)
    loss.backward()
    assert float(loss) == pytest.approx(float(expected), rel=1e-3)
    for got, want in zip((hidden.grad, head.weight.grad, head.bias.grad), grads, strict=True):
        torch.testing.assert_close(got, want, atol=2e-2, rtol=2e-2)


def test_plain_forward_is_unchanged(tiny_model) -> None:
    batch = collate_packed(chat_like_examples(tiny_model.config.vocab_size))
    before = tiny_model(**batch.model_inputs("sdpa")).logits
    install_graded_loss(tiny_model)
    after = tiny_model(**batch.model_inputs("sdpa")).logits
    torch.testing.assert_close(after, before)
