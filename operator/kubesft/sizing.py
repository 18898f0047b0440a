"""GPU memory estimates for fine-tuning, shared by the operator and the trainer.

Pure arithmetic, no torch: the operator uses it for the Feasible condition before any
GPU pod exists (parameter count from the model name), the trainer for its preflight
report (parameter count from the loaded model).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

GIB = 1024**3
BYTES_PER_PARAM = {"bf16": 2.0, "fp16": 2.0, "fp32": 4.0}
# NF4 weights with double quantization: 4 bits + ~0.127 bits of constants per parameter.
NF4_BYTES_PER_PARAM = 0.516
CUDA_CONTEXT_GIB = 1.0
# Activation bytes per token per layer per hidden unit: ~34 without recomputation
# (Korthikanti et al., 2022, for 16-bit activations), ~2 when only layer inputs are kept.
ACTIVATION_FACTOR = {False: 34.0, True: 2.0}

_SIZE = re.compile(r"(?<![0-9.])(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])")


@dataclass(frozen=True)
class MemoryEstimate:
    """Per-GPU bytes of each part, in GiB."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    overhead: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.overhead

    def as_dict(self) -> dict[str, float]:
        return {**{k: round(v, 2) for k, v in asdict(self).items()}, "total": round(self.total, 2)}


def params_from_name(name: str) -> int | None:
    """`meta-llama/Llama-3.1-8B-Instruct` → 8e9; `SmolLM2-135M` → 1.35e8; else None."""
    matches = _SIZE.findall(name.rsplit("/", 1)[-1])
    if not matches:
        return None
    number, unit = matches[-1]
    return int(float(number) * (1e9 if unit.lower() == "b" else 1e6))


def hidden_size_guess(params: int) -> int:
    """A dense decoder's width from its size (Llama family: 1B→2048, 8B→4096, 70B→8192)."""
    return int(min(16384, max(512, (params / 5e8) ** 0.5 * 1024)))


def estimate_memory(
    *,
    params: int,
    method: str,
    precision: str,
    micro_batch_size: int,
    max_seq_length: int,
    hidden_size: int,
    num_layers: int,
    gradient_checkpointing: bool,
    lora_params: int = 0,
    optimizer: str = "adamw",
    shards: int = 1,
) -> MemoryEstimate:
    """Per-GPU memory of one training step.

    ``shards`` > 1 assumes fully sharded data parallel (FSDP/ZeRO-3): weights, gradients
    and optimizer states are split across that many GPUs; activations are not.
    """
    dtype_bytes = BYTES_PER_PARAM.get(precision, 2.0)
    weight_bytes = NF4_BYTES_PER_PARAM if method == "qlora" else dtype_bytes
    trainable = params if method == "full" else lora_params or int(params * 0.005)
    # Gradients in the training dtype; AdamW keeps two fp32 moments (8-bit: two bytes),
    # and full fine-tuning in 16-bit also keeps an fp32 master copy of the weights.
    opt_bytes = 2.0 if optimizer == "adamw_8bit" else 8.0
    if method == "full" and dtype_bytes < 4:
        opt_bytes += 4.0
    tokens = micro_batch_size * max_seq_length
    act = tokens * hidden_size * num_layers * ACTIVATION_FACTOR[gradient_checkpointing]
    return MemoryEstimate(
        weights=params * weight_bytes / GIB / shards,
        gradients=trainable * dtype_bytes / GIB / shards,
        optimizer=trainable * opt_bytes / GIB / shards,
        activations=act / GIB,
        overhead=CUDA_CONTEXT_GIB,
    )
