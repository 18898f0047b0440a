"""Preflight: will the job fit on its GPUs, and how many tokens will it train on?

The memory estimate is `kubesft.sizing.estimate_job`, the very function of the
operator's Feasible condition, fed here with the model's real shape (its config and
parameter count) instead of a guess from its name, and with the run's world size, which
decides between a replica per GPU (ddp) and shards (fsdp). A rough, slightly pessimistic
guide, not a promise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kubesft import sizing
from kubesft.api.job import SFTJobSpec
from kubesft_trainer.data import TokenizedSplit
from kubesft_trainer.prepare import length_histogram


def memory_breakdown(estimate: sizing.MemoryEstimate, spec: SFTJobSpec) -> dict[str, Any]:
    """Per-GPU memory in GiB and what it assumed, as the `memory` fields of preflight.json."""
    training = spec.training
    parts = {
        "weightsGiB": estimate.weights,
        "gradientsGiB": estimate.gradients,
        "optimizerStatesGiB": estimate.optimizer,
        "activationsGiB": estimate.activations,
        "shardingBuffersGiB": estimate.sharding_buffers,
        "overheadGiB": estimate.overhead,
        "totalGiB": estimate.total,
    }
    return {
        **{key: round(value, 2) for key, value in parts.items()},
        "trainableParams": estimate.trainable_params,
        "strategy": estimate.strategy,
        "worldSize": estimate.world_size,
        "summary": estimate.describe(),
        "method": spec.method.type,
        "optimizer": training.optimizer,
        "microBatchSize": training.micro_batch_size,
        "maxSeqLength": training.max_seq_length,
        "gradientCheckpointing": training.gradient_checkpointing,
    }


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
    spec: SFTJobSpec,
    train: TokenizedSplit,
    num_params: int,
    *,
    model_config: Any,
    world_size: int = 1,
) -> dict[str, Any]:
    """Token statistics of the training split and the memory estimate, as `Preflight` fields.

    Exact, from the split's tokenization (every row's length before truncation, the rows
    truncated and dropped): nothing is tokenized a second time. `estimatedTokens` is one
    epoch after truncation; the memory is per GPU on `world_size` GPUs.
    """
    stats = token_stats(train.lengths, spec.training.max_seq_length)
    stats["droppedFraction"] = train.dropped / train.rows if train.rows else 0.0
    stats["perTurnConversations"] = train.expanded_rows
    stats["perTurnExamplesAdded"] = train.added_examples
    shape = sizing.ModelShape.from_config(model_config, num_params)
    memory = memory_breakdown(sizing.estimate_job(spec, shape, world_size=world_size), spec)
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

    `estimate` is the result of `run_preflight` or its `memory` part.
    """
    memory = estimate.get("memory", estimate)
    needed = memory.get("totalGiB", estimate.get("estimatedGpuMemoryGiB"))
    if needed is None or not gpu_memory_gib or needed <= gpu_memory_gib:
        return None
    where = memory.get("summary") or f"~{needed:.1f} GiB per GPU"
    return f"needs {where} but {gpu_resource_name} has {gpu_memory_gib:g} GiB: " + ", ".join(
        _fixes(memory)
    )


def _fixes(memory: Mapping[str, Any]) -> Iterable[str]:
    """The changes that would lower this estimate, biggest savings first."""
    method = memory.get("method")
    if method == "full" and memory.get("strategy") == "ddp" and memory.get("worldSize", 1) > 1:
        yield "shard it: spec.training.parallelism fsdp (or auto)"
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
    # Under ddp more GPUs would not help (a replica each); under fsdp they would.
    yield "or use more GPUs (fsdp)" if method == "full" else "or use GPUs with more memory"
