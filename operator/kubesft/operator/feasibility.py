"""Pure: can this SFTJob run as asked? Checked before any GPU pod is created.

The memory figure is `kubesft.sizing.estimate_job`, the trainer's preflight's too, with
the model's shape guessed from the size in its name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from kubesft.api import SFTJob
from kubesft.operator.config import OperatorConfig
from kubesft.sizing import MemoryEstimate, ModelShape, estimate_job


@dataclass(frozen=True)
class Assessment:
    problem: str | None
    """What to change, when the job cannot run; None when it can."""
    estimate: MemoryEstimate | None = None

    @property
    def message(self) -> str | None:
        """The Feasible condition's message: the problem, or the strategy and per-GPU figure."""
        if self.problem is not None:
            return self.problem
        return self.estimate.describe() if self.estimate is not None else None


def world_size(job: SFTJob) -> int:
    """GPUs over all nodes (1 on CPU-only jobs: one process per pod then)."""
    res = job.spec.resources
    return max(res.gpus, 1) * res.nodes


def estimate_for(job: SFTJob) -> MemoryEstimate | None:
    """Memory per GPU from the size in the model's name, when it has one."""
    shape = ModelShape.guess(job.spec.model.name)
    if shape is None:
        return None
    return estimate_job(job.spec, shape, world_size=world_size(job))


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
        return Assessment(
            f"{spec.model.name} ({spec.method.type}) needs {estimate.describe()} but one "
            f"{res.gpu_resource_name} has {capacity:g} GiB: " + ", ".join(_advice(job, capacity)),
            estimate,
        )
    return Assessment(None, estimate)


def _advice(job: SFTJob, capacity: float) -> Iterator[str]:
    """What would make it fit, the biggest saving first."""
    spec = job.spec
    shape = ModelShape.guess(spec.model.name)
    if shape is not None and spec.method.type == "full" and spec.training.parallelism == "ddp":
        sharded = estimate_job(spec, shape, world_size=world_size(job), strategy="fsdp")
        if sharded.strategy == "fsdp" and sharded.total <= capacity:
            yield f"set training.parallelism fsdp (or auto): {sharded.describe()}"
    if spec.method.type == "full":
        yield "use method.type lora or qlora"
    elif spec.method.type == "lora":
        yield "use method.type qlora"
    if not spec.training.gradient_checkpointing:
        yield "set training.gradientCheckpointing: true"
    yield "lower training.microBatchSize or maxSeqLength"
    if spec.method.type == "full" and world_size(job) == 1:
        yield "or shard over more GPUs (resources.gpus, nodes)"
