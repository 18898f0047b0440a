"""Preflight: will the job fit on its GPUs, and how many tokens will it train on?

The memory estimate is `kubesft.sizing`'s, the one the operator's Feasible condition
uses, fed here with the real parameter count and shape of the model's config instead of
guesses from its name. It is per GPU under data parallelism (every GPU holds a full
replica): a rough, slightly pessimistic guide, not a promise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kubesft import sizing
from kubesft.api.job import SFTJobSpec
from kubesft_trainer.data import TokenizedSplit
from kubesft_trainer.prepare import length_histogram


def estimate_gpu_memory_gib(
    num_params: int,
    method: str,
    precision: str,
    lora_params: int,
    quant: str | None,
    micro_batch_size: int,
    max_seq_length: int,
    hidden_size: int,
    num_layers: int,
    gradient_checkpointing: bool,
    optimizer: str,
    *,
    vocab_size: int = 0,
    tied_embeddings: bool = False,
    double_quant: bool = True,
    extra_trainable_params: int = 0,
) -> dict[str, Any]:
    """Per-GPU memory breakdown in GiB, as the `memory` fields of preflight.json.

    `quant` is a 4-bit type (`nf4`, `fp4`) or None; `extra_trainable_params` counts
    modules trained in full next to adapters (`modulesToSave`).
    """
    estimate = sizing.estimate_memory(
        params=num_params,
        method="qlora" if quant is not None else method,
        precision=precision,
        micro_batch_size=micro_batch_size,
        max_seq_length=max_seq_length,
        hidden_size=hidden_size,
        num_layers=num_layers,
        gradient_checkpointing=gradient_checkpointing,
        lora_params=lora_params,
        optimizer=optimizer,
        vocab_size=vocab_size,
        tied_embeddings=tied_embeddings,
        double_quant=double_quant,
        extra_trainable_params=extra_trainable_params,
    )
    parts = {
        "weightsGiB": estimate.weights,
        "gradientsGiB": estimate.gradients,
        "optimizerStatesGiB": estimate.optimizer,
        "activationsGiB": estimate.activations,
        "overheadGiB": estimate.overhead,
        "totalGiB": estimate.total,
    }
    return {
        **{key: round(value, 2) for key, value in parts.items()},
        "trainableParams": estimate.trainable_params,
        "method": method,
        "optimizer": optimizer,
        "microBatchSize": micro_batch_size,
        "maxSeqLength": max_seq_length,
        "gradientCheckpointing": gradient_checkpointing,
    }


def lora_param_count(config: Any, r: int, target_modules: Sequence[str]) -> int:
    """Adapter parameters of a model with this (transformers) config; see `sizing`."""
    return sizing.lora_param_count(
        r=r,
        target_modules=target_modules,
        hidden_size=int(config.hidden_size),
        num_layers=int(config.num_hidden_layers),
        num_attention_heads=int(config.num_attention_heads),
        num_key_value_heads=_optional_int(config, "num_key_value_heads"),
        head_dim=_optional_int(config, "head_dim"),
        intermediate_size=_optional_int(config, "intermediate_size"),
    )


def _optional_int(config: Any, name: str) -> int | None:
    value = getattr(config, name, None)
    return int(value) if value else None


def token_stats(lengths: Sequence[int], max_seq_length: int) -> dict[str, Any]:
    """Tokens trained on after truncation, the truncated share and the length spread."""
    ordered = sorted(lengths)
    count = len(ordered)

    def percentile(p: float) -> int:
        # Nearest rank: the smallest length at or above p percent of the examples.
        return ordered[max(math.ceil(p / 100 * count) - 1, 0)] if count else 0

    return {
        "examples": count,
        "estimatedTokens": sum(min(n, max_seq_length) for n in ordered),
        "truncatedFraction": sum(n > max_seq_length for n in ordered) / count if count else 0.0,
        "lengthHistogram": length_histogram(ordered),
        "lengthP50": percentile(50),
        "lengthP95": percentile(95),
        "lengthMax": ordered[-1] if count else 0,
    }


def run_preflight(
    spec: SFTJobSpec, train: TokenizedSplit, num_params: int, *, model_config: Any
) -> dict[str, Any]:
    """Token statistics of the training split and the memory estimate, as `Preflight` fields.

    Exact, from the split's tokenization (every row's length before truncation, the rows
    truncated and dropped): nothing is tokenized a second time. `estimatedTokens` is one
    epoch after truncation.
    """
    training, method = spec.training, spec.method
    stats = token_stats(train.lengths, training.max_seq_length)
    stats["droppedFraction"] = train.dropped / train.rows if train.rows else 0.0
    stats["perTurnConversations"] = train.expanded_rows
    stats["perTurnExamplesAdded"] = train.added_examples

    quantization = method.quantization
    vocab_size = int(getattr(model_config, "vocab_size", 0) or 0)
    hidden_size = int(model_config.hidden_size)
    lora_params = extra = 0
    if method.type != "full":
        lora_params = lora_param_count(model_config, method.lora.r, method.lora.target_modules)
        extra = (
            vocab_size
            * hidden_size
            * sum(name in ("embed_tokens", "lm_head") for name in method.lora.modules_to_save)
        )
    memory = estimate_gpu_memory_gib(
        num_params,
        method.type,
        quantization.compute_dtype if quantization else training.precision,
        lora_params,
        quantization.quant_type if quantization else None,
        training.micro_batch_size,
        training.max_seq_length,
        hidden_size,
        int(model_config.num_hidden_layers),
        training.gradient_checkpointing,
        training.optimizer,
        vocab_size=vocab_size,
        tied_embeddings=bool(getattr(model_config, "tie_word_embeddings", False)),
        double_quant=quantization.double_quant if quantization else True,
        extra_trainable_params=extra,
    )
    return {
        "estimatedGpuMemoryGiB": round(memory["totalGiB"], 1),
        **stats,
        "memory": memory,
    }


def check_feasible(
    estimate: Mapping[str, Any],
    gpu_memory_gib: float | None,
    *,
    gpu_resource_name: str = "nvidia.com/gpu",
) -> str | None:
    """None when the estimate fits the GPU; otherwise a message saying what to change.

    `estimate` is the result of `estimate_gpu_memory_gib` or of `run_preflight`.
    """
    memory = estimate.get("memory", estimate)
    needed = memory.get("totalGiB", estimate.get("estimatedGpuMemoryGiB"))
    if needed is None or not gpu_memory_gib or needed <= gpu_memory_gib:
        return None
    return (
        f"needs ~{needed:.1f} GiB per GPU but {gpu_resource_name} has {gpu_memory_gib:g} GiB: "
        + ", ".join(_fixes(memory))
    )


def _fixes(memory: Mapping[str, Any]) -> Iterable[str]:
    """The changes that would lower this estimate, biggest savings first."""
    method = memory.get("method")
    if method == "full":
        yield "use spec.method.type lora or qlora"
    elif method == "lora":
        yield "use spec.method.type qlora"
    if method == "full" and memory.get("optimizer") == "adamw":
        yield "set spec.training.optimizer adamw_8bit"
    if memory.get("gradientCheckpointing") is False:
        yield "enable spec.training.gradientCheckpointing"
    if (memory.get("microBatchSize") or 1) > 1:
        yield f"lower spec.training.microBatchSize (now {memory['microBatchSize']})"
    seq = memory.get("maxSeqLength")
    yield (
        f"lower spec.training.maxSeqLength (now {seq})"
        if seq
        else "lower spec.training.maxSeqLength"
    )
    # Data parallelism keeps a full replica on every GPU, so more GPUs would not help.
    yield "or use GPUs with more memory"
