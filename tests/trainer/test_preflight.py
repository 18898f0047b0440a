"""Preflight: memory estimates order methods sensibly, token statistics are exact."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kubesft import sizing
from kubesft.api.job import SFTJobSpec
from kubesft.api.job_status import Preflight
from kubesft_trainer.chat_template import resolve_chat_template
from kubesft_trainer.data import tokenize_split
from kubesft_trainer.preflight import (
    check_feasible,
    memory_breakdown,
    run_preflight,
    token_stats,
)

LLAMA_8B = SimpleNamespace(
    num_params=8_030_261_248,
    hidden_size=4096,
    num_attention_heads=32,
    num_key_value_heads=8,
    intermediate_size=14336,
    num_hidden_layers=32,
    vocab_size=128256,
    tie_word_embeddings=False,
)
LLAMA_1B = SimpleNamespace(
    num_params=1_235_814_400,
    hidden_size=2048,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=64,
    intermediate_size=8192,
    num_hidden_layers=16,
    vocab_size=128256,
    tie_word_embeddings=True,
)


def job_spec(method: str = "lora", **training) -> SFTJobSpec:
    return SFTJobSpec.model_validate(
        {
            "model": {"name": "m"},
            "dataset": {"name": "d"},
            "output": {"pvc": {"claimName": "out"}},
            "method": {"type": method},
            "training": {"maxSeqLength": 2048, "microBatchSize": 1} | training,
        }
    )


def estimate(
    config=LLAMA_8B, method="lora", checkpointing=True, batch=1, world_size=1, **training
) -> dict:
    spec = job_spec(method, gradientCheckpointing=checkpointing, microBatchSize=batch, **training)
    shape = sizing.ModelShape.from_config(config, config.num_params)
    return memory_breakdown(sizing.estimate_job(spec, shape, world_size=world_size), spec)


def test_lora_needs_less_than_full_and_qlora_less_than_lora() -> None:
    full, lora, qlora = (estimate(method=m) for m in ("full", "lora", "qlora"))
    assert qlora["totalGiB"] < lora["totalGiB"] < full["totalGiB"]
    assert qlora["weightsGiB"] < lora["weightsGiB"] / 2
    assert lora["optimizerStatesGiB"] < 1 < full["optimizerStatesGiB"]


def test_gradient_checkpointing_lowers_activations() -> None:
    with_checkpoints, without = estimate(checkpointing=True), estimate(checkpointing=False)
    assert with_checkpoints["activationsGiB"] < without["activationsGiB"]
    assert with_checkpoints["weightsGiB"] == without["weightsGiB"]
    assert estimate(batch=4)["activationsGiB"] > with_checkpoints["activationsGiB"]


def test_full_bf16_adamw_of_an_8b_model_does_not_fit_an_80_gib_gpu() -> None:
    full = estimate(method="full")
    # 16 bytes per parameter: fp32 weights and gradients, m and v (+ autocast's bf16 copy).
    assert full["weightsGiB"] + full["gradientsGiB"] + full["optimizerStatesGiB"] == pytest.approx(
        18 * LLAMA_8B.num_params / 1024**3, rel=1e-3
    )
    assert full["totalGiB"] > 80
    message = check_feasible(full, 80, gpu_resource_name="nvidia.com/gpu")
    assert message.startswith(
        f"needs replicated (ddp) over 1 GPU, ~{full['totalGiB']:.1f} GiB per GPU "
        "but nvidia.com/gpu has 80 GiB"
    )
    assert "spec.method.type lora or qlora" in message
    assert "spec.training.optimizer adamw_8bit" in message


def test_full_8b_on_16_gpus_fits_when_sharded_and_advises_fsdp_when_replicated() -> None:
    sharded = estimate(method="full", world_size=16)
    assert sharded["strategy"] == "fsdp" and sharded["totalGiB"] < 40
    assert check_feasible(sharded, 80) is None
    replicated = estimate(method="full", world_size=16, parallelism="ddp")
    assert replicated["strategy"] == "ddp" and replicated["totalGiB"] > 80
    message = check_feasible(replicated, 80)
    assert message.startswith("needs replicated (ddp) over 16 GPUs")
    assert "spec.training.parallelism fsdp" in message


def test_lora_of_a_1b_model_fits_24_gib() -> None:
    lora = estimate(config=LLAMA_1B)
    assert lora["totalGiB"] < 24
    assert check_feasible(lora, 24) is None
    assert check_feasible(lora, None) is None  # unknown GPU memory: no verdict


def test_infeasible_lora_suggests_only_changes_that_apply() -> None:
    lora = estimate(checkpointing=False, batch=8)
    message = check_feasible(lora, 24, gpu_resource_name="amd.com/gpu")
    assert "amd.com/gpu has 24 GiB" in message
    assert "use spec.method.type qlora" in message
    assert "enable spec.training.gradientCheckpointing" in message
    assert "lower spec.training.microBatchSize (now 8)" in message
    assert "adamw_8bit" not in message


def test_token_stats_are_exact_on_known_lengths() -> None:
    lengths = [10, 20, 30, 40, 50, 60, 70, 80, 200, 300]
    stats = token_stats(lengths, max_seq_length=64)
    assert stats["truncatedFraction"] == 0.4
    assert stats["estimatedTokens"] == 10 + 20 + 30 + 40 + 50 + 60 + 64 * 4
    assert stats["lengthHistogram"] == {"16": 1, "32": 2, "64": 3, "128": 2, "256": 1, "512": 1}
    assert (stats["lengthP50"], stats["lengthP95"], stats["lengthMax"]) == (50, 300, 300)
    assert token_stats([], 64)["truncatedFraction"] == 0.0


def test_run_preflight_reports_preflight_status_fields(tiny_tokenizer, tiny_model) -> None:
    spec = SFTJobSpec.model_validate(
        {
            "model": {"name": "tiny", "chatTemplate": "chatml"},
            "dataset": {"name": "tiny"},
            "output": {"pvc": {"claimName": "out"}},
            "training": {"maxSeqLength": 16, "microBatchSize": 2},
        }
    )
    short = {"prompt": "what is", "completion": " the sum"}
    long = {
        "messages": [
            {"role": "user", "content": "what is the weather in paris and tokyo and lima"},
            {"role": "assistant", "content": "sunny"},
        ]
    }
    num_params = sum(p.numel() for p in tiny_model.parameters())
    template = resolve_chat_template("chatml", tiny_tokenizer)
    rows = [short, long, short, long]
    split = tokenize_split(rows, tiny_tokenizer, spec.training, template, "train.jsonl")

    result = run_preflight(spec, split, num_params, model_config=tiny_model.config)

    assert result["examples"] == 4 and len(split.examples) == 2  # the long ones were dropped
    assert result["lengthMax"] > 16  # lengths before truncation to maxSeqLength 16
    assert result["truncatedFraction"] == 0.5
    assert result["droppedFraction"] == 0.5  # the answer starts after token 16
    assert result["memory"]["microBatchSize"] == 2
    status = Preflight.model_validate(result)
    assert status.estimated_gpu_memory_gi_b == result["estimatedGpuMemoryGiB"] >= 1.0
    assert status.estimated_tokens == result["estimatedTokens"] <= 4 * 16
    assert (status.per_turn_conversations, status.per_turn_examples_added) == (0, 0)  # chatml
    assert check_feasible(result, 0.5) is not None
