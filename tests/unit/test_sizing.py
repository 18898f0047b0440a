"""The one memory estimator: its parts follow the formulas, guesses from names stay close."""

from __future__ import annotations

import pytest

from kubesft.sizing import (
    GIB,
    estimate_memory,
    hidden_size_guess,
    layers_guess,
    lora_param_count,
    params_from_name,
)

LLAMA_8B = {
    "params": 8_030_261_248,
    "hidden_size": 4096,
    "num_layers": 32,
    "vocab_size": 128256,
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


def test_full_mixed_precision_costs_16_bytes_per_parameter_and_shards_split_it() -> None:
    full = estimate("full")
    states = full.weights + full.gradients + full.optimizer
    assert states == pytest.approx(16 * LLAMA_8B["params"] / GIB)
    assert full.trainable_params == LLAMA_8B["params"]

    sharded = estimate("full", shards=8)
    assert sharded.weights + sharded.gradients + sharded.optimizer == pytest.approx(states / 8)
    assert sharded.activations == full.activations  # every GPU still holds its own batch


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
    kept = estimate(vocab_size=0, gradient_checkpointing=True).activations * GIB
    assert kept == tokens * hidden * (2 * layers + 34)
    everything = estimate(vocab_size=0, gradient_checkpointing=False).activations * GIB
    assert everything == tokens * hidden * 34 * layers
    logits = estimate().activations * GIB - kept
    assert logits == tokens * LLAMA_8B["vocab_size"] * (2 + 8)


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
