"""Pure: can this SFTJob run as asked? Checked before any GPU pod is created."""

from __future__ import annotations

from dataclasses import dataclass

from kubesft.api import SFTJob
from kubesft.operator.config import OperatorConfig
from kubesft.sizing import (
    MemoryEstimate,
    estimate_memory,
    hidden_size_guess,
    layers_guess,
    params_from_name,
)


@dataclass(frozen=True)
class Assessment:
    problem: str | None
    """What to change, when the job cannot run; None when it can."""
    estimate: MemoryEstimate | None = None


def estimate_for(job: SFTJob) -> MemoryEstimate | None:
    """Memory per GPU from the size in the model's name, when it has one."""
    params = params_from_name(job.spec.model.name)
    if params is None:
        return None
    hidden = hidden_size_guess(params)
    t, m = job.spec.training, job.spec.method
    return estimate_memory(
        params=params,
        method=m.type,
        precision=t.precision,
        micro_batch_size=t.micro_batch_size,
        max_seq_length=t.max_seq_length,
        hidden_size=hidden,
        num_layers=layers_guess(params, hidden),
        gradient_checkpointing=t.gradient_checkpointing,
        optimizer=t.optimizer,
        # Full fine-tuning across GPUs shards the model (FSDP); adapters replicate it.
        shards=job.spec.resources.gpus * job.spec.resources.nodes if m.type == "full" else 1,
    )


def assess(job: SFTJob, config: OperatorConfig) -> Assessment:
    spec = job.spec
    res = spec.resources
    if spec.method.type == "qlora" and res.gpus == 0:
        return Assessment(
            "method.type qlora needs a CUDA GPU (bitsandbytes 4-bit): set resources.gpus >= 1 "
            "or use method.type lora"
        )
    if spec.training.optimizer == "adamw_8bit" and res.gpus == 0:
        return Assessment(
            "training.optimizer adamw_8bit needs a CUDA GPU: set resources.gpus >= 1 or use adamw"
        )
    estimate = estimate_for(job)
    capacity = config.gpu_memory_gib.get(res.gpu_resource_name)
    if estimate is None or capacity is None or res.gpus == 0:
        return Assessment(None, estimate)
    if estimate.total > capacity:
        hints = []
        if spec.method.type == "full":
            hints.append("method.type lora or qlora")
        elif spec.method.type == "lora":
            hints.append("method.type qlora")
        if not spec.training.gradient_checkpointing:
            hints.append("training.gradientCheckpointing: true")
        hints.append("a lower training.microBatchSize or maxSeqLength")
        return Assessment(
            f"needs ~{estimate.total:.1f} GiB per GPU ({spec.model.name}, {spec.method.type}) "
            f"but one {res.gpu_resource_name} has {capacity:g} GiB: use " + ", ".join(hints),
            estimate,
        )
    return Assessment(None, estimate)
