"""The one memory estimator: its parts follow the formulas, guesses from names stay close."""

from __future__ import annotations

import pytest

from kubesft.sizing import (
    GIB,
    estimate_memory,
    hidden_size_guess,
    layers_guess,
    lora_param_count,
    loss_bytes,
    loss_chunk_rows,
    params_from_name,
    resolve_strategy,
)

LLAMA_8B = {
    "params": 8_030_261_248,
    "hidden_size": 4096,
    "num_layers": 32,
    "vocab_size": 128256,
    "kv_size": 1024,
    "intermediate_size": 14336,
}
LLAMA_8B_LORA_16 = 41_943_040
"""r=16 on every linear layer: 16 * (8192 + 5120 + 5120 + 8192 + 3 * 18432) * 32."""


def estimate(method: str = "lora", **overrides):
    arguments = {
        **LLAMA_8B,
        "method": method,
        "precision": "bf16",
        "micro_batch_size": 1,
        "max_seq_length": 2048,
        "gradient_checkpointing": True,
        "lora_params": LLAMA_8B_LORA_16,
    }
    return estimate_memory(**(arguments | overrides))


def test_lora_params_of_llama_8b_all_linear() -> None:
    shape = {"hidden_size": 4096, "num_layers": 32, "num_attention_heads": 32}
    count = lora_param_count(
        r=16,
        target_modules=["all-linear"],
        num_key_value_heads=8,
        intermediate_size=14336,
        **shape,
    )
    assert count == LLAMA_8B_LORA_16
    attention_only = lora_param_count(
        r=16, target_modules=["q_proj", "v_proj"], num_key_value_heads=8, **shape
    )
    assert attention_only == 16 * (8192 + 5120) * 32
    # A name it cannot size counts as every linear layer: an upper bound.
    assert lora_param_count(r=16, target_modules=["w1"], **shape) > attention_only


def test_full_mixed_precision_costs_16_bytes_per_parameter_and_fsdp_splits_it() -> None:
    full = estimate("full", world_size=8)
    states = full.weights + full.gradients + full.optimizer
    # fp32 weights, gradients, m and v, plus autocast's bf16 copy of each weight under DDP.
    assert states == pytest.approx(18 * LLAMA_8B["params"] / GIB)
    assert full.trainable_params == LLAMA_8B["params"]
    assert (full.strategy, full.sharding_buffers) == ("ddp", 0.0)

    sharded = estimate("full", strategy="fsdp", world_size=8)
    assert sharded.weights + sharded.gradients + sharded.optimizer == pytest.approx(
        16 * LLAMA_8B["params"] / 8 / GIB
    )
    assert sharded.activations == full.activations  # every GPU still holds its own batch
    # Gathered: two layers in bf16 and one layer's fp32 gradient, plus embeddings and head.
    embeddings = 2 * LLAMA_8B["vocab_size"] * LLAMA_8B["hidden_size"]
    layer = (LLAMA_8B["params"] - embeddings) / 32
    assert sharded.sharding_buffers * GIB == pytest.approx(layer * (2 * 2 + 4) + embeddings * 2)
    assert sharded.describe() == f"sharded (fsdp) over 8 GPUs, ~{sharded.total:.1f} GiB per GPU"


def test_fsdp_on_one_gpu_is_one_replica() -> None:
    assert estimate("full", strategy="fsdp", world_size=1).strategy == "ddp"


@pytest.mark.parametrize(
    ("requested", "method", "world", "expected"),
    [
        ("auto", "full", 16, "fsdp"),
        ("auto", "full", 1, "ddp"),
        ("auto", "lora", 16, "ddp"),
        ("auto", "qlora", 8, "ddp"),
        ("ddp", "full", 16, "ddp"),
        ("fsdp", "full", 2, "fsdp"),
    ],
)
def test_strategy_auto_shards_full_fine_tuning_over_several_gpus(
    requested, method, world, expected
) -> None:
    assert resolve_strategy(requested, method, world) == expected


def test_qlora_stores_linear_layers_in_about_half_a_byte_and_embeddings_in_dtype() -> None:
    qlora = estimate("qlora")
    embeddings = 2 * LLAMA_8B["vocab_size"] * LLAMA_8B["hidden_size"]
    adapters = LLAMA_8B_LORA_16 * 4
    base = qlora.weights * GIB - adapters
    expected = (LLAMA_8B["params"] - embeddings) * 0.5159 + embeddings * 2
    assert base == pytest.approx(expected, rel=1e-3)
    single = estimate("qlora", double_quant=False).weights * GIB - adapters
    assert single > base


def test_methods_order_by_memory_and_adapters_train_a_fraction() -> None:
    full, lora, qlora = (estimate(m) for m in ("full", "lora", "qlora"))
    assert qlora.total < lora.total < full.total
    assert lora.trainable_params == LLAMA_8B_LORA_16
    # Unknown adapter size (the operator's case): 0.5 % of the base.
    assert estimate(lora_params=0).trainable_params == int(LLAMA_8B["params"] * 0.005)


def test_checkpointing_keeps_layer_inputs_and_one_layer_of_activations() -> None:
    tokens, hidden, layers = 2048, 4096, 32
    layer = 11 * hidden + 3 * 1024 + 5 * 14336  # values per token of one Llama-8B layer
    kept = estimate(vocab_size=0, gradient_checkpointing=True).activations * GIB
    assert kept == tokens * (hidden * layers + layer + 3 * hidden) * 2
    everything = estimate(vocab_size=0, gradient_checkpointing=False).activations * GIB
    assert everything == tokens * (layer * layers + 3 * hidden) * 2
    loss = estimate().activations * GIB - kept
    assert loss == loss_bytes(tokens, hidden, LLAMA_8B["vocab_size"], 2, head_trains=False)


def test_the_loss_holds_one_chunk_of_logits_not_the_whole_row() -> None:
    vocab, hidden = LLAMA_8B["vocab_size"], LLAMA_8B["hidden_size"]
    rows = loss_chunk_rows(vocab)
    assert rows * vocab <= 2**24 or rows == 128
    short = loss_bytes(100, hidden, vocab, 2, head_trains=False)
    assert short == 100 * vocab * (4 + 4) + 100 * hidden * 4  # fewer tokens than a chunk
    long = loss_bytes(32768, hidden, vocab, 2, head_trains=False)
    assert long - 32768 * hidden * 4 == rows * vocab * 8  # one chunk, however long the row
    whole_logits = 32768 * vocab * (2 + 8)
    assert long < whole_logits / 50
    assert loss_bytes(100, hidden, vocab, 2, head_trains=True) - short == vocab * hidden * 2


def test_overhead_is_the_cuda_context_plus_a_tenth_for_fragmentation() -> None:
    lora = estimate()
    rest = lora.weights + lora.gradients + lora.optimizer + lora.activations
    assert lora.overhead == pytest.approx(1.0 + 0.1 * rest)
    assert lora.as_dict()["total"] == round(lora.total, 2)


def test_the_operators_guess_from_the_name_is_close_to_the_real_shape() -> None:
    params = params_from_name("meta-llama/Llama-3.1-8B-Instruct")
    assert params is not None
    hidden = hidden_size_guess(params)
    guessed = estimate_memory(
        params=params,
        method="lora",
        precision="bf16",
        micro_batch_size=1,
        max_seq_length=2048,
        hidden_size=hidden,
        num_layers=layers_guess(params, hidden),
        gradient_checkpointing=True,
    )
    # Without the vocabulary the guess leaves out the logits; weights dominate anyway.
    assert guessed.total == pytest.approx(estimate().total, rel=0.25)
