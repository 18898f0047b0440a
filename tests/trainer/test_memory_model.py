"""The memory model (`kubesft.sizing`) against torch's own accounting of tiny models.

States are counted tensor by tensor after a real optimizer step; activations are the
tensors autograd saves for backward (`saved_tensors_hooks`, each storage once), which
is what a training step holds at the end of its forward pass.
"""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from kubesft import sizing
from kubesft_trainer.collate import collate_packed
from kubesft_trainer.loop import summed_graded_loss, summed_token_loss
from kubesft_trainer.masking import IGNORE_INDEX, TokenizedExample
from kubesft_trainer.model import enable_checkpointing

CPU = torch.device("cpu")
TOKENS = 256
SHAPES = [  # (hidden, intermediate, heads, kv heads, layers): widths and depth varied
    (64, 128, 4, 2, 2),
    (64, 256, 4, 2, 3),
    (128, 352, 8, 2, 2),
    (96, 256, 4, 4, 2),
]


def llama(hidden: int, intermediate: int, heads: int, kv_heads: int, layers: int, vocab=400):
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        num_hidden_layers=layers,
        max_position_embeddings=512,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def chat_batch(vocab: int):
    ids = torch.randint(8, vocab, (TOKENS,), generator=torch.Generator().manual_seed(0)).tolist()
    prompt = int(0.4 * TOKENS)
    return collate_packed([TokenizedExample(ids, [IGNORE_INDEX] * prompt + ids[prompt:])])


def saved_bytes(run) -> int:
    """Bytes of the distinct storages autograd keeps for backward while `run()` executes."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return sum(storages.values())


def shape_of(model) -> sizing.ModelShape:
    return sizing.ModelShape.from_config(model.config, sum(p.numel() for p in model.parameters()))


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def test_full_fine_tuning_states_after_a_step_are_16_bytes_per_parameter() -> None:
    model = llama(*SHAPES[0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    summed_graded_loss(model, chat_batch(400), "sdpa", CPU).backward()
    optimizer.step()
    measured = tensor_bytes(model.parameters()) + tensor_bytes(p.grad for p in model.parameters())
    measured += sum(
        tensor_bytes(s for k, s in state.items() if k != "step")
        for state in optimizer.state.values()
    )
    shape = shape_of(model)
    estimate = sizing.estimate_memory(
        params=shape.params,
        method="full",
        precision="fp32",
        micro_batch_size=1,
        max_seq_length=TOKENS,
        hidden_size=shape.hidden_size,
        num_layers=shape.num_layers,
        gradient_checkpointing=False,
    )
    states = (estimate.weights + estimate.gradients + estimate.optimizer) * sizing.GIB
    assert states == pytest.approx(measured, rel=1e-6)
    sharded = sizing.estimate_memory(
        **{**_arguments(shape), "strategy": "fsdp", "world_size": 2, "method": "full"}
    )
    assert (sharded.weights + sharded.gradients + sharded.optimizer) * sizing.GIB == (
        pytest.approx(measured / 2, rel=1e-6)
    )


def test_lora_trainable_parameters_are_what_peft_creates() -> None:
    from peft import LoraConfig, get_peft_model

    model = llama(*SHAPES[2])
    shape = shape_of(model)
    peft_model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear"))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert trainable == sizing.lora_param_count(
        r=8,
        target_modules=["all-linear"],
        hidden_size=shape.hidden_size,
        num_layers=shape.num_layers,
        num_attention_heads=shape.num_attention_heads or 0,
        num_key_value_heads=shape.num_key_value_heads,
        intermediate_size=shape.intermediate_size,
    )


@pytest.mark.parametrize("dims", SHAPES, ids=lambda d: "x".join(map(str, d)))
def test_body_activations_are_estimated_within_a_quarter_above(dims) -> None:
    model = llama(*dims)
    model.train()
    batch = chat_batch(400)
    measured = saved_bytes(lambda: model.model(**batch.model_inputs("sdpa")).last_hidden_state)
    shape = shape_of(model)
    estimate = sizing.activation_bytes(
        TOKENS,
        shape.hidden_size,
        shape.num_layers,
        4.0,
        False,
        kv_size=shape.kv_size(),
        intermediate_size=shape.intermediate_size,
    )
    assert measured <= estimate <= 1.25 * measured


def test_checkpointing_keeps_layer_inputs_only() -> None:
    model = llama(*SHAPES[1])
    model.train()
    enable_checkpointing(model)
    batch = chat_batch(400)
    measured = saved_bytes(lambda: model.model(**batch.model_inputs("sdpa")).last_hidden_state)
    shape = shape_of(model)
    kept = sizing.activation_bytes(
        TOKENS,
        shape.hidden_size,
        shape.num_layers,
        4.0,
        True,
        kv_size=shape.kv_size(),
        intermediate_size=shape.intermediate_size,
    )
    recomputed = (
        TOKENS
        * 4.0
        * sizing.layer_activation_values(
            shape.hidden_size, shape.kv_size() or 0, shape.intermediate_size or 0
        )
    )
    # What the forward keeps; the one layer recomputed in backward comes on top of it.
    assert measured <= kept - recomputed <= 1.5 * measured


def test_loss_keeps_no_logits_and_stays_within_its_estimate() -> None:
    vocab = 4096
    model = llama(64, 128, 4, 2, 2, vocab=vocab)
    model.train()
    batch = chat_batch(vocab)
    inputs = batch.model_inputs("sdpa")
    body = saved_bytes(lambda: model.model(**inputs).last_hidden_state)
    graded = saved_bytes(lambda: summed_graded_loss(model, batch, "sdpa", CPU)) - body
    full = saved_bytes(lambda: summed_token_loss(model(**inputs).logits, batch.labels)) - body
    estimate = sizing.loss_bytes(TOKENS, 64, vocab, 4.0, head_trains=True)
    assert graded <= estimate
    # The reference keeps fp32 log-probabilities of every graded row: (N, V).
    assert full >= batch.num_label_tokens * vocab * 4 > 2 * graded


def _arguments(shape: sizing.ModelShape) -> dict:
    return {
        "params": shape.params,
        "method": "full",
        "precision": "fp32",
        "micro_batch_size": 1,
        "max_seq_length": TOKENS,
        "hidden_size": shape.hidden_size,
        "num_layers": shape.num_layers,
        "gradient_checkpointing": False,
    }
