"""Packed batches must train exactly like the same examples run one by one."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch.nn import functional
from transformers import LlamaForCausalLM

from kubesft_trainer.attention import register_packed_sdpa
from kubesft_trainer.collate import collate_packed, collate_padded
from kubesft_trainer.masking import IGNORE_INDEX, TokenizedExample

ATTENTION = ["sdpa", "eager", register_packed_sdpa()]  # the last: what `sdpa` trains with
LENGTHS = [7, 13, 4, 10]


def make_examples(vocab_size: int, lengths: list[int] = LENGTHS) -> list[TokenizedExample]:
    """Random tokens with a prompt part left ungraded, as masking produces."""
    generator = torch.Generator().manual_seed(0)
    examples = []
    for length in lengths:
        ids = torch.randint(8, vocab_size, (length,), generator=generator).tolist()
        prompt = length // 3
        examples.append(TokenizedExample(ids, [IGNORE_INDEX] * prompt + ids[prompt:]))
    return examples


def load_model(directory, attn_implementation: str) -> LlamaForCausalLM:
    model = LlamaForCausalLM.from_pretrained(
        directory, dtype=torch.float32, attn_implementation=attn_implementation
    )
    assert model.config._attn_implementation == attn_implementation
    return model


def summed_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of next-token losses, the quantity the loop divides by the step's label count."""
    return functional.cross_entropy(
        logits[..., :-1, :].flatten(0, -2).float(),
        labels[..., 1:].flatten(),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def loss_and_grads(model, batches, attn_implementation: str):
    model.zero_grad(set_to_none=True)
    total = sum(
        summed_token_loss(model(**batch.model_inputs(attn_implementation)).logits, batch.labels)
        for batch in batches
    )
    total.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
    return total.detach(), grads


@pytest.mark.parametrize("attn_implementation", ATTENTION)
def test_packed_loss_and_grads_equal_unpacked(tiny_model_dir, attn_implementation) -> None:
    model = load_model(tiny_model_dir, attn_implementation).train()
    examples = make_examples(model.config.vocab_size)
    packed = collate_packed(examples)
    solo = [collate_packed([example]) for example in examples]
    assert packed.num_label_tokens == sum(batch.num_label_tokens for batch in solo)

    packed_loss, packed_grads = loss_and_grads(model, [packed], attn_implementation)
    solo_loss, solo_grads = loss_and_grads(model, solo, attn_implementation)

    torch.testing.assert_close(packed_loss, solo_loss, atol=1e-4, rtol=0)
    for name, grad in solo_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, atol=1e-4, rtol=0, msg=name)


@pytest.mark.parametrize("attn_implementation", ATTENTION)
def test_packed_logits_of_each_example_equal_its_solo_logits(
    tiny_model_dir, attn_implementation
) -> None:
    model = load_model(tiny_model_dir, attn_implementation).eval()
    examples = make_examples(model.config.vocab_size)
    packed = collate_packed(examples)
    starts = packed.cu_seq_lens.tolist()
    with torch.no_grad():
        packed_logits = model(**packed.model_inputs(attn_implementation)).logits[0]
        # Control: the same row with a plain causal mask (a 2D mask turns off packed
        # detection) lets later examples see earlier ones, so this comparison can fail.
        leaky_logits = model(
            input_ids=packed.input_ids,
            position_ids=packed.position_ids,
            attention_mask=torch.ones_like(packed.input_ids),
            use_cache=False,
        ).logits[0]
        for index, example in enumerate(examples):
            solo = collate_packed([example])
            solo_logits = model(**solo.model_inputs(attn_implementation)).logits[0]
            window = slice(starts[index], starts[index + 1])
            torch.testing.assert_close(packed_logits[window], solo_logits, atol=1e-5, rtol=0)
            if index > 0:
                assert not torch.allclose(leaky_logits[window], solo_logits, atol=1e-3)


def test_packed_batch_restarts_positions_and_ungrades_boundaries() -> None:
    examples = [
        TokenizedExample([11, 12, 13], [IGNORE_INDEX, 12, 13]),
        TokenizedExample([21, 22], [21, 22]),
        TokenizedExample([31, 32, 33, 34], [31, 32, 33, 34]),
    ]
    batch = collate_packed(examples)
    assert batch.input_ids.tolist() == [[11, 12, 13, 21, 22, 31, 32, 33, 34]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]
    assert batch.labels.tolist() == [[-100, 12, 13, -100, 22, -100, 32, 33, 34]]
    assert batch.cu_seq_lens.tolist() == [0, 3, 5, 9]
    assert batch.cu_seq_lens.dtype == torch.int32
    assert batch.seq_lens.tolist() == [3, 2, 4]
    assert batch.max_length == 4
    assert batch.num_label_tokens == 6
    assert "attention_mask" not in batch.model_inputs("sdpa")
    assert batch.model_inputs("flash_attention_2")["cu_seq_lens_q"] is batch.cu_seq_lens


@pytest.mark.parametrize("attn_implementation", ATTENTION)
def test_padded_loss_equals_unpacked(tiny_model_dir, attn_implementation) -> None:
    model = load_model(tiny_model_dir, attn_implementation).eval()
    examples = make_examples(model.config.vocab_size)
    padded = collate_padded(examples, pad_token_id=1, pad_to_multiple_of=8)
    assert padded.input_ids.shape == (len(examples), 16)
    with torch.no_grad():
        padded_loss = summed_token_loss(
            model(**padded.model_inputs(attn_implementation)).logits, padded.labels
        )
        solo_loss = sum(
            summed_token_loss(model(**b.model_inputs(attn_implementation)).logits, b.labels)
            for b in (collate_packed([example]) for example in examples)
        )
    torch.testing.assert_close(padded_loss, solo_loss, atol=1e-4, rtol=0)


NO_CUDA = not torch.cuda.is_available()
NO_FLASH = importlib.util.find_spec("flash_attn") is None


@pytest.mark.parametrize(
    "attn_implementation",
    [
        pytest.param("sdpa", marks=pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device")),
        pytest.param(
            "flash_attention_2",
            marks=pytest.mark.skipif(
                NO_CUDA or NO_FLASH, reason="needs the flash-attn package and a CUDA device"
            ),
        ),
    ],
)
def test_cuda_bf16_packed_logits_equal_solo_logits(tiny_model_dir, attn_implementation) -> None:
    """The packing mask (sdpa) or varlen kwargs (flash) hold on CUDA kernels in bf16."""
    model = (
        LlamaForCausalLM.from_pretrained(
            tiny_model_dir, dtype=torch.bfloat16, attn_implementation=attn_implementation
        )
        .cuda()
        .eval()
    )
    examples = make_examples(model.config.vocab_size)
    packed = collate_packed(examples)
    inputs = {
        key: value.cuda() if isinstance(value, torch.Tensor) else value
        for key, value in packed.model_inputs(attn_implementation).items()
    }
    starts = packed.cu_seq_lens.tolist()
    with torch.no_grad():
        packed_logits = model(**inputs).logits[0].float()
        for index, example in enumerate(examples):
            solo_ids = torch.tensor([example.input_ids]).cuda()
            solo_logits = model(input_ids=solo_ids, use_cache=False).logits[0].float()
            window = slice(starts[index], starts[index + 1])
            torch.testing.assert_close(packed_logits[window], solo_logits, atol=3e-2, rtol=0)
